"""Activation checkpointing of any network built from ``nn.Sequential`` layer lists (``train.gradient_checkpointing``):
each segment keeps only its input for the backward pass and runs its forward again there, trading about one more
forward pass for most of the activation memory (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost").

``enable_checkpointing(net)`` changes no module, parameter or ``state_dict`` key: it replaces the ``forward`` of
*blocks* (``ResnetBlock``, SR's ``ResidualBlock``, anything registered with ``register_checkpoint_block``), each
checkpointed whole, and of the ``nn.Sequential``s outside blocks, which then run their layers in segments cut before
convolutions where the tensor is small (never before a downsampling convolution or after an upsampling layer: the
ResNet generator keeps its input, its blocks' inputs and its first upsampling's input, not its full-resolution
tensors). A layer that changes its input in place
(the U-Net's leading LeakyReLU, whose result the skip connection carries) runs outside any segment, since its
recomputation would see the changed input. Containers inside a Sequential (U-Net levels) run as they are, their own
Sequentials segmented. Code that calls a Sequential's layers one by one (CUT's ``encode``) still works, with only its
blocks checkpointed.

Exact: ``torch.utils.checkpoint`` (non-reentrant) restores the random state for the recomputation (dropout draws the
same mask), and the segment's buffers are put back to what the forward saw for the recomputation and restored after
it, so batch-norm running statistics are updated once and spectral norm's power iteration starts from the same
vectors. Without gradients (evaluation, EMA copies under ``no_grad``) the layers run plainly.
"""

from __future__ import annotations

import types

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

BLOCKS: list[type[nn.Module]] = []  # checkpointed whole: their forward does not change its input in place
PADDING = (nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ZeroPad2d, nn.ConstantPad2d)


def register_checkpoint_block(cls: type[nn.Module]) -> type[nn.Module]:
    """Mark a module class as a block that ``enable_checkpointing`` checkpoints whole (a residual block); its
    forward must not change its input in place."""
    if cls not in BLOCKS:
        BLOCKS.append(cls)
    return cls


class _BufferReplay:
    """Buffers of a checkpointed segment (batch-norm statistics, spectral norm's u and v), as the forward saw them:
    each recomputation (double backward recomputes more than once) starts from them and leaves the buffers as it
    found them. Context managers that can be entered again."""

    def __init__(self, buffers: list[torch.Tensor]):
        self.buffers, self.before, self.after = buffers, [], []

    def contexts(self):
        return _Enter(self._save), _Enter(self._rewind, self._restore)

    def _save(self):
        self.before = [b.clone() for b in self.buffers]

    @torch.no_grad()
    def _rewind(self):
        self.after = [b.clone() for b in self.buffers]
        for b, old in zip(self.buffers, self.before):
            b.copy_(old)

    @torch.no_grad()
    def _restore(self):
        for b, new in zip(self.buffers, self.after):
            b.copy_(new)


class _Enter:
    def __init__(self, enter, leave=None):
        self.enter, self.leave = enter, leave

    def __enter__(self):
        self.enter()

    def __exit__(self, *exc):
        if self.leave is not None:
            self.leave()
        return False


def run_checkpointed(function, modules: list[nn.Module], *args):
    """``function(*args)`` under ``torch.utils.checkpoint`` (non-reentrant, random state preserved), with the
    buffers of ``modules`` replayed for the recomputation."""
    buffers = [b for m in modules for b in m.buffers()]
    if not buffers:
        return checkpoint(function, *args, use_reentrant=False, preserve_rng_state=True)
    replay = _BufferReplay(buffers)
    return checkpoint(function, *args, use_reentrant=False, preserve_rng_state=True,
                      context_fn=replay.contexts)


def _block_forward(self, *args, **kwargs):
    forward = types.MethodType(type(self).forward, self)
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return run_checkpointed(lambda *a: forward(*a, **kwargs), [self], *args)


def _run_layers(layers: list[nn.Module], x):
    for layer in layers:
        x = layer(x)
    return x


