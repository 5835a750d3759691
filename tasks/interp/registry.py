"""The interp task (SSAN, BioData Mining 14:10, 2021): EM slice interpolation on cremi_triplet.

Datasets: cremi_triplet A, B, C built from the CREMI volumes by :mod:`datamodules.cremi_triplet`.  The
smoke profile reads the shared real sample (a 25-slice crop of CREMI C), so in smoke only C exists;
A and B are run wherever their build (``$MIRBENCH_DATA/cremi_triplet/<A|B>/build.json``) is present.
mouse_triplet is private ATUM data: its reported rows are shown as "data not public".

Adding a method = one file under tasks/interp/ with a ``build_*`` function + one line in METHODS.
"""
from __future__ import annotations

import torch

from benchmark.profiles import get_profile
from benchmark.specs import BuildContext, DatasetSpec, EvalConvention, MethodSpec, TrainPlan
from datamodules.base import data_root
from tasks.interp import dain, sepconv, ssan, training_free

# SSAN Tables 1, 3, 4: PSNR / SSIM / IE on 8-bit gray, no border crop; Table 5: membrane Dice / F1
EVAL = EvalConvention(space="gray", crop=0, niqe=False)
METRIC_COLS = [("psnr", "PSNR", 2), ("ssim", "SSIM", 4), ("ie", "IE", 2), ("dice", "Dice", 3), ("f1", "F1", 3)]


def _datamodule(sample: str):
    def make(ctx: BuildContext, plan: TrainPlan):
        from datamodules.cremi_triplet import CremiTripletDataModule
        prof = get_profile(ctx.profile)
        return CremiTripletDataModule.for_profile(ctx.profile, sample, patch=plan.patch_size,
                                                  batch_size=plan.batch_size, test_limit=prof.test_limit,
                                                  num_workers=prof.num_workers, seed=ctx.seed)
    make.__name__ = f"_cremi_{sample.lower()}"
    return make


def _example_batch(ctx: BuildContext, plan: TrainPlan, batch_size: int) -> dict:
    """A paper-profile training batch (512x512 gray triplets) for `run --dry-run`."""
    size = plan.patch_size or 512
    g = torch.Generator().manual_seed(ctx.seed)
    prev, target, nxt = (torch.rand(batch_size, 1, size, size, generator=g) for _ in range(3))
    return {"prev": prev, "target": target, "next": nxt, "index": torch.arange(batch_size),
            "name": [f"example_{i}" for i in range(batch_size)]}


DATASETS: dict[str, DatasetSpec] = {
    f"cremi_triplet_{s.lower()}": DatasetSpec(f"cremi_triplet {s}", f"cremi_triplet_{s.lower()}", _datamodule(s),
                                             EVAL, in_channels=1, example_batch=_example_batch)
    for s in "CAB"
}


def _built(sample: str) -> bool:
    return (data_root() / "cremi_triplet" / sample / "build.json").is_file()


# C always (smoke: the shared sample; paper: its build or a clear MissingDataError); A, B where built
CREMI = ("cremi_triplet_c",) + tuple(f"cremi_triplet_{s.lower()}" for s in "AB" if _built(s))

# every SSAN row: its paper and data, SSAN's VGG16 feature loss, reconstructed (no code released)
_SSAN = dict(paper="ssan", datasets=CREMI, needs=("vgg16",), fidelity="reconstructed")

METHODS: dict[str, MethodSpec] = {
    "average": MethodSpec("Average of neighbours", "training-free", training_free.build_average, "ssan", CREMI,
                          table="Table 4"),
    "copy_prev": MethodSpec("Copy previous slice", "training-free", training_free.build_copy_previous, "ssan",
                            CREMI, table="Table 4"),
    "sepconv": MethodSpec("SepConv-Ls", "baseline", sepconv.build_sepconv, "ssan", CREMI, table="Table 4",
                          needs=("vgg16",), fidelity="faithful",
                          fidelity_note="official architecture; CuPy kernel as pure-PyTorch unfold op; gray input"),
    "dain": MethodSpec("DAIN-Ls", "baseline", dain.build_dain, "ssan", CREMI, table="Table 4", needs=("vgg16",),
                       fidelity="faithful",
                       fidelity_note="official architecture and module names; CUDA layers as pure-PyTorch ops; "
                                     "gray replicated x3; paper profile also needs MIRBENCH_WEIGHTS/dain/ PWC + MegaDepth"),
    "ssan": MethodSpec("SSAN", "proposed", ssan.build_ssan, table="Table 4", **_SSAN,
                       fidelity_note="AAL/SA as the authors' HierarStruct; SRDN sizes, warp heads, fusion layers per spec"),
    "ssan_ext_unet": MethodSpec("U-Net", "ablation", ssan.build_ssan_ext_unet, table="Table 1", **_SSAN,
                       fidelity_note="U-Net extractor (4 levels), one pass; AAL kept"),
    "ssan_ext_sunet": MethodSpec("SU-Net", "ablation", ssan.build_ssan_ext_sunet, table="Table 1", **_SSAN,
                       fidelity_note="siamese U-Net extractor; AAL kept"),
    "ssan_ext_rdn": MethodSpec("RDN", "ablation", ssan.build_ssan_ext_rdn, table="Table 1", **_SSAN,
                       fidelity_note="RDN extractor, one pass (not siamese); AAL kept"),
    "ssan_kel": MethodSpec("KEL", "ablation", ssan.build_ssan_kel, table="Table 3", **_SSAN,
                       fidelity_note="SRDN + SepConv-style kernel estimation (K 51) instead of AAL"),
    "ssan_ssa": MethodSpec("SSA", "ablation", ssan.build_ssan_ssa, table="Table 3", **_SSAN,
                       fidelity_note="SRDN + one-level interlaced sparse self-attention (P 8) instead of AAL"),
}
