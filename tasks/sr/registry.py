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
                              num_workers=prof.num_workers, seed=ctx.seed, memory_cache=ctx.profile == "smoke")


def _pathimgsr(ctx: BuildContext, plan: TrainPlan):
    from datamodules.pathimgsr import PathImgSRDataModule
    prof = get_profile(ctx.profile)
    return PathImgSRDataModule.for_profile(ctx.profile, scale=ctx.scale or 4, patch=plan.patch_size,
                                           batch_size=plan.batch_size, test_limit=prof.test_limit,
                                           num_workers=prof.num_workers, seed=ctx.seed)


DATASETS: dict[str, DatasetSpec] = {
    # the paper profile builds it from Camelyon16's 40x/10x levels; the smoke profile from two OpenSlide demo
    # slides (one 40x, one 20x) written as box-filter pyramids: PathImgSR's recipe, not its data
    "pathimgsr_x4": DatasetSpec("PathImgSR x4 (paper: Camelyon16 10x/40x pairs; smoke: PathImgSR-style pairs, "
                                "synthetic pyramid)", "pathimgsr", _pathimgsr,
                                EvalConvention(space="y", crop=4), scale=4),
    # region: PSNR/SSIM inside nucleus-scale discs around the annotated nuclei (tasks/common/roi.py)
    "crchisto_x4": DatasetSpec("CRCHistoPhenotypes x4 (rVTT '16x' area)", "crchisto", _crchisto,
                               EvalConvention(space="y", crop=4, region=True), scale=4),
    "kather_x2": DatasetSpec("Kather colon x2", "kather_sr", _kather, EvalConvention(space="y", crop=2), scale=2),
    "kather_x4": DatasetSpec("Kather colon x4", "kather_sr", _kather, EvalConvention(space="y", crop=4), scale=4),
}

_ALL = tuple(DATASETS)
PATHIMGSR = ("pathimgsr_x4",)
CRCH = ("crchisto_x4",)
# PI (Ma + NIQE) as the papers report it needs Ma et al.'s NRQM model; the paper profile requires it
NRQM = ("nrqm",)
VGG = ("vgg19", "nrqm")
VGG16 = ("vgg16", "nrqm")     # rVTT's perceptual loss: Johnson et al.'s VGG16 relu2_2
_RVTT_G = "G size from ESRGAN (rVTT states none); no official code"
_MASR = "no official code; unstated sizes from RCAN; channel shuffle is a no-op (dense convs absorb it)"
_T3 = dict(paper="masrgan", datasets=PATHIMGSR, table="Table 3: discriminator", needs=VGG, init_from="masrnet",
           fidelity_note=_MASR)
_T2 = dict(paper="masrgan", datasets=PATHIMGSR, table="Table 2: attention", needs=NRQM, fidelity_note=_MASR)
_OWN = "own recipe"