def _segmented_forward(self, x):
    layers = list(self)
    if not torch.is_grad_enabled():
        return _run_layers(layers, x)
    for start, end, checkpointed in self._checkpoint_segments:
        part = layers[start:end]
        x = run_checkpointed(lambda y, part=part: _run_layers(part, y), part, x) if checkpointed else \
            _run_layers(part, x)
    return x


def _is_layer(module: nn.Module) -> bool:
    """A single layer: no children but spectral norm's parametrizations."""
    return all(name == "parametrizations" for name, _ in module.named_children())


def _downsamples(layer: nn.Module) -> bool:
    return isinstance(layer, nn.modules.conv._ConvNd) and not layer.transposed and any(s > 1 for s in layer.stride)


def _upsamples(layer: nn.Module) -> bool:
    return (getattr(layer, "upsamples", False) or isinstance(layer, nn.PixelShuffle | nn.Upsample)
            or (isinstance(layer, nn.modules.conv._ConvNd) and layer.transposed and any(s > 1 for s in layer.stride)))


def segments(seq: nn.Sequential) -> list[tuple[int, int, bool]]:
    """(start, end, checkpointed) runs of ``seq``'s layers, in order (see the module docstring). A run is cut
    before a convolution (or the padding in front of one) where the tensor is small: not before a downsampling
    convolution, nor after an upsampling layer, whose high-resolution tensors would otherwise be what is kept."""
    out, start, has_conv, upsampled = [], None, False, False
    layers = list(seq)

    def close(end):
        nonlocal start, has_conv, upsampled
        if start is not None:
            out.append((start, end, end - start > 1))  # one layer alone: checkpointing saves nothing
        start, has_conv, upsampled = None, False, False

    for i, layer in enumerate(layers):
        if isinstance(layer, tuple(BLOCKS)) or not _is_layer(layer):
            close(i)
            out.append((i, i + 1, False))  # a block checkpoints itself; a container's Sequentials are segmented
            continue
        is_conv = isinstance(layer, nn.modules.conv._ConvNd)
        conv = layer if is_conv else layers[i + 1] if isinstance(layer, PADDING) and i + 1 < len(layers) else None
        if has_conv and conv is not None and not _downsamples(conv) and not upsampled:
            close(i)
        if start is None and getattr(layer, "inplace", False):
            out.append((i, i + 1, False))  # changes the segment's input in place: not recomputable
            continue
        if start is None:
            start = i
        has_conv, upsampled = has_conv or is_conv, upsampled or _upsamples(layer)
    close(len(layers))
    return out


def enable_checkpointing(net: nn.Module) -> int:
    """Checkpoint ``net``'s blocks and Sequential segments in place; returns how many units are checkpointed (0: the
    network has no block and no Sequential of two layers or more)."""
    count = 0

    def visit(module: nn.Module) -> None:
        nonlocal count
        if isinstance(module, tuple(BLOCKS)):
            module.forward = types.MethodType(_block_forward, module)
            count += 1
            return
        if isinstance(module, nn.Sequential):
            plan = segments(module)
            if any(checkpointed for _, _, checkpointed in plan):
                module._checkpoint_segments = plan
                module.forward = types.MethodType(_segmented_forward, module)
                count += sum(checkpointed for _, _, checkpointed in plan)
        for child in module.children():
            visit(child)

    visit(net)
    return count


def disable_checkpointing(net: nn.Module) -> None:
    """Undo ``enable_checkpointing``."""
    for module in net.modules():
        if "forward" in module.__dict__ and getattr(module.forward, "__func__", None) in (_block_forward,
                                                                                          _segmented_forward):
            del module.forward
            module.__dict__.pop("_checkpoint_segments", None)


def is_checkpointed(net: nn.Module) -> bool:
    return any(getattr(m.__dict__.get("forward"), "__func__", None) in (_block_forward, _segmented_forward)
               for m in net.modules())
