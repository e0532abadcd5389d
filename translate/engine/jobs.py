"""The side jobs' contract: the training loop calls each job after every optimizer step and once at the end, in the
order ``Trainer.jobs`` lists them. A new side job is a subclass in its own module, added to that list."""

from __future__ import annotations


class Job:
    """A side job of the training loop; both hooks default to doing nothing."""

    def on_step(self, batch: dict, ctx: dict) -> None:
        """After each optimizer step (``trainer.state.step`` already counts it), on every process."""

    def on_end(self, batch: dict | None, ctx: dict | None) -> None:
        """Once, after the last step (or an early stop), on every process; the last batch and its ctx, if any."""