METHODS: dict[str, MethodSpec] = {
    "nearest": MethodSpec("Nearest", "training-free", interpolation.build_nearest, "rvtt", _ALL, needs=NRQM),
    "bicubic": MethodSpec("Bicubic", "training-free", interpolation.build_bicubic, "rvtt", _ALL, needs=NRQM),
    "srnet": MethodSpec("SRNet", "baseline", srnet.build_srnet, "rvtt", CRCH, needs=VGG16, fidelity_note=_RVTT_G),
    "srnet_w": MethodSpec("SRNet-w", "baseline", srnet.build_srnet_w, "rvtt", CRCH, needs=VGG16,
                          fidelity="reconstructed",
                          fidelity_note="edge term of ref. [2] not available: Sobel-gradient MSE, weight 0.1; "
                                        + _RVTT_G),
    "rvtt_t1": MethodSpec("T1", "proposed", rvtt.build_rvtt_t1, "rvtt", CRCH, needs=VGG16,
                          fidelity_note="tester = ESRGAN's VGG-style critic; " + _RVTT_G),
    "rvtt_t1_t2": MethodSpec("T1+T2", "proposed", rvtt.build_rvtt_t1_t2, "rvtt", CRCH, needs=VGG16,
                             fidelity_note="testers = ESRGAN's VGG-style critic; " + _RVTT_G),
    "esrgan": MethodSpec("ESRGAN", "baseline", esrgan.build_esrgan, "masrgan", PATHIMGSR, needs=VGG),
    "rcan": MethodSpec("RCAN", "baseline", rcan.build_rcan, "masrgan", PATHIMGSR, needs=NRQM),
    "masrnet": MethodSpec("MASRNet", "proposed", masrnet.build_masrnet, "masrgan", PATHIMGSR, needs=NRQM,
                          fidelity_note=_MASR),
    "ignn": MethodSpec("IGNN", "baseline", ignn.build_ignn, "masrgan", PATHIMGSR, needs=VGG),
    "dcanet": MethodSpec("DCANet", "baseline", dcanet.build_dcanet, "masrgan", PATHIMGSR, needs=NRQM,
                         fidelity="hosted", fidelity_note="DCA-SE attention connections inside RCAN"),
    "qegan": MethodSpec("QEGAN", "baseline", qegan.build_qegan, "masrgan", PATHIMGSR, needs=NRQM,
                        fidelity="reconstructed", fidelity_note="from the abstract only: SRResNet levels, SRGAN D"),
    "wa_srgan": MethodSpec("WA-SRGAN", "baseline", wa_srgan.build_wa_srgan, "masrgan", PATHIMGSR, needs=VGG,
                           fidelity="reconstructed",
                           fidelity_note="from the abstract only: SRGAN + wide blocks, SAGAN attention, WGAN-GP"),
    "spsr": MethodSpec("SPSR", "baseline", spsr.build_spsr, "masrgan", PATHIMGSR, needs=VGG),
    "masrgan": MethodSpec("MASRGAN", "proposed", masrgan.build_masrgan, "masrgan", PATHIMGSR, needs=VGG,
                          init_from="masrnet", fidelity_note=_MASR),
    "masrnet_att_none": MethodSpec("1 (no attention)", "ablation", masrnet.build_masrnet_att_none, **_T2),
    "masrnet_att_channel": MethodSpec("2 (channel attention)", "ablation", masrnet.build_masrnet_att_channel, **_T2),
    "masrnet_att_spatial": MethodSpec("3 (spatial attention)", "ablation", masrnet.build_masrnet_att_spatial, **_T2),
    # the full MASRNet: the same configuration as "masrnet", one run shown in both tables
    "masrnet_att_mix": MethodSpec("4 (channel + spatial)", "ablation", masrnet.build_masrnet_att_mix,
                                  same_as="masrnet", **_T2),
    "masrgan_d_vgg16": MethodSpec("MASRGAN-VGG16", "ablation", masrgan.build_masrgan_d_vgg16, **_T3),
    "masrgan_d_vgg128": MethodSpec("MASRGAN-VGG128", "ablation", masrgan.build_masrgan_d_vgg128, **_T3),
    # the default MASRGAN: the same configuration as "masrgan", one run shown in both tables
    "masrgan_d_patchgan": MethodSpec("MASRGAN-PatchGAN", "ablation", masrgan.build_masrgan_d_patchgan,
                                     same_as="masrgan", **_T3),
    # the baselines' own published recipes: labelled variants, never Table 1 rows
    "rcan_own": MethodSpec("RCAN (own recipe)", "baseline", rcan.build_rcan_own, "masrgan", PATHIMGSR,
                           table="Own recipes", needs=NRQM, protocol=_OWN,
                           fidelity_note="RCAN's 1e6 iterations of 192 px patches, lr halved every 2e5"),
    "esrgan_own": MethodSpec("ESRGAN (own recipe)", "baseline", esrgan.build_esrgan_own, "masrgan", PATHIMGSR,
                             table="Own recipes", needs=VGG, protocol=_OWN,
                             fidelity_note="L1 pre-training 1e6 it. at 2e-4 halved every 2e5, then 4e5 GAN it."),
}
