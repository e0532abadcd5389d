"""Image-quality and distribution metrics on tensors: PSNR, SSIM, LPIPS, FID, KID, Inception Score, diversity.

Pixel metrics take (N, C, H, W) images in [0, 1]. Distribution metrics take Inception features (N, D) or class
probabilities (N, K) computed by ``translate.evaluation.inception``; they are plain functions so that they can be
tested on any features.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

# PSNR of identical images is infinite; it is reported as this value so that means and JSON stay finite.
# 100 dB is an MSE of 1e-10 on [0, 1] images, far below 8-bit quantisation noise (about 48 dB).
PSNR_MAX = 100.0
SSIM_WINDOW = 11  # Wang et al. 2004: 11×11 Gaussian window, sigma 1.5 (kornia's default sigma)
DIVERSITY_SIZE = 64  # images are compared at this side length for the diversity ratio
# Below this fraction of the real target's diversity, outputs are said to collapse.
COLLAPSE_RATIO = 0.25
LPIPS_BACKBONE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet weights, which LPIPS (alex) is built on


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Per-image PSNR in dB for images in [0, 1], capped at ``PSNR_MAX`` (identical images)."""
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(10 ** (-PSNR_MAX / 10)))).float()


def l1(x: Tensor, y: Tensor) -> Tensor:
    """Per-image mean absolute error for images in [0, 1] (pix2pix's reconstruction term, on 8-bit outputs)."""
    return (x.float() - y.float()).abs().flatten(1).mean(1)


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-image SSIM (mean over channels and positions) for images in [0, 1]; 1 for identical images.

    Only positions where the whole window fits count (as in the original), except for images smaller than the window.
    """
    import kornia  # late: a second of import time that PSNR-only callers need not pay

    padding = "valid" if min(x.shape[-2:]) >= SSIM_WINDOW else "same"
    return kornia.metrics.ssim(x.float(), y.float(), SSIM_WINDOW, max_val=1.0, padding=padding).flatten(1).mean(1)


class LPIPS:
    """LPIPS (Zhang et al. 2018, AlexNet variant) from local files only: the ``lpips`` package ships its linear
    layers; the AlexNet backbone must already be in torch's hub cache. ``LPIPS.unavailable()`` says why not."""

    def __init__(self, device: str | torch.device = "cpu"):
        import lpips

        # pnet_rand builds the backbone without torchvision's download; the real weights are loaded just below.
        self.net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
        features = torch.load(self.backbone_path(), map_location="cpu", weights_only=True)
        slices = [self.net.net.slice1, self.net.net.slice2, self.net.net.slice3, self.net.net.slice4,
                  self.net.net.slice5]
        for part in slices:
            for index, layer in part.named_children():  # children are named by their index in alexnet.features
                if hasattr(layer, "weight"):
                    layer.weight.data.copy_(features[f"features.{index}.weight"])
                    layer.bias.data.copy_(features[f"features.{index}.bias"])
        self.net = self.net.eval().to(device)

    @staticmethod
    def backbone_path() -> Path:
        return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE

    @classmethod
    def unavailable(cls) -> str | None:
        """None when LPIPS can run offline, else the reason it cannot."""
        try:
            import lpips  # noqa: F401
        except ImportError:
            return "the 'lpips' package is not installed (pip install lpips)"
        if not cls.backbone_path().is_file():
            return f"its AlexNet backbone is not in torch's hub cache: put {LPIPS_BACKBONE} at {cls.backbone_path()}"
        return None

    @torch.no_grad()
    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-image LPIPS for images in [0, 1] (gray images are repeated to RGB)."""
        device = next(self.net.parameters()).device
        x, y = (_rgb(v).float().to(device) for v in (x, y))
        return self.net(x, y, normalize=True).flatten().cpu()


def _rgb(x: Tensor) -> Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def fid(features_a: Tensor, features_b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017).

    ``Tr(sqrt(S_a S_b))`` is the sum of the square roots of the eigenvalues of ``S_a S_b``, which are real and
    non-negative for covariance matrices; this avoids scipy's ``sqrtm`` and its complex round-off.
    """
    a, b = features_a.double(), features_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    eigenvalues = torch.linalg.eigvals(cov_a @ cov_b).real.clamp_min(0)
    value = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * eigenvalues.sqrt().sum()
    return max(value.item(), 0.0)


