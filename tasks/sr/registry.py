"""The SR task: its datasets (one entry per dataset and scale) and its methods.

Adding a method = one file under tasks/sr/ with a ``build_*`` function + one line in METHODS.
"""
from __future__ import annotations

from benchmark.profiles import get_profile
from benchmark.specs import BuildContext, DatasetSpec, EvalConvention, MethodSpec, TrainPlan
from datamodules.crchisto import CRCHistoSRDataModule
from datamodules.kather import KatherSRDataModule
from tasks.sr import esrgan, interpolation
from tasks.sr import rvtt, srnet
from tasks.sr import masrgan, masrnet
from tasks.sr import dcanet, ignn, qegan
from tasks.sr import rcan, spsr, wa_srgan


def _crchisto(ctx: BuildContext, plan: TrainPlan) -> CRCHistoSRDataModule:
    prof = get_profile(ctx.profile)
    # max_points 1200 >= the most nuclei in a CRCH image (1,191): every nucleus is kept, so the ROI
    # metrics' mask is the same for every method (a smaller cap keeps a random subset per load)
    return CRCHistoSRDataModule(scale=ctx.scale, patch=plan.patch_size or 128, batch_size=plan.batch_size,
                                test_limit=prof.test_limit, num_workers=prof.num_workers, seed=ctx.seed,
                                max_points=1200)


def _kather(ctx: BuildContext, plan: TrainPlan) -> KatherSRDataModule:
    prof = get_profile(ctx.profile)
    if ctx.profile == "paper":  # SNADN Sec. 4.1: 20,000 NCT-CRC-HE-100K patches, 8:1:1
        release, n, split = "NCT-CRC-HE-100K", 20_000, (0.8, 0.1, 0.1)
    else:  # the shared sample: 32 CRC-VAL-HE-7K patches; a larger test share for a steadier mean
        release, n, split = "CRC-VAL-HE-7K", None, (0.6, 0.1, 0.3)
    return KatherSRDataModule(release=release, scale=ctx.scale, n_patches=n, patch=plan.patch_size,
                              batch_size=plan.batch_size, split=split, test_limit=prof.test_limit,
                              num_workers=prof.num_workers, seed=ctx.seed)


def _pathimgsr(ctx: BuildContext, plan: TrainPlan):
    from datamodules.pathimgsr import PathImgSRDataModule
    return PathImgSRDataModule.for_profile(ctx, plan)


DATASETS: dict[str, DatasetSpec] = {
    "pathimgsr_x4": DatasetSpec("PathImgSR x4 (real 10x/40x pairs)", "pathimgsr", _pathimgsr,
                                EvalConvention(space="y", crop=4), scale=4),
    "crchisto_x4": DatasetSpec("CRCHistoPhenotypes x4 (rVTT '16x' area)", "crchisto", _crchisto,
                               EvalConvention(space="y", crop=4, region=True), scale=4),  # region: nucleus ROIs
    "kather_x2": DatasetSpec("Kather colon x2", "kather_sr", _kather, EvalConvention(space="y", crop=2), scale=2),
    "kather_x4": DatasetSpec("Kather colon x4", "kather_sr", _kather, EvalConvention(space="y", crop=4), scale=4),
}

_ALL = tuple(DATASETS)
PATHIMGSR = ("pathimgsr_x4",)

METHODS: dict[str, MethodSpec] = {
    "nearest": MethodSpec("Nearest", "training-free", interpolation.build_nearest, "rvtt", _ALL),
    "bicubic": MethodSpec("Bicubic", "training-free", interpolation.build_bicubic, "rvtt", _ALL),
    "srnet": MethodSpec("SRNet", "baseline", srnet.build_srnet, "rvtt", ("crchisto_x4",), needs=("vgg19",)),
    "srnet_w": MethodSpec("SRNet-w", "baseline", srnet.build_srnet_w, "rvtt", ("crchisto_x4",), needs=("vgg19",)),
    "rvtt_t1": MethodSpec("T1", "proposed", rvtt.build_rvtt_t1, "rvtt", ("crchisto_x4",), needs=("vgg19",)),
    "rvtt_t1_t2": MethodSpec("T1+T2", "proposed", rvtt.build_rvtt_t1_t2, "rvtt", ("crchisto_x4",),
                             needs=("vgg19",)),
    "esrgan": MethodSpec("ESRGAN", "baseline", esrgan.build_esrgan, "masrgan", PATHIMGSR, table="Table 1",
                         needs=("vgg19",)),
    "rcan": MethodSpec("RCAN", "baseline", rcan.build_rcan, "masrgan", PATHIMGSR, table="Table 1"),
    "masrnet": MethodSpec("MASRNet", "proposed", masrnet.build_masrnet, "masrgan", PATHIMGSR, table="Table 1"),
    "ignn": MethodSpec("IGNN", "baseline", ignn.build_ignn, "masrgan", PATHIMGSR, table="Table 1", needs=("vgg19",)),
    "dcanet": MethodSpec("DCANet", "baseline", dcanet.build_dcanet, "masrgan", PATHIMGSR, table="Table 1"),
    "qegan": MethodSpec("QEGAN", "baseline", qegan.build_qegan, "masrgan", PATHIMGSR, table="Table 1"),
    "wa_srgan": MethodSpec("WA-SRGAN", "baseline", wa_srgan.build_wa_srgan, "masrgan", PATHIMGSR, table="Table 1",
                           needs=("vgg19",)),
    "spsr": MethodSpec("SPSR", "baseline", spsr.build_spsr, "masrgan", PATHIMGSR, table="Table 1", needs=("vgg19",)),
    "masrgan": MethodSpec("MASRGAN", "proposed", masrgan.build_masrgan, "masrgan", PATHIMGSR, table="Table 1",
                          needs=("vgg19",)),
    "masrnet_att_none": MethodSpec("1 (no attention)", "ablation", masrnet.build_masrnet_att_none, "masrgan",
                                   PATHIMGSR, table="Table 2: attention"),
    "masrnet_att_channel": MethodSpec("2 (channel attention)", "ablation", masrnet.build_masrnet_att_channel,
                                      "masrgan", PATHIMGSR, table="Table 2: attention"),
    "masrnet_att_spatial": MethodSpec("3 (spatial attention)", "ablation", masrnet.build_masrnet_att_spatial,
                                      "masrgan", PATHIMGSR, table="Table 2: attention"),
    "masrnet_att_mix": MethodSpec("4 (channel + spatial)", "ablation", masrnet.build_masrnet_att_mix, "masrgan",
                                  PATHIMGSR, table="Table 2: attention"),
    "masrgan_d_vgg16": MethodSpec("MASRGAN-VGG16", "ablation", masrgan.build_masrgan_d_vgg16, "masrgan", PATHIMGSR,
                                  table="Table 3: discriminator", needs=("vgg19",)),
    "masrgan_d_vgg128": MethodSpec("MASRGAN-VGG128", "ablation", masrgan.build_masrgan_d_vgg128, "masrgan",
                                   PATHIMGSR, table="Table 3: discriminator", needs=("vgg19",)),
    "masrgan_d_patchgan": MethodSpec("MASRGAN-PatchGAN", "ablation", masrgan.build_masrgan_d_patchgan, "masrgan",
                                     PATHIMGSR, table="Table 3: discriminator", needs=("vgg19",)),
}
