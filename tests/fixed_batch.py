"""One fixed, already batched dict of real data, and a short CPU fit on it: every training step of a
test sees the same batch."""
import lightning as L
from torch.utils.data import DataLoader, Dataset


class RepeatBatch(Dataset):
    """The same (already batched) dict ``n`` times; use with ``DataLoader(..., batch_size=None)``."""

    def __init__(self, batch: dict, n: int):
        self.batch, self.n = batch, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.batch


def fit_on_batch(module: L.LightningModule, batch: dict, iterations: int, callbacks=()) -> L.Trainer:
    """The Trainer after ``iterations`` batches of ``batch`` on CPU (manual-optimisation steps counted)."""
    steps = iterations * getattr(module, "optimizer_steps_per_batch", 1)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, max_epochs=-1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, callbacks=list(callbacks))
    trainer.fit(module, DataLoader(RepeatBatch(batch, iterations), batch_size=None))
    return trainer
