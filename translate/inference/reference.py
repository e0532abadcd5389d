"""Import generator checkpoints of the reference code (pytorch-CycleGAN-and-pix2pix) into a model directory.

The reference saves ``torch.save(net.state_dict())`` (``latest_net_G.pth``, ``latest_net_G_A.pth``). Our
generators have the same module structure, so its keys load unchanged; this module only reads the file safely,
normalises old and wrapped formats, checks every layer and writes ``config.json`` + safetensors.

Test-time preprocessing of the reference's ``test.py``: every input is resized to ``crop_size`` × ``crop_size``
(256 × 256, aspect ratio ignored) and normalised to [-1, 1] with mean 0.5, std 0.5. Our ``Translator`` keeps the
input size instead (it pads to the generator's stride), so outputs on non-256² images differ from ``test.py``'s
by that resize, not by the network.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from translate.networks import GENERATORS, create_generator
from translate.networks.pretrained import generator_spec, save_pretrained

REFERENCE_URL = "https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix"
TEST_PREPROCESS = ("reference test.py resizes inputs to crop_size x crop_size (256x256, aspect ignored) and "
                   "normalises to [-1, 1]; translate keeps the input size and pads to the generator's stride")
# Families of the reference's --netG; dropout only shifts layer indices in the ResNet blocks, so for the U-Nets
# (whose released pix2pix models use it) it cannot be read from the checkpoint and the default follows them.
FAMILY_DEFAULTS = {"resnet": {"norm": "instance", "use_dropout": False}, "unet": {"norm": "batch", "use_dropout": True}}
_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


class UnsafeCheckpointError(ValueError):
    """The file holds Python objects beyond tensors and containers: refused rather than unpickled."""


class CheckpointMismatchError(ValueError):
    """The checkpoint's layers do not fit the requested architecture."""


