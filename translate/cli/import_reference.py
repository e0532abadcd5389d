"""``translate import-reference``: turn a pytorch-CycleGAN-and-pix2pix ``.pth`` into a translate model directory."""

from __future__ import annotations

import argparse
import sys

REFERENCE_NETS = ["resnet_9blocks", "resnet_6blocks", "unet_256", "unet_128"]

DESCRIPTION = """\
Import generator weights saved by pytorch-CycleGAN-and-pix2pix (latest_net_G.pth, latest_net_G_A.pth, ...)
into a model directory (config.json + safetensors) for `translate convert` and Translator.from_pretrained.
The file is read with torch.load(weights_only=True): pickles that carry code are refused.
"""

EPILOG = """\
options as in the reference's train/test commands:
  --netG resnet_*  defaults to --norm instance --no-dropout (the released CycleGAN models)
  --netG unet_*    defaults to --norm batch --dropout (the released pix2pix models; dropout has no
                   weights, so it cannot be read from the file)
  pix2pix:  import-reference latest_net_G.pth --netG unet_256 OUT          -> G (AtoB)
            import-reference latest_net_G.pth --netG unet_256 --direction BtoA OUT  -> G (BtoA)
  CycleGAN: import-reference latest_net_G_A.pth --G_B latest_net_G_B.pth --netG resnet_9blocks OUT
                                                                         -> G_A (AtoB), G_B (BtoA)

test mode:
  eval   (default) like `test.py --eval`: running statistics, no dropout, deterministic
  train  like plain `test.py`: batch norm uses the statistics of each input, dropout stays active
         (outputs of dropout models are then random)

preprocessing: the reference's test.py resizes every input to 256x256 (crop_size; aspect ratio ignored)
and normalises it to [-1, 1]. translate keeps the input size (padding to the generator's stride), so
results on images that are not 256x256 differ from test.py's by that resize; resize first to match.
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("import-reference", help="import a pytorch-CycleGAN-and-pix2pix generator checkpoint",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CHECKPOINT.pth", help="G (pix2pix) or G_A (CycleGAN, A→B) weights")
    p.add_argument("output", metavar="OUTPUT_MODEL_DIR", help="model directory to write")
    p.add_argument("--netG", required=True, choices=REFERENCE_NETS, help="the generator the checkpoint was trained as")
    p.add_argument("--norm", choices=["instance", "batch", "none"], help="default: by --netG family (see below)")
    p.add_argument("--ngf", type=int, default=64, help="generator width (default 64)")
    p.add_argument("--dropout", dest="use_dropout", action=argparse.BooleanOptionalAction, default=None,
                   help="the reference's --no_dropout inverted; default: by --netG family")
    p.add_argument("--G_B", metavar="PATH", help="CycleGAN's G_B (B→A) checkpoint, imported beside G_A")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], default="AtoB",
                   help="the reference's --direction at training time (default AtoB): with BtoA the checkpoint's G "
                        "(G_A) translates B into A, and the model's directions say so")
    p.add_argument("--input_nc", type=int, metavar="N", help="the reference's --input_nc (any channel count; default: "
                                                              "read from the checkpoint)")
    p.add_argument("--output_nc", type=int, metavar="N", help="the reference's --output_nc (default: read from the "
                                                               "checkpoint); G_B's channels are these swapped")
    p.add_argument("--test-mode", choices=["eval", "train"], default="eval",
                   help="eval: like test.py --eval (default); train: like plain test.py")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from translate.inference.reference import CheckpointMismatchError, UnsafeCheckpointError, import_reference
    from translate.networks.pretrained import read_config

    try:
        out = import_reference(args.checkpoint, args.output, netG=args.netG, norm=args.norm, ngf=args.ngf,
                               use_dropout=args.use_dropout, G_B=args.G_B, test_mode=args.test_mode,
                               direction=args.direction, input_nc=args.input_nc, output_nc=args.output_nc)
    except (CheckpointMismatchError, UnsafeCheckpointError, FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    config = read_config(out)
    for direction, name in config["directions"].items():
        s = config["generators"][name]
        dropout = "dropout" if s["use_dropout"] else "no dropout"
        print(f"{name} ({direction}): {s['netG']}, {s['norm']} norm, ngf {s['ngf']}, {dropout}, "
              f"{s['input_nc']}→{s['output_nc']} channels")
    if config["norm_mode"] == "train":
        print("test mode train: batch statistics of each input, like the reference's test.py without --eval")
        if any(s["use_dropout"] for s in config["generators"].values()):
            print("note: dropout stays active in train mode, so outputs are random (they differ from run to run)")
    else:
        print("test mode eval: running statistics, no dropout, deterministic (like test.py --eval)")
    print(f"wrote {out}")
    return 0
