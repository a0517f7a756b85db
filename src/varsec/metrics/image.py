"""Image similarity of clean vs adversarial images: L-inf, L2, PSNR, SSIM and LPIPS (DESIGN.md
section 6; 001 Table 2 reports LPIPS, 002 reports PSNR/SSIM-style fidelity).

Measures take **uint8** images only (N x C x H x W arrays or tensors): an adversarial image is
measured after it was quantised, never as floats (DESIGN.md section 2).

* ``linf``: max absolute difference in 8-bit levels; ``l2``: L2 norm of the difference on [0, 1]
  pixels; ``psnr``: ``10 log10(255² / MSE)`` in dB (inf for identical images), via
  :func:`skimage.metrics.peak_signal_noise_ratio`; ``ssim``: :func:`skimage.metrics.
  structural_similarity` with ``data_range=255`` (channels as channels, 7x7 window or the largest
  odd window the image allows).
* ``lpips`` (Zhang et al., 2018): computed only when the ``lpips`` package *and* its backbone
  weights are already on disk (:func:`lpips_available`); varsec never downloads them. Otherwise
  the column is NaN and ``frame.attrs["lpips"]`` says why: it is never a made-up number.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from varsec.errors import ConfigError

LPIPS_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def _as_uint8(images: Any, name: str) -> np.ndarray:
    array = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    if array.dtype != np.uint8:
        raise ConfigError(
            f"{name} must be uint8 images (quantise adversarial images before measuring them), "
            f"got {array.dtype}."
        )
    if array.ndim != 4:
        raise ConfigError(f"{name} must be an N x C x H x W batch, got shape {array.shape}.")
    return array


def _pair(clean: Any, adv: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_uint8(clean, "clean"), _as_uint8(adv, "adv")
    if a.shape != b.shape:
        raise ConfigError(f"clean and adv shapes differ: {a.shape} vs {b.shape}.")
    return a, b


def linf_levels(clean: Any, adv: Any) -> np.ndarray:
    """Per-image L-inf distance in 8-bit levels (integers)."""
    a, b = _pair(clean, adv)
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return diff.reshape(len(a), -1).max(axis=1, initial=0).astype(np.int64)


def l2_distance(clean: Any, adv: Any) -> np.ndarray:
    """Per-image L2 norm of the difference on [0, 1] pixels."""
    a, b = _pair(clean, adv)
    diff = (a.astype(np.float64) - b.astype(np.float64)) / 255.0
    return np.sqrt((diff.reshape(len(a), -1) ** 2).sum(axis=1))


def psnr(clean: Any, adv: Any) -> np.ndarray:
    """Per-image PSNR in dB with data range 255 (inf when the images are identical)."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _pair(clean, adv)
    out = np.empty(len(a))
    for k in range(len(a)):
        same = np.array_equal(a[k], b[k])
        out[k] = np.inf if same else peak_signal_noise_ratio(a[k], b[k], data_range=255)
    return out


def _window(height: int, width: int) -> int:
    side = min(7, height, width)
    return side if side % 2 == 1 else side - 1


def ssim(clean: Any, adv: Any) -> np.ndarray:
    """Per-image SSIM (scikit-image, data range 255, channel axis 0 for colour images)."""
    from skimage.metrics import structural_similarity

    a, b = _pair(clean, adv)
    height, width = a.shape[-2:]
    win = _window(height, width)
    if win < 3:
        raise ConfigError(f"SSIM needs images of at least 3 x 3 pixels, got {height} x {width}.")
    out = np.empty(len(a))
    for k in range(len(a)):
        if a.shape[1] == 1:
            out[k] = structural_similarity(a[k, 0], b[k, 0], data_range=255, win_size=win)
        else:
            out[k] = structural_similarity(a[k], b[k], data_range=255, win_size=win,
                                           channel_axis=0)
    return out


# -- LPIPS -------------------------------------------------------------------------------------
def _lpips_reason(net: str = "alex") -> str | None:
    """Why LPIPS cannot be computed offline (None when it can)."""
    if net not in LPIPS_BACKBONE_FILES:
        return f"unknown LPIPS network {net!r} (known: {', '.join(LPIPS_BACKBONE_FILES)})"
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return "the lpips package is not installed"
    linear = Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"
    if not linear.is_file():
        return f"the lpips package has no {net} linear weights ({linear})"
    import torch

    backbone = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE_FILES[net]
    if not backbone.is_file():
        return f"the {net} backbone weights are not in the torch cache ({backbone})"
    return None


def lpips_available(net: str = "alex") -> bool:
    """True when LPIPS can be computed without any download (package and weights present)."""
    return _lpips_reason(net) is None


def lpips_distance(
    clean: Any, adv: Any, net: str = "alex", batch_size: int = 64
) -> np.ndarray | None:
    """Per-image LPIPS distance, or None when its package or weights are missing."""
    if not lpips_available(net):
        return None
    import lpips
    import torch

    a, b = _pair(clean, adv)
    model = lpips.LPIPS(net=net, verbose=False).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(a), batch_size):
            x = torch.from_numpy(a[start : start + batch_size]).float() / 127.5 - 1.0
            y = torch.from_numpy(b[start : start + batch_size]).float() / 127.5 - 1.0
            if x.shape[1] == 1:
                x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
            out.append(model(x, y).reshape(-1).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def image_measures(clean: Any, adv: Any, *, lpips: bool = True, net: str = "alex") -> pd.DataFrame:
    """One row per image: ``linf`` (levels), ``l2``, ``psnr`` (dB), ``ssim``, ``lpips``.

    ``frame.attrs["lpips"]`` is ``"computed"`` or ``"not computed: <reason>"``; the column is
    NaN in the second case.
    """
    a, b = _pair(clean, adv)
    frame = pd.DataFrame({
        "linf": linf_levels(a, b),
        "l2": l2_distance(a, b),
        "psnr": psnr(a, b),
        "ssim": ssim(a, b),
    })
    reason = _lpips_reason(net) if lpips else "not requested"
    values = lpips_distance(a, b, net) if reason is None else None
    frame["lpips"] = np.nan if values is None else values
    frame.attrs["lpips"] = "computed" if values is not None else f"not computed: {reason}"
    return frame


def summarize_image_measures(frame: pd.DataFrame) -> pd.DataFrame:
    """Tidy summary ``(metric, value, n, note)``: means (PSNR over finite values), max L-inf."""
    rows = [
        {"metric": "linf_max", "value": float(frame["linf"].max()), "n": len(frame)},
        {"metric": "linf_mean", "value": float(frame["linf"].mean()), "n": len(frame)},
        {"metric": "l2_mean", "value": float(frame["l2"].mean()), "n": len(frame)},
    ]
    finite = frame["psnr"][np.isfinite(frame["psnr"])]
    rows.append({"metric": "psnr_mean", "value": float(finite.mean()) if len(finite) else np.inf,
                 "n": len(finite)})
    rows.append({"metric": "ssim_mean", "value": float(frame["ssim"].mean()), "n": len(frame)})
    computed = frame.attrs.get("lpips") == "computed"
    rows.append({"metric": "lpips_mean", "value": float(frame["lpips"].mean()) if computed
                 else np.nan, "n": len(frame) if computed else 0,
                 "note": "" if computed else frame.attrs.get("lpips", "not computed")})
    summary = pd.DataFrame.from_records(rows, columns=["metric", "value", "n", "note"])
    summary["note"] = summary["note"].fillna("")
    return summary


__all__ = [
    "image_measures",
    "l2_distance",
    "linf_levels",
    "lpips_available",
    "lpips_distance",
    "psnr",
    "ssim",
    "summarize_image_measures",
]