def family(netG: str) -> str:
    return "unet" if netG.startswith("unet") else "resnet"


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a reference ``.pth`` as a flat state dict, never running code hidden in the pickle.

    Accepts the plain ``state_dict`` the reference saves, one wrapped under ``"state_dict"`` or ``"model"``, and
    ``"module."``-prefixed keys from ``nn.DataParallel``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        # weights_only=True restricts the unpickler to tensors and plain containers: a pickle whose
        # __reduce__ would call os.system fails here before anything runs.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line or "Unsupported" in line),
                      "")
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it contains Python objects other than tensors, which could run code "
            f"when unpickled ({detail or 'rejected by the weights-only unpickler'}). translate reads .pth files "
            f"with torch.load(weights_only=True) only. If you trust the file, load it yourself and re-save just "
            f"its state_dict: torch.save(net.state_dict(), path).") from None
    except (RuntimeError, KeyError, EOFError, ValueError) as e:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointMismatchError(f"{path} holds a {type(obj).__name__}, not a generator state_dict")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointMismatchError(f"{path} is not a plain state_dict: {not_tensors[0]!r} is not a tensor")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def describe_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """Guess the reference options a state dict was saved with, from its key names and shapes.

    Returns a dict with whichever of ``netG``, ``norm``, ``ngf``, ``input_nc``, ``output_nc``, ``use_dropout`` could
    be recognised (``use_dropout`` only for ResNets: the U-Net's dropout layer sits last in its block and shifts
    no index). An empty dict means the layout is not one of the reference generators.
    """
    guess: dict = {}
    if any(v.ndim == 1 and k.endswith(".weight") for k, v in state.items()):
        guess["norm"] = "batch"  # only batch norm has 1-D weights (instance norm here is affine=False)
    blocks = {m.group(1) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    if blocks and "model.1.weight" in state:
        guess["netG"] = f"resnet_{len(blocks)}blocks"
        first = state["model.1.weight"]
        last_index = max(int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.weight$", k)))
        out_conv = state[f"model.{last_index}.weight"]
        guess.update(ngf=first.shape[0], input_nc=first.shape[1], output_nc=out_conv.shape[0])
        # Dropout sits between the two convs of a block, so the second conv moves from index 5 to 6.
        second = next((v for k, v in state.items() if re.search(r"conv_block\.6\.weight$", k)), None)
        guess["use_dropout"] = second is not None and second.ndim == 4
        conv_bias = "model.1.bias" in state
    elif "model.model.0.weight" in state:
        # Each U-Net level nests one more "model.N." pair: the deepest key counts the levels.
        levels = max(k.split(".").count("model") for k in state) - 1
        guess["netG"] = f"unet_{2**levels}"
        first = state["model.model.0.weight"]
        guess.update(ngf=first.shape[0], input_nc=first.shape[1])
        if "model.model.3.weight" in state:  # outermost ConvTranspose2d: (in, out, k, k)
            guess["output_nc"] = state["model.model.3.weight"].shape[1]
        conv_bias = "model.model.0.bias" in state
    else:
        return {}
    if "norm" not in guess:
        # The reference gives convolutions a bias only with instance norm.
        guess["norm"] = "instance" if conv_bias else "none"
    return guess


def _suggestion(guess: dict) -> str:
    if not guess.get("netG"):
        return "its keys do not look like any reference generator (resnet_9blocks, resnet_6blocks, unet_256, unet_128)"
    text = f"this looks like {guess['netG']} with {guess['norm']} norm, ngf {guess['ngf']}"
    options = f"--netG {guess['netG']} --norm {guess['norm']} --ngf {guess['ngf']}"
    if guess.get("use_dropout"):
        text += ", with dropout"
        options += " --dropout"
    if guess["netG"] not in GENERATORS:
        return text + f" ({guess['netG']} is not a registered generator)"
    return f"{text}: try {options}"


def _drop_legacy_instance_norm(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Remove running-stat entries of InstanceNorm layers, which PyTorch < 0.4 saved; the reference deletes
    them on load too (instance norm without track_running_stats has no such buffers)."""
    expected = net.state_dict()
    kept = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if key not in expected and leaf in _RUNNING_STATS:
            try:
                if isinstance(net.get_submodule(prefix), nn.InstanceNorm2d):
                    continue
            except AttributeError:
                pass
        kept[key] = value
    return kept


def check_state_dict(state: dict[str, torch.Tensor], net: nn.Module, described: str) -> dict[str, torch.Tensor]:
    """Return ``state`` ready for ``net.load_state_dict``, or raise naming the first layer that does not fit."""
    state = _drop_legacy_instance_norm(state, net)
    expected = net.state_dict()
    problems, filled = [], {}
    for key, value in expected.items():
        if key not in state:
            # BatchNorm in checkpoints from PyTorch < 0.4.1 lacks num_batches_tracked; it does not affect outputs.
            if key.endswith(".num_batches_tracked"):
                filled[key] = value.clone()
            else:
                problems.append(f"layer {key!r} is missing from the checkpoint (expected shape {tuple(value.shape)})")
        elif state[key].shape != value.shape:
            problems.append(f"layer {key!r}: expected shape {tuple(value.shape)}, found {tuple(state[key].shape)}")
    problems += [f"layer {key!r} (shape {tuple(state[key].shape)}) is in the checkpoint but not in {described}"
                 for key in state if key not in expected]
    if problems:
        more = f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        raise CheckpointMismatchError(
            f"the checkpoint does not fit {described}: {problems[0]}{more}. Likely a wrong --netG, --norm, --ngf "
            f"or --dropout; {_suggestion(describe_checkpoint(state))}")
    return {**state, **filled}


def load_reference_generator(checkpoint: str | Path, netG: str, *, norm: str | None = None, ngf: int = 64,
                             use_dropout: bool | None = None, input_nc: int | None = None,
                             output_nc: int | None = None) -> tuple[nn.Module, dict]:
    """Build ``netG`` with the reference's options and load ``checkpoint`` into it; returns (net, spec)."""
    if netG not in GENERATORS:
        raise KeyError(f"unknown --netG '{netG}'; registered: {', '.join(sorted(GENERATORS))}")
    defaults = FAMILY_DEFAULTS[family(netG)]
    norm = defaults["norm"] if norm is None else norm
    use_dropout = defaults["use_dropout"] if use_dropout is None else use_dropout
    state = read_checkpoint(checkpoint)
    # Channel counts are unambiguous once netG is known (e.g. 1-channel colourisation inputs): read them.
    guess = describe_checkpoint(state)
    if guess.get("netG") != netG:
        guess = {}
    input_nc = input_nc or guess.get("input_nc", 3)
    output_nc = output_nc or guess.get("output_nc", 3)
    spec = generator_spec(netG, ngf, norm, use_dropout, input_nc, output_nc)
    net = create_generator(netG, input_nc=input_nc, output_nc=output_nc, ngf=ngf, norm=norm,
                           use_dropout=use_dropout, init_type=None)
    dropout = ", with dropout" if use_dropout else ""
    described = f"{netG} with {norm} norm, ngf {ngf}{dropout}"
    try:
        state = check_state_dict(state, net, described)
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(f"{checkpoint}: {e}") from None
    net.load_state_dict(state)
    return net, spec


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_reference(checkpoint: str | Path, out_dir: str | Path, *, netG: str, norm: str | None = None,
                     ngf: int = 64, use_dropout: bool | None = None, G_B: str | Path | None = None,
                     test_mode: str = "eval", input_nc: int | None = None, output_nc: int | None = None,
                     recipe: str | None = None, direction: str = "AtoB") -> Path:
    """Convert a reference generator checkpoint (and optionally its CycleGAN partner) into a model directory.

    ``checkpoint`` is ``latest_net_G.pth`` (pix2pix, becomes ``G``: AtoB) or ``latest_net_G_A.pth`` with
    ``G_B=latest_net_G_B.pth`` (CycleGAN, ``G_A``: AtoB, ``G_B``: BtoA). ``norm`` and ``use_dropout`` default by
    family: ResNets instance norm without dropout, U-Nets batch norm with dropout (as the released models).
    ``test_mode="eval"`` behaves like ``test.py --eval`` (running statistics, no dropout, deterministic);
    ``"train"`` like plain ``test.py`` (batch statistics of each input, dropout active: random outputs).
    ``direction``: the reference's ``--direction`` at training time; with "BtoA" ``G`` (and CycleGAN's ``G_A``)
    translates the dataset's B side into its A side, and the model directory's directions say so. ``input_nc`` /
    ``output_nc``: the reference's options (any channel count), read from each checkpoint when not given; they are
    ``checkpoint``'s (G, G_A), so CycleGAN's G_B gets them swapped.
    """
    if test_mode not in ("eval", "train"):
        raise ValueError(f"test_mode must be 'eval' or 'train', not {test_mode!r}")
    if direction not in ("AtoB", "BtoA"):
        raise ValueError(f"direction must be 'AtoB' or 'BtoA', not {direction!r}")
    other = "BtoA" if direction == "AtoB" else "AtoB"
    options = dict(netG=netG, norm=norm, ngf=ngf, use_dropout=use_dropout)
    files = {"G": Path(checkpoint)} if G_B is None else {"G_A": Path(checkpoint), "G_B": Path(G_B)}
    nets, specs = {}, {}
    for name, path in files.items():
        channels = (output_nc, input_nc) if name == "G_B" else (input_nc, output_nc)  # G_B maps B back to A
        nets[name], specs[name] = load_reference_generator(path, **options, input_nc=channels[0],
                                                           output_nc=channels[1])
    meta = {
        "recipe": recipe or ("pix2pix" if G_B is None else "cyclegan"),
        "generators": specs,
        "directions": {direction: "G"} if G_B is None else {direction: "G_A", other: "G_B"},
        "norm_mode": test_mode,
        "step": 0,
        "ema": False,
        "source": {
            "format": "pytorch-CycleGAN-and-pix2pix",
            "url": REFERENCE_URL,
            "checkpoints": {name: {"file": path.name, "sha256": _sha256(path)} for name, path in files.items()},
            "test_preprocess": TEST_PREPROCESS,
        },
    }
    return save_pretrained(out_dir, nets, meta)
