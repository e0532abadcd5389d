"""Tiling geometry against numpy and the blending rules: padding as ``np.pad``, tiles on the stride grid covering the
image with the asked overlap, weights that sum to one and ignore the edge pixels of a tile, where it lacks context,
and an identity network given back its input through any tiling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from translate.inference.tiling import feather_weights, pad_to_stride, tile_positions, translate_tiled


@pytest.mark.parametrize(("h", "w", "stride", "min_size"), [(5, 7, 4, 1), (13, 9, 8, 16), (2, 3, 8, 1), (8, 8, 4, 1)])
def test_padding_reflects_then_repeats_the_last_pixel(h, w, stride, min_size):
    x = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    out = pad_to_stride(x, stride, min_size)
    hp, wp = out.shape[-2:]
    assert hp % stride == 0 and wp % stride == 0 and hp >= max(h, min_size) and wp >= max(w, min_size)
    assert hp - h < max(stride, min_size) and wp - w < max(stride, min_size)
    # numpy's reflection as far as the image allows (side - 1 pixels), then its edge mode for the rest
    a = x[0, 0].numpy()
    ry, rx = min(hp - h, h - 1), min(wp - w, w - 1)
    expected = np.pad(np.pad(a, ((0, ry), (0, rx)), mode="reflect"), ((0, hp - h - ry), (0, wp - w - rx)), mode="edge")
    np.testing.assert_array_equal(out[0, 0].numpy(), expected)


@pytest.mark.parametrize(("length", "tile", "overlap", "stride"), [(1000, 256, 64, 4), (200, 96, 48, 4),
                                                                    (97 * 8, 128, 40, 8), (96, 96, 16, 4)])
def test_tiles_cover_the_axis_on_the_stride_grid_with_the_overlap(length, tile, overlap, stride):
    positions = tile_positions(length, tile, overlap, stride)
    assert positions[0] == 0 and positions[-1] == length - tile
    assert all(p % stride == 0 for p in positions)
    assert all(0 < b - a <= tile - overlap // stride * stride for a, b in zip(positions, positions[1:]))


@pytest.mark.parametrize(("length", "tile", "overlap"), [(1000, 256, 64), (200, 96, 48), (776, 128, 40)])
def test_weights_sum_to_one_and_give_tile_edges_no_weight(length, tile, overlap):
    positions = tile_positions(length, tile, overlap, 8)
    weights = feather_weights(positions, tile)
    total = torch.zeros(length)
    for p, w in zip(positions, weights):
        assert w.shape == (tile,) and (w > 0).all() and (w <= 1).all()
        total[p:p + tile] += w
    torch.testing.assert_close(total, torch.ones(length), atol=3e-4, rtol=0)  # the 1e-4 floor adds a little
    for i in range(len(positions) - 1):
        shared = positions[i] + tile - positions[i + 1]
        edge = shared // 4  # the outer quarter of the overlap, on each side of the seam
        assert (weights[i + 1][:edge] <= 1e-4).all() and (weights[i][tile - edge:] <= 1e-4).all()
        # and the middle of the overlap is blended from both tiles
        middle = positions[i + 1] + shared // 2 - positions[i]
        assert 0.25 < weights[i][middle] < 0.75
    assert (weights[0][: positions[1]] == 1).all()  # the first tile's own part is not blended


@pytest.mark.parametrize(("tile", "overlap"), [(32, 8), (48, 16), (32, 28)])
def test_tiles_of_an_identity_network_give_back_the_image(tile, overlap):
    # (32, 28): each pixel lies in up to 8 tiles, whose blending weights do not sum to one before normalisation.
    image = torch.randint(0, 256, (1, 3, 37, 50), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = translate_tiled(lambda x: x, image, lambda x: x / 127.5 - 1, out_channels=3, tile=tile, overlap=overlap,
                          stride=4, batch_size=3)
    torch.testing.assert_close(out, image.float() / 127.5 - 1, atol=1e-5, rtol=0)
    if overlap > tile // 2:
        positions = tile_positions(52, tile, overlap, 4)
        total = torch.zeros(52)
        for p, w in zip(positions, feather_weights(positions, tile)):
            total[p:p + tile] += w
        assert (total - 1).abs().max() > 0.01
