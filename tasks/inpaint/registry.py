"""The inpainting task (MSSA GAN, Liang et al. 2022): datasets (one per corruption protocol) and methods.

``kather_inpaint`` is the paper's literal protocol (eq. 16: hole pixels x 0.1, 8-bit), the only one
compared with the reported numbers; ``kather_inpaint_fill`` is true blind inpainting (hole := 0.1).
Adding a method = one file under tasks/inpaint/ with a ``build_*`` function + one line in METHODS.
"""
from __future__ import annotations

import torch

from benchmark.profiles import get_profile
from benchmark.specs import BuildContext, DatasetSpec, EvalConvention, MethodSpec, TrainPlan
from datamodules.kather_inpaint import KatherInpaintDataModule, box_mask, corrupt, random_box
from tasks.inpaint import mssa_gan, training_free
from tasks.inpaint import cnrn, context_encoders, dmfn, edgeconnect, glcic

SIZE, HOLE = 128, 64          # Sec. 4.1: 128 x 128 patches, 64 x 64 hole
SMOKE_CROP = 64               # smoke trains on 64-px crops with a 32-px hole (RSA at 128 px is the CPU bottleneck)


def _datamodule(corruption: str):
    def make(ctx: BuildContext, plan: TrainPlan) -> KatherInpaintDataModule:
        prof = get_profile(ctx.profile)
        smoke = ctx.profile == "smoke"
        return KatherInpaintDataModule(split="smoke" if smoke else "paper", corruption=corruption, size=SIZE,
                                       hole=HOLE, train_crop=(plan.patch_size or SMOKE_CROP) if smoke else 0,
                                       batch_size=plan.batch_size, test_limit=prof.test_limit,
                                       num_workers=prof.num_workers, seed=ctx.seed)
    return make


def _example_batch(corruption: str):
    def make(ctx: BuildContext, plan: TrainPlan, batch_size: int) -> dict:
        gen = torch.Generator().manual_seed(ctx.seed)
        x = torch.rand(batch_size, 3, SIZE, SIZE, generator=gen)
        mask = torch.stack([box_mask(SIZE, *random_box(SIZE, HOLE, gen), HOLE) for _ in range(batch_size)])
        return {"image": x, "corrupted": corrupt(x, mask, corruption), "mask": mask,
                "box": torch.tensor([[0, 0, HOLE]] * batch_size), "index": torch.arange(batch_size),
                "name": [f"synthetic{i}" for i in range(batch_size)]}
    return make


_EVAL = EvalConvention(space="rgb", crop=0, niqe=False, region=True)
DATASETS: dict[str, DatasetSpec] = {
    "kather_inpaint": DatasetSpec(
        "Kather NORM+TUM 128 px, 64x64 hole, corruption 'scale' (eq. 16: hole x 0.1, 8-bit; the paper's)",
        "kather_inpaint", _datamodule("scale"), _EVAL, example_batch=_example_batch("scale")),
    "kather_inpaint_fill": DatasetSpec(
        "Kather NORM+TUM 128 px, 64x64 hole, corruption 'fill' (hole := 0.1, blind; no reported numbers)",
        "kather_inpaint_fill", _datamodule("fill"), _EVAL, example_batch=_example_batch("fill")),
}

# leaderboard columns: whole image, hole (= the paper's "corrupted" region), RMSE 0-255, Y channel
METRIC_COLS = [("psnr", "PSNR", 2), ("ssim", "SSIM", 4), ("psnr_region", "Hole PSNR", 2),
               ("ssim_region", "Hole SSIM", 4), ("rmse", "RMSE", 3), ("psnr_y", "Y PSNR", 2), ("ssim_y", "Y SSIM", 4),
               ("psnr_region_y", "Y hole PSNR", 2)]

_BOTH = tuple(DATASETS)
_SCALE = ("kather_inpaint",)
_TF = "training-free"
_T3, _T4 = "Table 3", "Table 4"
_MSSA = dict(paper="mssa_gan", fidelity="reconstructed", needs=("vgg16",),
             fidelity_note="no code released; kernels, RSA dims, VGG layers per spec §2 (NS in the paper)")

