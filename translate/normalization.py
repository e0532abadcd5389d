"""Intensity normalisation of one side of the data (A: the network input, B: its output): data units of any channel
count and sample type <-> the networks' [-1, 1], and back.

``Stats`` accumulates per-channel statistics file by file (merged exactly, in any order); ``fit`` turns them into a
``Normalization``, whose ``to_dict()`` is the plain dict kept in the run's config (``data.normalize_stats``) and in
the exported model; ``apply`` maps an array into [-1, 1], ``invert`` maps network outputs back to the data's units and
sample type. Imports numpy only (a torch tensor given to ``invert`` is read through ``.numpy()``), so inference can
use it without any training code.

Every method is one affine map per channel, ``y = (x - center) / half``:

- ``auto`` (the default): by the sample type, today's rule: uint8 0..255 and uint16 0..65535 to [-1, 1], float taken
  to be in [0, 1] already; 8-bit images give exactly what they always did (x / 127.5 - 1 in float32).
- ``minmax``: the dataset's minimum and maximum of each channel to -1 and 1.
- ``percentile``: the dataset's low and high percentiles of each channel (e.g. 0.5 and 99.5) to -1 and 1; values
  beyond are clipped to [-1, 1] (that is what the method is for: outliers do not stretch the range).
- ``fixed``: a given range (e.g. 0..4095 for 12-bit data) to [-1, 1], the same for every channel.
- ``meanstd``: each channel's mean to 0 and mean ± 3 standard deviations to ±1 (``MEANSTD_SPAN``): a z-score scaled
  into the generator's tanh range; values beyond are kept, not clipped.

A channel with no spread (max = min, std = 0) maps to 0. Outside ``percentile``, nothing is clipped on the way in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

METHODS = ("auto", "minmax", "percentile", "fixed", "meanstd")
MEANSTD_SPAN = 3.0  # meanstd: mean ± 3 std ↔ ±1
# auto: the range each sample type is taken to span.
AUTO_RANGES = {"uint8": (0.0, 255.0), "uint16": (0.0, 65535.0), "float16": (0.0, 1.0), "float32": (0.0, 1.0),
               "float64": (0.0, 1.0)}


@dataclass
class Stats:
    """Per-channel statistics of a set of arrays: count, min, max (with a source that holds each), mean and M2 (sum of
    squared deviations, merged with Chan et al.'s formula: exact in any order), and optionally a sample of the values
    for percentiles. ``dtype``: the sample type of the data (numpy's promotion of every part's)."""

    channels: int
    dtype: str
    count: int = 0
    minimum: list[float] = field(default_factory=list)
    maximum: list[float] = field(default_factory=list)
    min_source: list[str] = field(default_factory=list)
    max_source: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    m2: list[float] = field(default_factory=list)
    sample: np.ndarray | None = None  # (N, channels) values for percentiles, or None

    @classmethod
    def of(cls, array: np.ndarray, source: str = "", dtype: str | None = None, sample_every: int | None = None):
        """Statistics of one (H, W, C) array; ``sample_every`` k keeps every k-th pixel (raster order) for
        percentiles (1: all of them; None: no sample)."""
        a = np.asarray(array)
        values = a.reshape(-1, a.shape[-1])
        x = values.astype(np.float64)
        mean = x.mean(0) if len(x) else np.zeros(a.shape[-1])
        m2 = ((x - mean) ** 2).sum(0)
        c = a.shape[-1]
        stats = cls(c, dtype or a.dtype.name, len(x), x.min(0).tolist(), x.max(0).tolist(), [source] * c,
                    [source] * c, mean.tolist(), m2.tolist())
        if sample_every is not None:
            stats.sample = values[:: max(1, int(sample_every))].copy()
        return stats

    def merge(self, other: Stats) -> Stats:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        if other.channels != self.channels:
            raise ValueError(f"cannot merge statistics of {self.channels} and {other.channels} channels")
        n = self.count + other.count
        lo = [(a, s) if a <= b else (b, t) for a, b, s, t in zip(self.minimum, other.minimum, self.min_source,
                                                                  other.min_source)]
        hi = [(a, s) if a >= b else (b, t) for a, b, s, t in zip(self.maximum, other.maximum, self.max_source,
                                                                  other.max_source)]
        mean, m2 = [], []
        for ma, mb, qa, qb in zip(self.mean, other.mean, self.m2, other.m2):
            delta = mb - ma
            mean.append(ma + delta * other.count / n)
            m2.append(qa + qb + delta * delta * self.count * other.count / n)
        sample = None
        if self.sample is not None and other.sample is not None:
            sample = np.concatenate([self.sample, other.sample], 0)
        dtype = np.result_type(np.dtype(self.dtype), np.dtype(other.dtype)).name
        return Stats(self.channels, dtype, n, [v for v, _ in lo], [v for v, _ in hi], [s for _, s in lo],
                     [s for _, s in hi], mean, m2, sample)

    @property
    def std(self) -> list[float]:
        """The population standard deviation of each channel (numpy's default, ddof 0)."""
        return [math.sqrt(q / self.count) if self.count else 0.0 for q in self.m2]


@dataclass(frozen=True)
class Normalization:
    """The affine map of one side, per channel: ``low``/``high`` to -1/1 (minmax, percentile, fixed), ``mean`` ± 3
    ``std`` to ±1 (meanstd), or the sample type's range (auto); clipped to [-1, 1] for ``percentile``. ``dtype``: the
    data's sample type, which ``invert`` returns (integers rounded and kept within their range)."""

    method: str = "auto"
    dtype: str = "uint8"
    channels: int = 0  # 0: any (auto)
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    percentiles: tuple[float, ...] = ()  # percentile: which ones low and high are

    # -- the maps ---------------------------------------------------------------------------------------------------
    def affine(self, dtype=None, channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(center, half) of each channel as float64 arrays: y = (x - center) / half, x = y * half + center. ``dtype``
        (default: the data's) decides ``auto``'s scale; ``channels`` (default: the normalisation's) its length."""
        return self._affine(np.dtype(dtype or self.dtype), self.channels if channels is None else channels)

    def value_range(self, dtype=None, channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The data values of each channel that map to -1 and 1 (float64 arrays): a PSNR's data range is their
        difference (``meanstd``: mean ± 3 std)."""
        center, half = self.affine(dtype, channels)
        return center - half, center + half

    def _affine(self, dtype: np.dtype, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """(center, half) per channel: y = (x - center) / half."""
        if self.method == "auto":
            name = np.dtype(dtype).name
            if name not in AUTO_RANGES:
                raise ValueError(f"data.normalize=auto knows uint8, uint16 and float samples, not {name}: choose "
                                 f"data.normalize=minmax, percentile, fixed or meanstd")
            low, high = AUTO_RANGES[name]
            return np.full(channels, (low + high) / 2), np.full(channels, (high - low) / 2)
        if channels != self.channels:
            raise ValueError(f"an array of {channels} channels given to a normalisation of {self.channels}")
        if self.method == "meanstd":
            center, half = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64) * MEANSTD_SPAN
        else:
            low, high = np.asarray(self.low, np.float64), np.asarray(self.high, np.float64)
            center, half = (low + high) / 2, (high - low) / 2
        # A channel with no spread keeps a unit scale: its one value maps to 0 instead of dividing by zero.
        return center, np.where(half > 0, half, 1.0)

    def apply(self, array: np.ndarray, channel_axis: int = -1) -> np.ndarray:
        """Data units → float32 in [-1, 1] (``percentile`` clips there; other methods keep what lies beyond), the
        channels along ``channel_axis``. ``auto`` reads the scale from the array's own sample type, so a folder mixing
        8- and 16-bit images gives both the same brightness, as it always did."""
        a = np.asarray(array)
        axis = channel_axis % a.ndim
        if self.method == "auto" and a.dtype == np.uint8:
            # Today's arithmetic for 8-bit images, bit for bit: float32, x / 127.5, then - 1.
            y = a.astype(np.float32)
            y /= np.float32(127.5)
            y -= np.float32(1.0)
            return y
        center, half = self._affine(a.dtype, a.shape[axis])
        shape = [1] * a.ndim
        shape[axis] = -1
        y = (a.astype(np.float64) - center.reshape(shape)) / half.reshape(shape)
        if self.method == "percentile":
            np.clip(y, -1.0, 1.0, out=y)
        return y.astype(np.float32)

    def invert(self, values, channel_axis: int = -1) -> np.ndarray:
        """Network outputs (a torch tensor or an array, channels along ``channel_axis``) → the data's units in its
        sample type (``dtype``): integers rounded and kept within the type's range, floats as they come."""
        if hasattr(values, "detach"):  # a torch tensor, without importing torch
            values = values.detach().float().cpu().numpy()
        y = np.asarray(values, np.float64)
        axis = channel_axis % y.ndim
        dtype = np.dtype(self.dtype)
        center, half = self._affine(dtype, y.shape[axis])
        shape = [1] * y.ndim
        shape[axis] = -1
        x = y * half.reshape(shape) + center.reshape(shape)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return np.clip(np.rint(x), info.min, info.max).astype(dtype)
        return x.astype(dtype)

    # -- the plain dict (config.yaml, the model's config.json) --------------------------------------------------------
    def to_dict(self) -> dict:
        """{"method", "dtype", "channels"} and the method's numbers: "low"/"high" (minmax, fixed; percentile with
        "percentiles"), "mean"/"std" (meanstd); plain floats and lists, for YAML and JSON."""
        d = {"method": self.method, "dtype": self.dtype, "channels": self.channels}
        if self.method == "meanstd":
            d.update(mean=list(self.mean), std=list(self.std))
        elif self.method != "auto":
            d.update(low=list(self.low), high=list(self.high))
        if self.method == "percentile":
            d["percentiles"] = list(self.percentiles)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        method = d.get("method", "auto")
        if method not in METHODS:
            raise ValueError(f"unknown normalisation method {method!r} ({', '.join(METHODS)})")
        numbers = {k: tuple(float(v) for v in d[k]) for k in ("low", "high", "mean", "std", "percentiles") if k in d}
        needed = {"auto": (), "meanstd": ("mean", "std"), "percentile": ("low", "high", "percentiles")}.get(
            method, ("low", "high"))
        missing = [k for k in needed if k not in numbers]
        if missing:
            raise ValueError(f"a {method} normalisation needs {', '.join(missing)}")
        channels = int(d.get("channels", 0))
        if any(len(numbers[k]) != channels for k in needed if k != "percentiles"):
            raise ValueError(f"a {method} normalisation of {channels} channels needs {channels} values of each of "
                             f"{', '.join(k for k in needed if k != 'percentiles')}")
        return cls(method, str(d.get("dtype", "uint8")), channels, **numbers)


def fit(method: str, stats: Stats, *, percentiles: tuple[float, float] = (0.5, 99.5),
        value_range: tuple[float, float] | None = None) -> Normalization:
    """The ``Normalization`` of ``method`` for data with these statistics. ``percentile`` needs ``stats.sample``;
    ``fixed`` needs ``value_range`` and refuses data outside it (naming a file that holds such a value)."""
    c, dtype = stats.channels, stats.dtype
    if method == "auto":
        if dtype not in AUTO_RANGES:
            raise ValueError(f"data.normalize=auto knows uint8, uint16 and float samples, not {dtype}: choose "
                             f"data.normalize=minmax, percentile, fixed or meanstd")
        return Normalization("auto", dtype, c)
    if method == "minmax":
        return Normalization.from_dict({"method": method, "dtype": dtype, "channels": c, "low": stats.minimum,
                                        "high": stats.maximum})
    if method == "percentile":
        if stats.sample is None:
            raise ValueError("data.normalize=percentile needs a sample of the values")
        q = [float(p) for p in percentiles]
        # One channel at a time: a float64 copy of one column, not of the whole sample.
        low, high = zip(*(np.percentile(stats.sample[:, ch].astype(np.float64), q).tolist() for ch in range(c)))
        return Normalization.from_dict({"method": method, "dtype": dtype, "channels": c, "low": low, "high": high,
                                        "percentiles": q})
    if method == "fixed":
        if value_range is None or len(value_range) != 2:
            raise ValueError("data.normalize=fixed needs data.normalize_range=[low, high]")
        low, high = float(value_range[0]), float(value_range[1])
        for ch in range(c):
            for value, source, outside in ((stats.minimum[ch], stats.min_source[ch], stats.minimum[ch] < low),
                                           (stats.maximum[ch], stats.max_source[ch], stats.maximum[ch] > high)):
                if outside:
                    raise ValueError(f"{source}: channel {ch} holds {value:g}, outside the fixed range "
                                     f"[{low:g}, {high:g}]; widen it or use data.normalize=minmax")
        return Normalization.from_dict({"method": method, "dtype": dtype, "channels": c, "low": [low] * c,
                                        "high": [high] * c})
    if method == "meanstd":
        return Normalization.from_dict({"method": method, "dtype": dtype, "channels": c, "mean": stats.mean,
                                        "std": stats.std})
    raise ValueError(f"unknown normalisation method {method!r} ({', '.join(METHODS)})")
