"""``translate convert MODEL INPUT OUTPUT``: translate every image and video of a folder tree, or one file (argument
parsing only; the work is ``translate.inference.convert.convert_folder``)."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
Re-running the same command converts only what is missing (outputs are written to a temp file and renamed, so
a killed run leaves no half-written file). Unreadable files are reported and skipped; the exit status is 1 when
any file failed, 2 on a usage error. Converted files keep the input's ICC profile and EXIF (orientation applied
and reset), alpha channel and, in PNG, 16-bit depth. A summary is written to OUTPUT_DIR/convert_summary.json,
with the files left out for their extension; a folder without images is an error (exit status 2).

Models trained on data (data.normalize, any channel count or bit depth) read .npy/.npz arrays and TIFFs of any
channels and sample type, normalise them with the statistics in the model's config.json and write their results
in the training targets' units and sample type: as TIFF where the input's format cannot hold them, or --format npy.
  translate convert runs/ms/model bands/ depth/            # 5-band uint16 TIFFs -> 1-channel uint16 TIFFs

Videos (.mp4 .mov .mkv .webm .avi) are translated frame by frame into the same container with the same frame
count, timestamps (variable frame rates too), frame rate, size and rotation (frames reach the model upright, as
displayed), audio copied unchanged; encoder by extension (libx264 CRF 18, or mpeg4
where FFmpeg lacks it; VP9 for .webm), odd sizes in 4:4:4. Animated GIF/WebP/PNG become animated PNG (APNG) /
WebP. A video is one job (sharding, re-runs); a broken or truncated one is reported with the frame where it
failed. --temporal 0.6 reduces flicker along the input's optical flow (resetting at scene cuts) and reports the
warping error before and after (also: translate eval MODEL CLIP).
  translate convert MODEL clip.mp4 out.mp4 --temporal 0.6

Several processes (one per GPU, or CPU processes) share the work under a launcher, each converting its share of
the outputs still missing; rank 0 shows the progress and writes one summary:
  torchrun --nproc_per_node 4 -m translate.cli convert MODEL INPUT_DIR OUTPUT_DIR
  accelerate launch --multi_gpu --num_processes 4 -m translate.cli convert MODEL INPUT_DIR OUTPUT_DIR
Jobs of a cluster array split a folder with --shard I/N (e.g. --shard $SLURM_ARRAY_TASK_ID/8 with --array=0-7):
each writes OUTPUT_DIR/convert_summary.shard-I-of-N.json, and the last to finish merges them into
OUTPUT_DIR/convert_summary.json.
"""


