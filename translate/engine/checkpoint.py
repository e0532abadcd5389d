"""Checkpoint directories of a run: ``checkpoints/step_000500/``, complete only once renamed into place.

Accelerate writes the full training state (models, optimizers, grad scaler, RNG states of every process and the
objects registered for checkpointing) into a hidden temp directory; the main process renames it when every
process has finished, so a crash mid-write leaves only a temp directory that ``latest`` never picks.
These files include pickles (optimizer, RNG state): a checkpoint is trusted state, unlike an exported model.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch

from translate.engine.jobs import Job

STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(accelerator, run_dir: Path, step: int, keep: int, process_state: dict | None = None) -> Path:
    """Save the accelerator's state atomically; every process must call this. ``process_state`` is this process's
    own state outside the networks (a recipe's image pools): Accelerate saves registered objects from the main
    process only, so each process writes its own file."""
    root = run_dir / "checkpoints"
    final = root / checkpoint_name(step)
    tmp = root / f".tmp_{checkpoint_name(step)}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(process_state or {}, tmp / f"process_{accelerator.process_index}.pt")
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _fsync_tree(tmp)
        if final.exists():  # the same step saved again (e.g. a final save right after a scheduled one)
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(run_dir)[:-keep] + list(root.glob(".tmp_step_*")):  # incl. writes cut short
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


class Checkpoints(Job):
    """A checkpoint every ``train.checkpoint_every`` steps and one at the end (``Trainer.checkpoint``)."""

    def __init__(self, trainer, max_steps: int):
        self.trainer, self.max_steps = trainer, max_steps

    def on_step(self, batch: dict, ctx: dict) -> None:
        step = self.trainer.state.step
        if step % self.trainer.config.train.checkpoint_every == 0 and step < self.max_steps:  # the end saves the last
            self.trainer.checkpoint()

    def on_end(self, batch: dict | None, ctx: dict | None) -> None:
        self.trainer.checkpoint()


def training_state(checkpoint: Path) -> dict:
    """The loop's position saved in ``checkpoint`` (the trainer's TrainState: step, epoch, seconds of training...),
    registered for checkpointing first, so Accelerate's ``custom_checkpoint_0``."""
    return torch.load(checkpoint / "custom_checkpoint_0.pkl", weights_only=True)


def load_process_state(checkpoint: Path, process_index: int) -> dict:
    """This process's saved state; a run resumed on more processes than it was saved from reuses the saved ones
    in turn (process i gets file i mod saved)."""
    saved = sorted(checkpoint.glob("process_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    if not saved:
        return {}
    return torch.load(saved[process_index % len(saved)], weights_only=True)


def _fsync_tree(directory: Path) -> None:
    # The rename must not reach the disk before the files it publishes.
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
