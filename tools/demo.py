"""The README's main job: train small Pix2Pix and CycleGAN models on the built-in datasets (no download), measure
both on held-out images against their known truth next to doing nothing (output = input), convert held-out images
with both, and print where everything is.

The metrics are `translate eval`'s (full-size test images, the exported weights), saved where it saves them
(RUN_DIR/eval/), so the run's report shows them and `translate eval` prints the same numbers. CycleGAN trains on
unpaired photos and stylised photos; its held-out photos are scored against their true stylisations (the built-in
photo2stylized_paired test pairs, which no training image comes from).

    python tools/demo.py [--out runs/demo] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from translate import Translator, load_config, train
from translate.data import dataset_root, ensure_builtin
from translate.engine.checkpoint import latest_checkpoint, training_state
from translate.engine.trainer import INTERRUPTED_EXIT_CODE, TrainingInterrupted, run_directory
from translate.evaluation import do_nothing, evaluate, evaluate_model, save_json, write_report
from translate.evaluation.evaluate import model_config
from translate.inference.convert import convert_folder
from translate.methods import RECIPES
from translate.networks.description import describe

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
METRICS = ("psnr", "ssim", "l1")
# How long it takes, as measured (docs/benchmarks.md, "Set-up, demo and tests"): said at the start.
EXPECTED = {
    False: "about 6 minutes on a quiet 2-core CPU without bf16 (AMD EPYC, fp32: 5.6 min measured); on a machine busy "
           "with other work much longer (58 min at load 6-9)",
    True: "a minute or two (--quick: 40 + 20 steps, nothing learned; 31 s measured on a quiet 2-core CPU)",
}


def held_out_inputs(config, out: Path) -> Path:
    """The input halves of the held-out (test) pairs as plain images, for folder conversion."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((dataset_root(config) / "test").glob("*.png")):
        pair = np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(pair[:, : pair.shape[1] // 2]).save(out / path.name)
    return out


def measured(run_dir: Path, data: Path | None = None, dataset_mode: str | None = None) -> dict:
    """The exported model and doing nothing on the full-size held-out pairs: {"model": metrics, "do nothing": ...};
    the model's result saved where `translate eval` saves it, and the run's report written."""
    result = evaluate_model(run_dir, data, metrics=METRICS, split="test", dataset_mode=dataset_mode, device="cpu")
    save_json(result, run_dir / "eval" / f"test_{result.info['direction']}.json")
    write_report(run_dir)
    config = model_config(describe(run_dir / "model"), data, result.info["direction"], dataset_mode)
    baseline = evaluate({"G": do_nothing(config.model.input_nc)}, config, "test", METRICS, full_size=True)
    return {"model": result.metrics, "do nothing": baseline}


def trained(config, name: str) -> tuple[Path, float]:
    """Train ``config``, continuing an earlier demo's run where one was stopped; the run directory and the minutes
    of training it took over all its runs."""
    earlier = latest_checkpoint(run_directory(config))
    if earlier is not None:
        print(f"{name}: continuing the earlier demo run from {earlier} (step "
              f"{training_state(earlier)['step']})", flush=True)
    run_dir = train(config, resume=True)
    return run_dir, training_state(latest_checkpoint(run_dir))["seconds"] / 60


def pix2pix(out: Path, quick: bool) -> dict:
    overrides = [f"train.output_dir={out / 'pix2pix'}"] + (["train.max_steps=40"] if quick else [])
    config = load_config(CONFIGS / "demo_pix2pix.yaml", overrides)
    untrained = RECIPES["pix2pix"](config).build()  # the same seed-0 initialisation training starts from
    before = evaluate(untrained, config, split="test", metrics=METRICS, full_size=True)
    run_dir, minutes = trained(config, "Pix2Pix")
    scores = {"untrained": before, **measured(run_dir)}
    translator = Translator.from_pretrained(run_dir / "model", device="cpu")
    inputs = held_out_inputs(config, run_dir / "held_out_inputs")
    summary = convert_folder(translator, inputs, run_dir / "converted", progress=False)
    return {"run_dir": run_dir, "scores": scores, "minutes": minutes, "converted": summary, "inputs": inputs,
            "task": "edges → photo (built-in edges2photos)"}


def cyclegan(out: Path, quick: bool) -> dict:
    overrides = [f"train.output_dir={out / 'cyclegan'}"] + (["train.max_steps=20"] if quick else [])
    config = load_config(CONFIGS / "demo_cyclegan.yaml", overrides)
    run_dir, minutes = trained(config, "CycleGAN")
    scores = measured(run_dir, ensure_builtin("photo2stylized_paired"), "aligned")
    inputs = dataset_root(config) / "testA"
    summary = convert_folder(run_dir / "model", inputs, run_dir / "converted", direction="AtoB", device="cpu",
                             progress=False)
    return {"run_dir": run_dir, "scores": scores, "minutes": minutes, "converted": summary, "inputs": inputs,
            "task": "photo → stylised photo, trained unpaired (built-in photo2stylized)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="where the runs go (default runs/demo)")
    parser.add_argument("--quick", action="store_true", help="a few steps only (a smoke test, nothing learned)")
    args = parser.parse_args()

    print(f"The demo trains a small Pix2Pix and a small CycleGAN on built-in data, measures and converts held-out "
          f"images: {EXPECTED[args.quick]}. Ctrl-C stops it; the same command continues.", flush=True)
    try:
        p2p = pix2pix(args.out, args.quick)
        cyc = cyclegan(args.out, args.quick)
    except (TrainingInterrupted, KeyboardInterrupt) as e:
        where = f" ({e})" if isinstance(e, TrainingInterrupted) else ""
        print(f"\nThe demo was stopped{where}. Run the same command again to continue where it stopped: what is "
              "trained, converted and measured is kept.", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT_CODE)

    print("\n=== Held-out test images at full size, scored against their known truth (exported weights) ===")
    for name, result in (("Pix2Pix", p2p), ("CycleGAN", cyc)):
        print(f"\n{name}, {result['task']}")
        print(f"  {'':30}{'L1 ↓':>8}{'PSNR dB ↑':>11}{'SSIM ↑':>8}")
        for row, m in result["scores"].items():
            label = f"trained ({result['minutes']:.1f} min)" if row == "model" else row
            print(f"  {label:30}{m['l1']:>8.4f}{m['psnr']:>11.2f}{m['ssim']:>8.3f}")
        gain = result["scores"]["model"]["psnr"] - result["scores"]["do nothing"]["psnr"]
        print(f"  {gain:+.2f} dB against doing nothing (output = input)")
    for name, result in (("Pix2Pix", p2p), ("CycleGAN", cyc)):
        run_dir = result["run_dir"]
        print(f"\n{name}: {run_dir}  ({result['minutes']:.1f} min of training)")
        print(f"  model     {run_dir / 'model'}   (Translator.from_pretrained / translate convert)")
        print(f"  samples   {run_dir / 'samples'}   (input | output | target grids during training)")
        converted = result["converted"]
        earlier = f", {converted['skipped']} of them by an earlier run" if converted["skipped"] else ""
        print(f"  converted {run_dir / 'converted'}   ({converted['converted'] + converted['skipped']} images from "
              f"{result['inputs']}{earlier})")
        print(f"  report    {run_dir / 'report' / 'index.html'}")
        print(f"  logs      tensorboard --logdir {run_dir / 'logs'}")


if __name__ == "__main__":
    main()
