"""What a finished run leaves for its users: the model directory (``model/``; ``model_best/`` is written by the
evaluation) and, with ``train.report``, the HTML report."""

from __future__ import annotations

from translate.engine.jobs import Job


class FinalOutputs(Job):
    def __init__(self, trainer):
        self.trainer = trainer

    def on_end(self, batch: dict | None, ctx: dict | None) -> None:
        trainer = self.trainer
        if trainer.accelerator.is_main_process:
            trainer.export(trainer.run_dir / "model")
            if trainer.config.train.report:
                from translate.evaluation import write_report

                write_report(trainer.run_dir)