def _mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD² with the polynomial kernel (x·y / d + 1)³ of Bińkowski et al. 2018."""
    d = x.shape[1]
    k_xx, k_yy, k_xy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
    m, n = x.shape[0], y.shape[0]
    # The diagonals (each point with itself) are left out: that is what makes the estimate unbiased.
    xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return xx + yy - 2 * k_xy.mean()


def kid(features_a: Tensor, features_b: Tensor, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: mean and standard deviation of the unbiased MMD² over random subsets.

    Unbiased, so it can come out slightly negative for two samples of one distribution. With sets no larger than
    ``subset_size`` every subset is the whole set and the deviation is 0.
    """
    a, b = features_a.double(), features_b.double()
    size = min(subset_size, a.shape[0], b.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 images in each set (got {a.shape[0]} and {b.shape[0]})")
    if size == a.shape[0] == b.shape[0]:
        return _mmd2_unbiased(a, b).item(), 0.0
    generator = torch.Generator().manual_seed(seed)
    values = torch.stack([
        _mmd2_unbiased(a[torch.randperm(a.shape[0], generator=generator)[:size]],
                       b[torch.randperm(b.shape[0], generator=generator)[:size]])
        for _ in range(subsets)
    ])
    return values.mean().item(), values.std().item()


def inception_score(probabilities: Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016) of class probabilities (N, K): exp(E KL(p(y|x) ‖ p(y))), mean and
    standard deviation over ``splits`` parts (fewer when there are fewer images)."""
    p = probabilities.double()
    splits = max(1, min(splits, p.shape[0]))
    scores = []
    for part in p.chunk(splits):
        marginal = part.mean(0, keepdim=True)
        kl = (part * (part.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(1)
        scores.append(kl.mean().exp())
    scores = torch.stack(scores)
    return scores.mean().item(), (scores.std().item() if splits > 1 else 0.0)


def thumbnails(x: Tensor, size: int = DIVERSITY_SIZE) -> Tensor:
    """Images in [0, 1] reduced to ``size``² (area averaging) for pairwise comparisons."""
    return F.adaptive_avg_pool2d(x.float(), size) if min(x.shape[-2:]) >= size else F.interpolate(
        x.float(), size=(size, size), mode="bilinear", align_corners=False)


def mean_pairwise_distance(x: Tensor) -> float:
    """Mean RMS pixel difference over all pairs of images (N, C, h, w), N ≥ 2."""
    flat = x.flatten(1).double()
    distances = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])
    n = flat.shape[0]
    return (distances.sum() / (n * (n - 1))).item()


# Samples (of a noise model) less diverse than this fraction of the real images' have collapsed. k modes of equal
# weight, each with little variation inside, give about 1 - 1/k of the real diversity: below 0.5 the samples hold no
# more variety than two pictures. Measured on 256 digits (DCGAN, ngf 16-32, 160-300 steps): healthy runs 0.71-1.3
# from the first steps on; a run with G's lr at 0.005 whose grids showed one shape per step from step 90 to 240:
# 0.43-0.58 (so it is warned about at step 120, the first value below 0.5), 0.89 once it recovered; a G that ignores
# its latent: 0.
SAMPLES_COLLAPSE = 0.5


def sample_diversity(thumbs: Tensor) -> float:
    """The diversity of a noise model's samples (or of real images), thumbnails (N ≥ 2) in [0, 1]: the mean pairwise
    distance after each thumbnail is standardised (zero mean, unit spread). For two images whose pixels correlate by
    r it is sqrt(2 (1 - r)): 0 for samples that are the same picture, about sqrt(2) for unrelated ones. Brightness and
    contrast do not count: a young generator's samples are faint (at 10-160 steps of DCGAN on the digits, 3-20 % of
    the real images' raw pixel spread) but differ from each other as much as the real images do, and must not read
    as collapsed. Flat images (one colour each) are all the same picture."""
    x = thumbs.double() - thumbs.double().mean((1, 2, 3), keepdim=True)
    return mean_pairwise_distance(x / x.std((1, 2, 3), keepdim=True).clamp_min(1e-6))


def sample_diagnostics(samples: Tensor, real: Tensor) -> tuple[dict, list[str]]:
    """Mode-collapse signs of a noise model from thumbnails in [0, 1] of its samples and of real images: (metrics,
    warnings). ``diversity`` = ``sample_diversity`` of the samples / that of the real images (1: as varied as the
    data), with ``mean_drift`` and ``std_ratio`` as in ``collapse_diagnostics``."""
    if min(len(samples), len(real)) < 2:
        return {}, ["diversity needs at least 2 images on each side"]
    real_value = sample_diversity(real)
    result = {"diversity": sample_diversity(samples) / real_value if real_value else float("nan")}
    drift, warnings = channel_drift(samples, real, "samples")
    result.update(drift)
    if result["diversity"] < SAMPLES_COLLAPSE:
        warnings.append(f"samples have collapsed: they differ from each other {result['diversity']:.3f}× as much as "
                        f"the real images do (below {SAMPLES_COLLAPSE}×)")
    return result, warnings


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over all images and pixels, as float64 (C,) tensors."""
    v = x.double().transpose(0, 1).flatten(1)
    return v.mean(1), v.std(1)


def channel_drift(outputs: Tensor, targets: Tensor, what: str) -> tuple[dict, list[str]]:
    """``mean_drift`` (the largest per-channel difference of means) and ``std_ratio`` (the smallest per-channel ratio
    of standard deviations) of ``outputs`` over real ``targets`` with as many channels, and the warning when
    ``what`` (the outputs) are flat; nothing for other channel counts."""
    if targets.shape[1] != outputs.shape[1]:
        return {}, []
    mean_out, std_out = channel_stats(outputs)
    mean_real, std_real = channel_stats(targets)
    result = {"mean_drift": (mean_out - mean_real).abs().max().item(),
              "std_ratio": (std_out / std_real.clamp_min(1e-8)).min().item()}
    if result["std_ratio"] >= 0.5:
        return result, []
    return result, [f"{what} are flat: a channel's spread is {result['std_ratio']:.2f}× the real target's"]


def collapse_diagnostics(inputs: Tensor, outputs: Tensor, targets: Tensor | None = None) -> tuple[dict, list[str]]:
    """Mode-collapse signs from thumbnails (N, C, h, w) in [0, 1]: (metrics, warnings).

    ``diversity`` = mean pairwise distance of the outputs / that of the inputs (a translation that keeps the
    variety of its inputs is near ``diversity_real``, the same ratio for the real targets). With targets,
    ``mean_drift`` is the largest per-channel difference of means and ``std_ratio`` the smallest per-channel ratio
    of standard deviations, outputs over real targets.
    """
    result, warnings = {}, []
    if inputs.shape[0] < 2:
        return result, ["diversity needs at least 2 images"]
    spread_in = mean_pairwise_distance(inputs)
    if spread_in == 0:
        return result, ["all inputs are identical: diversity is undefined"]
    result["diversity"] = mean_pairwise_distance(outputs) / spread_in
    reference = None
    if targets is not None:
        result["diversity_real"] = reference = mean_pairwise_distance(targets) / spread_in
        drift, warnings = channel_drift(outputs, targets, "outputs")
        result.update(drift)
    threshold = COLLAPSE_RATIO * reference if reference else 0.1
    if result["diversity"] < threshold:
        real = f" (real targets: {reference:.3f}×)" if reference else ""
        warnings.append(f"possible mode collapse: outputs differ from each other {result['diversity']:.3f}× as much "
                        f"as the inputs do{real}")
    return result, warnings
