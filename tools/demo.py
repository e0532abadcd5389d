"""The README's main job: train small Pix2Pix and CycleGAN models on the built-in datasets (no download), measure
what Pix2Pix learned on held-out pairs, convert held-out images with both, and print where everything is.

The Pix2Pix metrics are `translate eval`'s (full-size test images, the exported weights), saved where it saves
them (RUN_DIR/eval/), so the run's report shows them and `translate eval RUN_DIR` prints the same numbers.

    python tools/demo.py [--out runs/demo] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from translate import Translator, load_config, train
from translate.data import dataset_root
from translate.evaluation import evaluate, evaluate_model, save_json, write_report
from translate.inference.convert import convert_folder
from translate.methods import RECIPES

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
METRICS = ("psnr", "ssim", "l1")


def held_out_inputs(config, out: Path) -> Path:
    """The input halves of the held-out (test) pairs as plain images, for folder conversion."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((dataset_root(config) / "test").glob("*.png")):
        pair = np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(pair[:, : pair.shape[1] // 2]).save(out / path.name)
    return out


def pix2pix(out: Path, quick: bool) -> dict:
    overrides = [f"train.output_dir={out / 'pix2pix'}"] + (["train.max_steps=40"] if quick else [])
    config = load_config(CONFIGS / "demo_pix2pix.yaml", overrides)
    untrained = RECIPES["pix2pix"](config).build()  # the same seed-0 initialisation training starts from
    before = evaluate(untrained, config, split="test", metrics=METRICS, full_size=True)
    start = time.perf_counter()
    run_dir = train(config, resume=True)
    minutes = (time.perf_counter() - start) / 60
    result = evaluate_model(run_dir, split="test", metrics=METRICS, device="cpu")
    save_json(result, run_dir / "eval" / f"test_{result.info['direction']}.json")  # where `translate eval` saves
    write_report(run_dir)
    after = result.metrics
    translator = Translator.from_pretrained(run_dir / "model", device="cpu")
    inputs = held_out_inputs(config, run_dir / "held_out_inputs")
    summary = convert_folder(translator, inputs, run_dir / "converted", progress=False)
    return {"run_dir": run_dir, "before": before, "after": after, "minutes": minutes, "converted": summary,
            "inputs": inputs}


def cyclegan(out: Path, quick: bool) -> dict:
    overrides = [f"train.output_dir={out / 'cyclegan'}"] + (["train.max_steps=20"] if quick else [])
    config = load_config(CONFIGS / "demo_cyclegan.yaml", overrides)
    start = time.perf_counter()
    run_dir = train(config, resume=True)
    minutes = (time.perf_counter() - start) / 60
    inputs = dataset_root(config) / "testA"
    summary = convert_folder(run_dir / "model", inputs, run_dir / "converted", direction="AtoB", device="cpu",
                             progress=False)
    return {"run_dir": run_dir, "minutes": minutes, "converted": summary, "inputs": inputs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="where the runs go (default runs/demo)")
    parser.add_argument("--quick", action="store_true", help="a few steps only (a smoke test, nothing learned)")
    args = parser.parse_args()

    p2p = pix2pix(args.out, args.quick)
    cyc = cyclegan(args.out, args.quick)

    b, a = p2p["before"], p2p["after"]
    print("\n=== Pix2Pix, edges → photo (built-in edges2photos), held-out test pairs at full size ===")
    print(f"{'':12}{'L1 ↓':>10}{'PSNR dB ↑':>12}{'SSIM ↑':>10}")
    print(f"{'untrained':12}{b['l1']:>10.4f}{b['psnr']:>12.2f}{b['ssim']:>10.3f}")
    print(f"{'trained':12}{a['l1']:>10.4f}{a['psnr']:>12.2f}{a['ssim']:>10.3f}   ({p2p['minutes']:.1f} min)")
    print(f"(full-size test images, exported weights: what `translate eval {p2p['run_dir']} --metrics psnr,ssim,l1` "
          "prints)")
    for name, result in (("Pix2Pix", p2p), ("CycleGAN", cyc)):
        run_dir = result["run_dir"]
        print(f"\n{name}: {run_dir}  ({result['minutes']:.1f} min of training)")
        print(f"  model     {run_dir / 'model'}   (Translator.from_pretrained / translate convert)")
        print(f"  samples   {run_dir / 'samples'}   (input | output | target grids during training)")
        print(f"  converted {run_dir / 'converted'}   ({result['converted']['converted']} images from "
              f"{result['inputs']})")
        print(f"  report    {run_dir / 'report' / 'index.html'}")
        print(f"  logs      tensorboard --logdir {run_dir / 'logs'}")


if __name__ == "__main__":
    main()
