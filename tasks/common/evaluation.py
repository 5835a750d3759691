"""The test step every task shares: restore, then update the per-image metrics of the convention."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import nn

from benchmark.metrics.psnr_ssim import PSNR, RMSE, SSIM, RegionPSNR, RegionSSIM
from benchmark.specs import EvalConvention


def build_metrics(conv: EvalConvention, ma_model: Path | None = None) -> nn.ModuleDict:
    m = {"psnr": PSNR(conv.space, conv.crop), "ssim": SSIM(conv.space, conv.crop),
         "rmse": RMSE(conv.space, conv.crop)}
    if conv.region:
        m["psnr_region"] = RegionPSNR(conv.space, conv.crop)
        m["ssim_region"] = RegionSSIM(conv.space, conv.crop)
    if conv.niqe:
        from benchmark.metrics.niqe import NIQE
        m["niqe"] = NIQE()
        if ma_model is not None:
            from benchmark.metrics.nrqm import MaNRQM
            m["ma"] = MaNRQM(model_path=ma_model)
    return nn.ModuleDict(m)


class EvaluatedModule(L.LightningModule):
    """Base of every task module.  Subclasses implement :meth:`restore`.

    The runner calls :meth:`configure_evaluation` before ``Trainer.test``; after it, ``test_results``
    holds the synced set means and ``test_samples`` a few (input, output, target) triples.
    """

    n_samples = 4

    def restore(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """-> (prediction, target, mask or None, input shown in sample grids), images in [0, 1]."""
        raise NotImplementedError

    def inference_net(self) -> nn.Module:
        """The network whose cost (params, FLOPs, latency) the leaderboard reports."""
        return self

    def example_input(self, batch: dict) -> torch.Tensor:
        """One test image's network input, for the efficiency measurements."""
        raise NotImplementedError

    def configure_evaluation(self, conv: EvalConvention, ma_model: Path | None = None) -> None:
        self.eval_convention = conv
        self.test_metrics = build_metrics(conv, ma_model)
        self.test_results: dict[str, float] = {}
        self.test_samples: dict[int, tuple[torch.Tensor, ...]] = {}
        self.test_sample_names: dict[int, str] = {}

    # ---- validation: a PSNR curve for every task, from restore() -------------------------------
    def configure_validation(self, conv: EvalConvention) -> None:
        """Called by the runner before fit: validation logs ``val/psnr`` in the dataset's convention."""
        self.val_psnr = PSNR(conv.space, conv.crop)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Nothing here: the PSNR is taken in :meth:`on_validation_batch_end`, so a subclass that adds
        its own validation_step (e.g. a loss) still gets the curve."""

    def on_validation_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if getattr(self, "val_psnr", None) is None:
            return
        with torch.no_grad():
            pred, target, _, _ = self.restore(batch)
        self.val_psnr.update(pred.clamp(0, 1), target, torch.as_tensor(batch["index"], device=pred.device))

    def on_validation_epoch_end(self) -> None:
        if getattr(self, "val_psnr", None) is None or not self.val_psnr.update_called:
            return
        self.log("val/psnr", float(self.val_psnr.compute()), sync_dist=False)  # compute() syncs ranks
        self.val_psnr.reset()

    # ---- checkpoints never carry frozen pretrained networks (VGG of perceptual losses) ----------
    def frozen_pretrained_prefixes(self) -> list[str]:
        """State-dict prefixes of frozen pretrained networks: VGGFeatures, or any submodule that sets
        ``frozen_pretrained = True``.  They are rebuilt from MIRBENCH_WEIGHTS (or the seeded random
        smoke VGG) when the module is built, so a checkpoint need not hold a copy."""
        from tasks.common.losses import VGGFeatures
        out: list[str] = []
        for name, m in self.named_modules():
            if name and (isinstance(m, VGGFeatures) or getattr(m, "frozen_pretrained", False)) \
                    and not any(name.startswith(p) for p in out):
                out.append(name + ".")
        return out

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        prefixes = tuple(self.frozen_pretrained_prefixes())
        if prefixes and "state_dict" in checkpoint:
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(prefixes)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        prefixes = tuple(self.frozen_pretrained_prefixes())
        if prefixes and "state_dict" in checkpoint:
            own = {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}
            checkpoint["state_dict"] = {**own, **checkpoint["state_dict"]}

    def test_step(self, batch: dict, batch_idx: int) -> None:
        pred, target, mask, shown = self.restore(batch)
        pred = pred.clamp(0, 1)
        idx = torch.as_tensor(batch["index"], device=pred.device)
        for name, metric in self.test_metrics.items():
            metric.update(pred, target, idx, mask=mask if name.endswith("_region") else None)
        for j, i in enumerate(idx.tolist()):
            if i < self.n_samples:
                self.test_samples[i] = (shown[j].detach().cpu(), pred[j].detach().cpu(), target[j].detach().cpu())
                names = batch.get("name")
                if names is not None:
                    self.test_sample_names[i] = str(names[j])

    def on_test_epoch_end(self) -> None:
        self.test_results = {name: float(m.compute()) for name, m in self.test_metrics.items()}
        psnr = self.test_metrics["psnr"]
        with psnr.sync_context():
            index, values = psnr.per_image()
        self.test_results["n_images"] = int(index.numel())
        self.test_per_image = {"index": index.tolist(), "psnr": values.tolist()}
        for m in self.test_metrics.values():
            m.reset()
        for k, v in self.test_results.items():
            self.log(f"test/{k}", float(v), sync_dist=False, rank_zero_only=True)
