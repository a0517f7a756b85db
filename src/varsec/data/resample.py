"""Serve a catalog's images at another size and colour mode (uint8 in, uint8 out).

A marketplace photo fed to an ImageNet backbone has 3 x 224 x 224 = 150,528 pixels an attacker
may change; a Fashion-MNIST image has 784. :func:`resample_catalog` resizes every image once with
Pillow (``bicubic`` by default, or ``lanczos``), square ``size`` x ``size``, and converts its mode:
grey -> RGB repeats the grey channel three times (so the colour image holds exactly the grey
picture), RGB -> grey uses Pillow's ITU-R 601-2 luma. The result is again uint8, so attacks,
defenses and the 8-bit budget work on it as on any catalog. Large results are written to a
memory-mapped ``.npy`` (``scratch``) instead of memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from varsec.data.catalog import MMAP_THRESHOLD_BYTES, ItemCatalog
from varsec.errors import ConfigError, DataError

MIN_SIZE, MAX_SIZE = 8, 512
MODES = ("L", "RGB")
FILTERS = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
Mode = Literal["L", "RGB"]
_CHANNELS = {"L": 1, "RGB": 3}


def check_resample(size: int | None, mode: str | None, resample: str = "bicubic") -> None:
    """Raise a ConfigError unless ``size`` is None or an int in [8, 512], ``mode`` None, 'L'
    or 'RGB' and ``resample`` a known filter."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int | np.integer)
                             or not MIN_SIZE <= size <= MAX_SIZE):
        raise ConfigError(f"image size must be an integer in [{MIN_SIZE}, {MAX_SIZE}] pixels "
                          f"or None (native), got {size!r}.")
    if mode is not None and mode not in MODES:
        raise ConfigError(f"image mode must be 'L', 'RGB' or None (native), got {mode!r}.")
    if resample not in FILTERS:
        raise ConfigError(f"resampling filter must be one of {', '.join(FILTERS)}, "
                          f"got {resample!r}.")


def resampled_shape(shape: tuple[int, int, int], size: int | None,
                    mode: str | None) -> tuple[int, int, int]:
    """The (C, H, W) of images of ``shape`` once resampled to ``size`` and ``mode``."""
    channels, height, width = shape
    if mode is not None:
        channels = _CHANNELS[mode]
    return (channels, height, width) if size is None else (channels, size, size)


def _resample_one(image: np.ndarray, size: int | None, mode: str | None,
                  resample: int) -> np.ndarray:
    """One C x H x W uint8 image -> the resampled C' x H' x W' uint8 image."""
    grey = image.shape[0] == 1
    picture = Image.fromarray(image[0] if grey else np.moveaxis(image, 0, -1),
                              mode="L" if grey else "RGB")
    if mode == "L" and not grey:
        picture, grey = picture.convert("L"), True
    if size is not None and picture.size != (size, size):
        picture = picture.resize((size, size), resample=resample)
    pixels = np.asarray(picture, dtype=np.uint8)
    if grey:
        # Grey -> RGB by replication: the three channels are the resized grey image.
        return np.repeat(pixels[None], 3 if mode == "RGB" else 1, axis=0)
    return np.moveaxis(pixels, -1, 0)


def resample_images(images: np.ndarray, size: int | None, mode: str | None = None, *,
                    resample: str = "bicubic", out: np.ndarray | None = None) -> np.ndarray:
    """Resample N x C x H x W uint8 ``images`` (see the module docstring) into ``out`` (a new
    array when None) and return it."""
    check_resample(size, mode, resample)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DataError(f"images to resample must be uint8 N x C x H x W with 1 or 3 channels, "
                        f"got {images.dtype} with shape {images.shape}.")
    shape = (len(images), *resampled_shape(images.shape[1:], size, mode))
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise DataError(f"output array has shape {out.shape} and dtype {out.dtype}, "
                        f"expected {shape} uint8.")
    for row in range(len(images)):
        out[row] = _resample_one(np.asarray(images[row]), size, mode, FILTERS[resample])
    return out


def is_native(catalog: ItemCatalog, size: int | None, mode: str | None) -> bool:
    """True when ``catalog``'s images already have ``size`` and ``mode`` (nothing to do)."""
    shape = catalog.image_shape
    return shape is None or resampled_shape(shape, size, mode) == shape


def resample_catalog(catalog: ItemCatalog, size: int | None, mode: str | None = None, *,
                     resample: str = "bicubic",
                     scratch: str | Path | None = None) -> ItemCatalog:
    """``catalog`` with every image resampled to ``size`` x ``size`` pixels and ``mode``.

    ``size`` None keeps each image's size, ``mode`` None its channels. When both are already
    native the catalog itself is returned (same object, same bytes). Ids, categories, features
    and extra columns are kept. When the resampled images exceed
    :data:`~varsec.data.catalog.MMAP_THRESHOLD_BYTES` and ``scratch`` (a ``.npy`` path the
    caller owns) is given, they are written there memory-mapped instead of held in memory.
    A features-only catalog is a DataError.
    """
    check_resample(size, mode, resample)
    if catalog.images is None:
        raise DataError(f"catalog {catalog.name!r} has features but no images; it cannot be "
                        "served at another image size or mode.")
    if is_native(catalog, size, mode):
        return catalog
    shape = (len(catalog), *resampled_shape(catalog.image_shape, size, mode))  # type: ignore[arg-type]
    out = None
    if scratch is not None and int(np.prod(shape)) > MMAP_THRESHOLD_BYTES:
        out = np.lib.format.open_memmap(Path(scratch), mode="w+", dtype=np.uint8, shape=shape)
    images = resample_images(catalog.images, size, mode, resample=resample, out=out)
    return ItemCatalog(item_ids=catalog.item_ids, images=images, features=catalog.features,
                       categories=catalog.categories, category_names=catalog.category_names,
                       extra=catalog.extra, name=catalog.name)


__all__ = ["FILTERS", "MAX_SIZE", "MIN_SIZE", "MODES", "check_resample", "is_native",
           "resample_catalog", "resample_images", "resampled_shape"]