METHODS: dict[str, MethodSpec] = {
    "input": MethodSpec("Corrupted input x_M", _TF, training_free.build_input, "mssa_gan", _BOTH, table=_TF),
    "scale_inverse": MethodSpec("x_M / 0.1 in the hole", _TF, training_free.build_scale_inverse, "mssa_gan",
                                _SCALE, table=_TF),
    "mean_fill": MethodSpec("Mean fill", _TF, training_free.build_mean_fill, "mssa_gan", _BOTH, table=_TF),
    "biharmonic": MethodSpec("Biharmonic fill (scikit-image)", _TF, training_free.build_biharmonic, "mssa_gan",
                             _BOTH, table=_TF),
    # Table 3 baselines: each from its reference code; one protocol (task data, masks, corruption; the
    # reference's optimiser, batch and loss weights for MSSA's 60 epochs); outputs composited as their codes do
    "ce": MethodSpec("CE [25]", "baseline", context_encoders.build_context_encoders, "mssa_gan", _BOTH, table=_T3,
                     fidelity="faithful", fidelity_note="train_random.lua (random holes); inert conv biases dropped"),
    "glcic": MethodSpec("GLCIC [28]", "baseline", glcic.build_glcic, "mssa_gan", _BOTH, table=_T3, fidelity="adapted",
                        fidelity_note="context D at 128 px (one fewer conv); no Poisson blending"),
    "dmfn": MethodSpec("DMFN [31]", "baseline", dmfn.build_dmfn, "mssa_gan", _BOTH, table=_T3, needs=("vgg19",),
                       fidelity="adapted", fidelity_note="released DMFB (not the paper's); context D at 128 px"),
    "edgeconnect": MethodSpec("EdgeConnect [29]", "baseline", edgeconnect.build_edgeconnect, "mssa_gan", _BOTH,
                              table=_T3, needs=("vgg19",), fidelity="faithful",
                              fidelity_note="released stages (G1 + G2, then G2 on G1 edges); skimage Canny"),
    "cnrn": MethodSpec("CNRN[23]", "baseline", cnrn.build_cnrn, "mssa_gan", _BOTH, table=_T3, fidelity="faithful",
                       fidelity_note="master-branch code (L1 on the valid region, as released)"),
    # a baseline's own recipe (reference hole refill and training length): a labelled variant, never a Table 3 row
    "ce_own": MethodSpec("CE [25] (own recipe)", "baseline", context_encoders.build_context_encoders_own, "mssa_gan",
                         _SCALE, table="Own recipes", protocol="own recipe", fidelity="faithful",
                         fidelity_note="train_random.lua as released: ImageNet-mean hole refill, 500 epochs"),
    "mssa_gan": MethodSpec("MSSA GAN", "proposed", mssa_gan.build_mssa_gan, datasets=_BOTH, table=_T3, **_MSSA),
    # spec §6: the same trained network with the known pixels pasted back (test only; the paper's output is raw)
    "mssa_gan_composited": MethodSpec("MSSA GAN (composited output)", "proposed", mssa_gan.build_mssa_gan_composited,
                                      datasets=_BOTH, table=_T3, init_from="mssa_gan", protocol="composited output",
                                      **_MSSA),
    "mssa_gan_no_mssa": MethodSpec("Without MSSA", "ablation", mssa_gan.build_no_mssa, datasets=_BOTH, table=_T3,
                                   **_MSSA),
    "mssa_gan_no_rsa": MethodSpec("Without RSA", "ablation", mssa_gan.build_no_rsa, datasets=_SCALE, table=_T4,
                                  **_MSSA),
    "mssa_gan_no_ms_loss_3": MethodSpec("Without M-S(3)", "ablation", mssa_gan.build_no_ms_loss_3, datasets=_SCALE,
                                        table=_T4, **_MSSA),
    "mssa_gan_no_ms_loss_2": MethodSpec("Without M-S(2)", "ablation", mssa_gan.build_no_ms_loss_2, datasets=_SCALE,
                                        table=_T4, **_MSSA),
    "mssa_gan_no_ms_loss_1": MethodSpec("Without M-S(1)", "ablation", mssa_gan.build_no_ms_loss_1, datasets=_SCALE,
                                        table=_T4, **_MSSA),
    "mssa_gan_no_perceptual": MethodSpec("Without L_perceptual", "ablation", mssa_gan.build_no_perceptual,
                                         datasets=_SCALE, table=_T4, **_MSSA),
    "mssa_gan_no_style": MethodSpec("Without L_style", "ablation", mssa_gan.build_no_style, datasets=_SCALE,
                                    table=_T4, **_MSSA),
    "mssa_gan_no_adv": MethodSpec("Without L_adv", "ablation", mssa_gan.build_no_adv, datasets=_SCALE, table=_T4,
                                  **_MSSA),
    "mssa_gan_no_tv": MethodSpec("Without L_TV", "ablation", mssa_gan.build_no_tv, datasets=_SCALE, table=_T4,
                                 **_MSSA),
    # Table 4's full model: the same configuration as "mssa_gan", one run shown in both tables
    "mssa_gan_full": MethodSpec("MSSA GAN", "proposed", mssa_gan.build_mssa_gan, datasets=_SCALE, table=_T4,
                                same_as="mssa_gan", **_MSSA),
}
