"""``translate export``: write a model directory's generators as ONNX files, verified against PyTorch."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
output names: a model with one generator (pix2pix, imported G) -> MODEL_DIR/model.onnx;
a model with several (CycleGAN) -> MODEL_DIR/G_A.onnx (AtoB) and MODEL_DIR/G_B.onnx (BtoA);
--direction picks one of them; an explicit OUT.onnx needs a single generator.
Inputs: float32 NCHW in [-1, 1], any batch, height and width that are multiples of the generator's stride
(4 for the ResNets, 256 / 128 for unet_256 / unet_128; stored in the file's metadata).
Each file is run with onnxruntime on a random input and compared with PyTorch (fails above 1e-4).
Needs: pip install 'translate[onnx]'.
"""


class _TrailingOutputParser(argparse.ArgumentParser):
    """Accepts ``OUT.onnx`` after the options too: argparse fills an optional positional at its first chance (right
    after MODEL_DIR), so ``export MODEL --opset 18 OUT.onnx`` would otherwise leave OUT unrecognised."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if namespace.output is None and len(extras) == 1 and not extras[0].startswith("-"):
            namespace.output, extras = extras[0], []
        return namespace, extras


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a model directory to ONNX", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write the generators of a model directory (a run's model/, or an imported reference model)\n"
                    "as ONNX files, for onnxruntime and other ONNX runtimes; each file is checked against PyTorch.")
    p.__class__ = _TrailingOutputParser  # the parser class is chosen by translate.cli for all subcommands
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a translate model directory (config.json + safetensors)")
    p.add_argument("output", metavar="OUT.onnx", nargs="?", help="output file (default: see below)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (default onnx)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    p.add_argument("--direction", help="AtoB, BtoA or a generator name (default: all generators)")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the onnxruntime check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from translate.inference.export import ExportError, export_onnx

    try:
        export_onnx(args.model_dir, args.output, direction=args.direction, opset=args.opset, verify=args.verify)
    except (ExportError, ImportError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
