"""``translate train CONFIG [key=value ...]``: train a model from a YAML config with dotted overrides."""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  translate train configs/pix2pix_facades.yaml data.root=datasets/facades
  translate train configs/cyclegan_horse2zebra.yaml data.root=datasets/horse2zebra train.mixed_precision=bf16
  translate train configs/demo_pix2pix.yaml model.netG=unet_128 data.batch_size=4
  translate train configs/pix2pix_facades.yaml data.root=datasets/facades --resume
several processes / GPUs:
  accelerate launch --multi_gpu --num_processes 2 -m translate.cli train CONFIG ...
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a model from a YAML config", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a model. Any config value can be overridden with group.key=value "
                    "(groups: model, data, train). The run directory is train.output_dir (default runs/<config name>).",
    )
    p.add_argument("config", help="YAML config file (see configs/)")
    # default=[]: without it argparse lists an empty override list among the missing arguments.
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help="dotted overrides, e.g. data.batch_size=4, before or after the flags")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint of the run")
    group.add_argument("--resume-from", metavar="PATH", help="continue from this checkpoint directory")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (with the run directory as train.output_dir) and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from translate.config import ConfigError, load_config, to_yaml
    from translate.data import DatasetError
    from translate.engine.trainer import (
        INTERRUPTED_EXIT_CODE,
        BadFileStop,
        OutOfMemoryStop,
        TrainingDiverged,
        TrainingInterrupted,
        run_directory,
        train,
    )

    try:
        config = load_config(args.config, args.overrides)
        if args.print_config:
            # The directory the run will use, not the default's empty string.
            config.train.output_dir = str(run_directory(config))
            print(to_yaml(config), end="")
            return 0
        run_dir = train(config, resume=args.resume_from or args.resume)
    except (ConfigError, DatasetError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    except (TrainingDiverged, BadFileStop, OutOfMemoryStop) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # disk full, permissions... at a write during training
        from translate.engine.checkpoint import latest_checkpoint

        last = latest_checkpoint(run_directory(config))
        print(f"error: {e}; the last complete checkpoint is {last or 'none'} (continue from it with --resume)",
              file=sys.stderr)
        return 1
    print(f"run directory: {run_dir}\n  model:   {run_dir / 'model'}\n  samples: {run_dir / 'samples'}\n"
          f"  report:  {run_dir / 'report' / 'index.html'}\n"
          f"  logs:    {run_dir / 'logs'} (tensorboard --logdir {run_dir / 'logs'})")
    return 0