def _tile(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a size in pixels, not {value!r}") from None
    if size < 0:
        raise argparse.ArgumentTypeError("the size must be positive (0: never tile)")
    return size


def _shard(value: str) -> tuple[int, int]:
    index, _, count = value.partition("/")
    try:
        index, count = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (shard I of N, from 0), e.g. 0/4, not {value!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N, e.g. 0/4, not {value!r}")
    return index, count


def _strength(value: str) -> float:
    try:
        strength = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), not {value!r}") from None
    if not 0 <= strength < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), e.g. 0.6, not {value!r}")
    return strength


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``translate convert``, shared with ``tools/convert_folder.py``."""
    from translate.imageio import DEFAULT_MAX_PIXELS

    p.add_argument("model", metavar="MODEL", help="model directory (config.json + safetensors), e.g. runs/NAME/model")
    p.add_argument("input_dir", metavar="INPUT", help="folder of images and videos (searched recursively), or one file")
    p.add_argument("output_dir", metavar="OUTPUT", help="where the translations go, same subfolders (for one file: "
                                                        "the output file, or a folder)")
    p.add_argument("--format", choices=["same", "png", "jpg", "webp", "tiff", "npy"], default="same",
                   help="output format (default: same as the input; GIF becomes PNG; TIFF where the input's format "
                        "cannot hold the model's results: N channels, 16-bit or float data); tiff and npy hold any "
                        "channel count and sample type")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality, 1-100 (default 95)")
    p.add_argument("--direction", help="AtoB, BtoA or a generator name (default: the model's only one, or AtoB)")
    p.add_argument("--batch-size", type=int, help="images of equal size run together (default: 1 on the CPU, where "
                                                   "larger batches ran slower per image, 4 elsewhere)")
    p.add_argument("--tile", type=_tile, default="auto",
                   help="run images with a side above this many pixels in tiles of that size; auto (default): "
                        "images above --whole-pixels, in 512-px tiles (1024 on GPU); 0: never")
    p.add_argument("--tile-overlap", type=_tile, default="auto", help="pixels shared by neighbouring tiles "
                                                                      "(default auto: an eighth of the tile)")
    p.add_argument("--whole-pixels", type=int, default=None,
                   help="largest image run in one pass (default 1 MP on CPU, by free memory on CUDA); larger ones run "
                        "in tiles, normalised with statistics from a pass of this size: raise it, memory allowing, "
                        "to get closer to the whole-image result")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto (default): bf16 on CPUs with bf16 instructions (AMX, avx512_bf16) and GPUs that "
                        "support it, where the model's bf16 output is >= 40 dB PSNR from fp32 on a probe image "
                        "(checked once per model, cached in MODEL/.probe.json), else fp32")
    p.add_argument("--backend", choices=["torch", "onnxruntime", "auto"], default="torch",
                   help="onnxruntime runs the exported .onnx files (translate export); auto: onnxruntime where it "
                        "is faster for this model (timed once, cached; exports the model if needed), else torch")
    p.add_argument("--overwrite", action="store_true", help="convert again images whose output exists")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first file that fails")
    p.add_argument("--workers", type=int, default=None, help="decoding/encoding threads (default min(4, CPUs))")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse larger images, a guard against decompression bombs (default {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--shard", type=_shard, metavar="I/N",
                   help="convert only shard I of N (every N-th image from the I-th, I from 0), for jobs that split "
                        "a folder by hand; combines with a launcher's processes")
    p.add_argument("--video-codec", metavar="NAME", help="video encoder (default by extension: libx264, else mpeg4; "
                                                         "libvpx-vp9 for .webm; ffv1 in .mkv is lossless)")
    p.add_argument("--crf", type=int, help="video quality, lower is better (libx264 default 18, VP9 24; mpeg4: "
                                           "quantiser = crf / 6)")
    p.add_argument("--temporal", type=_strength, default=0.0, metavar="STRENGTH",
                   help="flicker reduction for videos, 0 (default: off) to 0.95: each frame is blended with the "
                        "previous output warped along the input's optical flow, where that flow is reliable")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("convert", help="translate a folder of images and videos, or one file, with a model",
                              epilog=EPILOG,
                              description="Translate every image and video under INPUT into OUTPUT (or the file INPUT "
                                          "into the file OUTPUT).",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from translate.inference.convert import RanksDisagreeError, convert_folder, format_summary, launcher_env

    rank, world = launcher_env()[:2]
    if not 1 <= args.quality <= 100:
        print("error: --quality must be between 1 and 100", file=sys.stderr)
        return 2
    try:
        summary = convert_folder(
            args.model, args.input_dir, args.output_dir, fmt=args.format, quality=args.quality,
            direction=args.direction, batch_size=args.batch_size, tile=args.tile, tile_overlap=args.tile_overlap,
            whole_pixels=args.whole_pixels,
            device=args.device, dtype=args.dtype, backend=args.backend, overwrite=args.overwrite,
            fail_fast=args.fail_fast, workers=args.workers, max_pixels=args.max_pixels, shard=args.shard,
            progress=not args.quiet, video_codec=args.video_codec, crf=args.crf, temporal=args.temporal)
    except (FileNotFoundError, ValueError, ImportError) as e:
        # Under a launcher each process reports its own error, except one that every process raised alike.
        if rank == 0 or not isinstance(e, RanksDisagreeError):
            print(f"error{f' (rank {rank} of {world})' if world > 1 else ''}: {e}", file=sys.stderr)
        return 2
    if rank == 0:
        print(format_summary(summary))
    return 1 if summary["failed"] else 0
