"""Evaluation of trained models: metrics (PSNR, SSIM, LPIPS, FID, KID, IS, diversity), the offline Inception
network they need, running a model over a dataset split, and the run's static HTML report.

``evaluate(generators, config, split, metrics)`` is what the trainer calls; ``evaluate_model(model_dir, data)``
backs ``translate eval``; ``write_report(run_dir)`` backs ``translate report``.
"""

from __future__ import annotations

from translate.evaluation.evaluate import (
    Evaluation,
    do_nothing,
    evaluate,
    evaluate_details,
    evaluate_model,
    format_table,
    save_json,
)

__all__ = ["Evaluation", "Inception", "InceptionNotFound", "do_nothing", "evaluate", "evaluate_details",
           "evaluate_model", "format_table", "save_json", "write_report"]


def write_report(run_dir, **options):
    """Write ``run_dir/report/index.html``; see ``translate.evaluation.report.write_report``."""
    from translate.evaluation.report import write_report as write

    return write(run_dir, **options)


def __getattr__(name):
    # The Inception module imports torchvision's model zoo (seconds): only when FID/KID/IS are wanted.
    if name in ("Inception", "InceptionNotFound"):
        from translate.evaluation import inception

        return getattr(inception, name)
    raise AttributeError(f"module 'translate.evaluation' has no attribute {name!r}")
