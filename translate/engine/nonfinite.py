"""Steps skipped for non-finite gradients: tallied on the device every step (no host sync), read every few steps
and before each checkpoint (which then counts every skipped step); too many in a row
(``train.max_nonfinite_steps``) stop the run."""

from __future__ import annotations

import torch

from translate.engine.checkpoint import latest_checkpoint
from translate.engine.jobs import Job


class TrainingDiverged(RuntimeError):
    """Raised after too many consecutive steps with non-finite losses or gradients."""


class NonFiniteWatch(Job):
    def __init__(self, trainer):
        self.trainer = trainer
        self.skips = torch.zeros(3, device=trainer.accelerator.device)  # current run, longest run, count (unread)

    def tally(self, skipped: torch.Tensor) -> None:
        """``skipped``: 1.0 when the step was skipped, as a device tensor."""
        run = (self.skips[0] + 1) * skipped
        self.skips = torch.stack([run, torch.maximum(self.skips[1], run), self.skips[2] + skipped])

    def on_step(self, batch: dict, ctx: dict) -> None:
        t, step = self.trainer.config.train, self.trainer.state.step
        if step % t.log_every == 0 or step % t.max_nonfinite_steps == 0:  # and before each checkpoint (Trainer)
            self.read()

    def read(self) -> None:
        """Count the steps skipped since the last read (one host sync); stop when too many came in a row."""
        trainer = self.trainer
        run, worst, count = (int(v) for v in self.skips.tolist())
        self.skips = torch.tensor([run, run, 0.0], device=trainer.accelerator.device)
        state, limit = trainer.state, trainer.config.train.max_nonfinite_steps
        if count:
            state.skipped_steps += count
            trainer.accelerator.print(f"step {state.step}: {count} of the last steps had non-finite gradients and "
                                      f"were skipped ({run} in a row now, {state.skipped_steps} in all)")
        if worst >= limit:
            last = latest_checkpoint(trainer.run_dir)
            trainer.accelerator.end_training()
            raise TrainingDiverged(
                f"{worst} consecutive steps had non-finite losses or gradients (train.max_nonfinite_steps={limit}); "
                f"the last good checkpoint is {last or 'none'}. Try a lower train.lr, mixed_precision=no, "
                "or gan_mode=lsgan.")
