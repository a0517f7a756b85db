"""Image similarity of clean vs adversarial images: L-inf, L2, PSNR, SSIM and LPIPS (DESIGN.md
section 6; 001 Table 2 reports LPIPS, 002 reports PSNR/SSIM-style fidelity).

Measures take **uint8** images only (N x C x H x W arrays or tensors): an adversarial image is
measured after it was quantised, never as floats (DESIGN.md section 2).

* ``linf``: max absolute difference in 8-bit levels; ``l2``: L2 norm of the difference on [0, 1]
  pixels; ``psnr``: ``10 log10(255² / MSE)`` in dB (inf for identical images), via
  :func:`skimage.metrics.peak_signal_noise_ratio`; ``ssim``: :func:`skimage.metrics.
  structural_similarity` with ``data_range=255`` (channels as channels, 7x7 window or the largest
  odd window the image allows).
* ``lpips`` (Zhang et al., 2018): computed only when the ``lpips`` package (PyPI; it ships its
  calibrated linear layers) *and* the ImageNet weights of its backbone are already on disk;
  varsec never downloads them. The backbone weights are torchvision's: ``lpips`` loads them from
  torch's cache, ``$TORCH_HOME/hub/checkpoints/<file>`` (``~/.cache/torch/hub/checkpoints`` by
  default; :func:`lpips_backbone_path`), e.g. ``alexnet-owt-7be5be79.pth`` for the default
  ``net="alex"``. Otherwise the column is NaN, ``frame.attrs["lpips"]`` says why, and one
  :class:`~varsec.errors.VarsecWarning` per process says what is missing and where to put it:
  LPIPS is never a made-up number (:func:`lpips_status`). Images smaller than 64 px per side are
  upsampled (bilinear) to 64 px first: LPIPS was calibrated on 64 x 64 patches, and its AlexNet
  cannot take 28 px images.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from varsec.errors import ConfigError, VarsecWarning


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
LPIPS_MIN_SIDE = 64  # LPIPS' calibration patches are 64 x 64 (BAPPS, Zhang et al. 2018)
# torchvision's ImageNet weights of each LPIPS backbone (``IMAGENET1K_V1``, what lpips' legacy
# ``pretrained=True`` asks torchvision for): file name and name of the network.
_BACKBONES = {"alex": ("alexnet-owt-7be5be79.pth", "AlexNet"),
              "vgg": ("vgg16-397923af.pth", "VGG-16"),
              "squeeze": ("squeezenet1_1-b8a52dc0.pth", "SqueezeNet 1.1")}
_DOWNLOADS = "https://download.pytorch.org/models/"
_WARNED: set[str] = set()


def _check_net(net: str) -> None:
    if net not in _BACKBONES:
        raise ConfigError(f"unknown LPIPS network {net!r} (known: {', '.join(_BACKBONES)}).")


def lpips_backbone_path(net: str = "alex") -> Path:
    """Where torchvision (and so ``lpips``) looks for the backbone weights of LPIPS ``net``:
    ``torch.hub.get_dir()/checkpoints/<file>``, i.e. ``$TORCH_HOME/hub/checkpoints/<file>``."""
    from varsec.vision.weights import torchvision_cache_dir

    _check_net(net)
    return torchvision_cache_dir() / _BACKBONES[net][0]


def _lpips_package() -> tuple[bool, Path | None]:
    """Whether ``lpips`` is importable and its directory, without importing it (slow)."""
    if "lpips" in sys.modules:
        module = sys.modules["lpips"]
        where = getattr(module, "__file__", None)
        return module is not None, Path(where).parent if where else None
    spec = importlib.util.find_spec("lpips")
    if spec is None:
        return False, None
    return True, Path(spec.origin).parent if spec.origin else None


def lpips_status(net: str = "alex") -> str | None:
    """None when LPIPS ``net`` can be computed without any download, else what is missing and
    how to provide it (one sentence or two)."""
    _check_net(net)
    installed, package = _lpips_package()
    if not installed:
        return ("the lpips package is not installed (pip install lpips; its wheel ships the "
                "calibrated linear layers)")
    if package is not None:
        linear = package / "weights" / "v0.1" / f"{net}.pth"
        if not linear.is_file():
            return (f"the lpips package has no {net} linear layers at {linear} (reinstall "
                    "lpips from PyPI)")
    backbone = lpips_backbone_path(net)
    if not backbone.is_file():
        return (f"the ImageNet weights of the LPIPS backbone ({_BACKBONES[net][1]}) are "
                f"missing: put torchvision's {backbone.name} (from {_DOWNLOADS}"
                f"{backbone.name}) at {backbone} (the directory is "
                "$TORCH_HOME/hub/checkpoints; varsec never downloads it)")
    return None


def lpips_available(net: str = "alex") -> bool:
    """True when LPIPS can be computed without any download (package and weights present)."""
    return lpips_status(net) is None


def _warn_once(reason: str) -> None:
    if reason not in _WARNED:
        _WARNED.add(reason)
        warnings.warn(f"LPIPS not computed: {reason}.", VarsecWarning, stacklevel=4)


@functools.lru_cache(maxsize=4)
def _lpips_model(module: Any, net: str) -> Any:
    """The LPIPS network of ``module`` (the imported ``lpips``), built once per process."""
    with warnings.catch_warnings():  # torchvision's notice about lpips' pretrained=True
        warnings.simplefilter("ignore", UserWarning)
        return module.LPIPS(net=net, verbose=False).eval()


def _lpips_values(a: np.ndarray, b: np.ndarray, net: str, batch_size: int) -> np.ndarray:
    import lpips
    import torch
    import torch.nn.functional as F

    model = _lpips_model(lpips, net)
    out = []
    with torch.no_grad():
        for start in range(0, len(a), batch_size):
            pair = []
            for images in (a[start : start + batch_size], b[start : start + batch_size]):
                x = torch.from_numpy(np.ascontiguousarray(images)).float() / 127.5 - 1.0
                if x.shape[1] == 1:
                    x = x.expand(-1, 3, -1, -1)
                if min(x.shape[-2:]) < LPIPS_MIN_SIDE:
                    scale = LPIPS_MIN_SIDE / min(x.shape[-2:])
                    size = [max(LPIPS_MIN_SIDE, round(side * scale)) for side in x.shape[-2:]]
                    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                pair.append(x)
            out.append(torch.as_tensor(model(*pair)).reshape(-1).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _lpips_or_reason(a: np.ndarray, b: np.ndarray, net: str,
                     batch_size: int) -> tuple[np.ndarray | None, str | None]:
    reason = lpips_status(net)
    if reason is None:
        try:
            return _lpips_values(a, b, net, batch_size), None
        except Exception as exc:  # a corrupt weights file, an lpips API change: say so
            reason = f"lpips failed on these images ({type(exc).__name__}: {exc})"
    _warn_once(reason)
    return None, reason


def lpips_distance(
    clean: Any, adv: Any, net: str = "alex", batch_size: int = 64
) -> np.ndarray | None:
    """Per-image LPIPS distance, or None (with one warning) when its package or weights are
    missing."""
    a, b = _pair(clean, adv)
    return _lpips_or_reason(a, b, net, batch_size)[0]


def image_measures(clean: Any, adv: Any, *, lpips: bool = True, net: str = "alex") -> pd.DataFrame:
    """One row per image: ``linf`` (levels), ``l2``, ``psnr`` (dB), ``ssim``, ``lpips``.

    ``frame.attrs["lpips"]`` is ``"computed"`` or ``"not computed: <reason>"``; the column is
    NaN in the second case (``lpips=False`` skips it; ``net``: ``alex``, ``vgg`` or
    ``squeeze``).
    """
    a, b = _pair(clean, adv)
    frame = pd.DataFrame({
        "linf": linf_levels(a, b),
        "l2": l2_distance(a, b),
        "psnr": psnr(a, b),
        "ssim": ssim(a, b),
    })
    values, reason = _lpips_or_reason(a, b, net, 64) if lpips else (None, "not requested")
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
    "LPIPS_MIN_SIDE",
    "image_measures",
    "l2_distance",
    "linf_levels",
    "lpips_available",
    "lpips_backbone_path",
    "lpips_distance",
    "lpips_status",
    "psnr",
    "ssim",
    "summarize_image_measures",
]
