"""Decoding of item image files with Pillow, for the loaders of real formats (DESIGN.md section 3).

Every image goes through the same guarded path: open only a safe list of raster formats (never
EPS/Ghostscript), refuse zero-size images and decompression bombs (more pixels than ``max_pixels``,
40 million by default) *before* decoding, decode fully (``img.load()``) so truncated files are
caught, convert to one target mode (``'L'`` -> 1 channel, ``'RGB'`` -> 3 channels; alpha is
composited on white; 16-bit grayscale is scaled, not clipped), resize with Pillow, and return
``uint8`` C x H x W. Bad files raise :class:`~varsec.errors.DataError` naming the file.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from varsec.errors import ConfigError, DataError, VarsecWarning
from varsec.io import describe_non_regular, progress

DEFAULT_MAX_PIXELS = 40_000_000
# Raster formats Pillow may open; EPS (Ghostscript) and other exotic decoders are excluded.
SAFE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "TGA")
RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
TARGET_MODES = {"L": 1, "RGB": 3}
# Pillow modes without colour: they become 'L' unless other images force 'RGB'.
GRAYSCALE_MODES = frozenset(
    {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
# Pillow raises many exception types on malformed input; all mean "corrupt file".
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
                  KeyError, TypeError, ZeroDivisionError)

ImageSource = str | Path | bytes


@dataclass(frozen=True)
class ImageInfo:
    """What an image header says: Pillow mode and (height, width)."""

    mode: str
    size: tuple[int, int]


# -- argument checks ------------------------------------------------------------------------------
def check_mode(mode: str) -> str:
    """Validate a target mode (``'L'`` or ``'RGB'``) and return it."""
    if mode not in TARGET_MODES:
        raise ConfigError(f"image mode {mode!r} is not supported (expected 'L' or 'RGB').")
    return mode


def check_size(size: Sequence[int]) -> tuple[int, int]:
    """Validate a target (height, width) of two positive integers and return it as a tuple."""
    values = tuple(size)
    if len(values) != 2 or not all(isinstance(v, int | np.integer) and v > 0 for v in values):
        raise ConfigError(f"image size {size!r} must be two positive integers (height, width).")
    return int(values[0]), int(values[1])


def check_resample(resample: str) -> Image.Resampling:
    """Map a resampling name (bicubic, lanczos, bilinear, nearest) to Pillow's filter."""
    if resample not in RESAMPLING:
        raise ConfigError(
            f"resampling {resample!r} is not supported (expected one of {', '.join(RESAMPLING)})."
        )
    return RESAMPLING[resample]


def target_channels(mode: str) -> int:
    """Number of channels of a target mode: 1 for ``'L'``, 3 for ``'RGB'``."""
    return TARGET_MODES[check_mode(mode)]


# -- opening --------------------------------------------------------------------------------------
def _label(source: ImageSource, label: str | None) -> str:
    if label is not None:
        return label
    return "image bytes" if isinstance(source, bytes) else str(source)


def _zero_size_header(head: bytes) -> bool:
    """True when a PNG, GIF or BMP header declares a zero width or height (Pillow says only
    'cannot identify' for those)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
    elif head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
    elif head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
    else:
        return False
    return width == 0 or height == 0


_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF",
               b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


def _signature(head: bytes) -> str | None:
    """The format a file's magic bytes claim, if any."""
    return next((fmt for magic, fmt in _SIGNATURES.items() if head.startswith(magic)), None)


def _read_head(source: ImageSource) -> bytes:
    if isinstance(source, bytes):
        return source[:32]
    with open(source, "rb") as handle:
        return handle.read(32)


def _open_lazy(source: ImageSource, where: str, max_pixels: int) -> Image.Image:
    """Open without decoding; check that it is a safe format, non-empty and not a bomb."""
    if not isinstance(source, bytes) and not Path(source).is_file():
        problem = describe_non_regular(source)
        raise DataError(f"{where} {problem}." if problem else f"{where}: no such image file.")
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=SAFE_FORMATS)
    except Image.DecompressionBombError as exc:
        raise DataError(
            f"{where}: image exceeds Pillow's decompression-bomb limit ({exc})."
        ) from exc
    except Image.UnidentifiedImageError as exc:
        head = _read_head(source)
        if _zero_size_header(head):
            raise DataError(f"{where}: image has zero width or height.") from exc
        if _signature(head):
            raise DataError(f"{where}: corrupt image header ({_signature(head)} file).") from exc
        raise DataError(
            f"{where}: not an image in a supported format ({', '.join(SAFE_FORMATS)})."
        ) from exc
    except _DECODE_ERRORS as exc:
        raise DataError(f"{where}: corrupt image header ({exc}).") from exc
    _check_dimensions(img, where, max_pixels)
    return img


def _check_dimensions(img: Image.Image, where: str, max_pixels: int) -> None:
    width, height = img.size
    if width <= 0 or height <= 0:
        img.close()
        raise DataError(f"{where}: image has zero width or height ({width}x{height}).")
    if width * height > max_pixels:
        img.close()
        raise DataError(
            f"{where}: image is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{max_pixels:,} (a decompression bomb?); raise max_pixels if it is genuine."
        )


def probe_image(
    source: ImageSource, *, label: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ImageInfo:
    """Read only the header of an image file or byte string: its Pillow mode and (H, W).

    Raises DataError for non-images, zero-size images and images over ``max_pixels``.
    """
    where = _label(source, label)
    img = _open_lazy(source, where, max_pixels)
    with img:
        return ImageInfo(mode=img.mode, size=(img.size[1], img.size[0]))


def open_image(
    source: ImageSource, *, label: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Open and fully decode an image file or byte string (so truncation is detected).

    Raises DataError (one sentence naming the file) for missing, corrupt, truncated, non-image,
    zero-size or over-limit images.
    """
    where = _label(source, label)
    img = _open_lazy(source, where, max_pixels)
    try:
        img.load()
    except _DECODE_ERRORS as exc:
        img.close()
        raise DataError(f"{where}: corrupt or truncated image ({exc}).") from exc
    return img


# -- conversion -----------------------------------------------------------------------------------
def is_grayscale_mode(mode: str) -> bool:
    """True for Pillow modes without colour ('1', 'L', 'LA', 'I;16', ...); 'P' counts as colour."""
    return mode in GRAYSCALE_MODES


def default_mode(modes: Sequence[str]) -> str:
    """'L' when every Pillow mode in ``modes`` is grayscale-like, else 'RGB' (no colour is lost)."""
    return "L" if all(is_grayscale_mode(m) for m in modes) else "RGB"


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float grayscale to 8-bit 'L' (Pillow's own convert clips)."""
    if img.mode in _HIGH_DEPTH_MODES:
        values = np.asarray(img).astype(np.int64).clip(0, 65535)
        return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), mode="L")
    if img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.rint(np.nan_to_num(values).clip(0, 255)).astype(np.uint8), "L")
    return img


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or "transparency" in img.info


def convert_image(img: Image.Image, mode: str) -> Image.Image:
    """Convert a decoded image to ``'L'`` or ``'RGB'``, compositing any transparency on white."""
    check_mode(mode)
    img = _to_8bit(img)
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img if img.mode == mode else img.convert(mode)


def to_array(
    img: Image.Image,
    *,
    mode: str,
    size: tuple[int, int] | None = None,
    resample: str = "bicubic",
) -> np.ndarray:
    """Convert a decoded image to ``mode``, resize it to ``size`` (H, W); uint8 C x H x W."""
    filter_ = check_resample(resample)
    img = convert_image(img, mode)
    if size is not None:
        height, width = check_size(size)
        if img.size != (width, height):
            img = img.resize((width, height), resample=filter_)
    array = np.asarray(img, dtype=np.uint8)
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def load_image(
    path: str | Path,
    *,
    mode: str | None = None,
    size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resample: str = "bicubic",
    label: str | None = None,
) -> np.ndarray:
    """Decode one image file to uint8 C x H x W (mode defaults to 'L' for grayscale files, else
    'RGB'; size defaults to the native size)."""
    return _decode(path, mode=mode, size=size, max_pixels=max_pixels, resample=resample,
                   label=label)


def decode_image_bytes(
    data: bytes,
    *,
    mode: str | None = None,
    size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resample: str = "bicubic",
    label: str | None = None,
) -> np.ndarray:
    """Decode encoded image bytes (e.g. the JPEG bytes of the DVBPR release) to uint8 C x H x W."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DataError(
            f"{label or 'image'}: expected encoded image bytes, got {type(data).__name__}."
        )
    return _decode(bytes(data), mode=mode, size=size, max_pixels=max_pixels, resample=resample,
                   label=label)


def _decode(
    source: ImageSource,
    *,
    mode: str | None,
    size: tuple[int, int] | None,
    max_pixels: int,
    resample: str,
    label: str | None,
) -> np.ndarray:
    with open_image(source, label=label, max_pixels=max_pixels) as img:
        target = check_mode(mode) if mode is not None else default_mode([img.mode])
        try:
            return to_array(img, mode=target, size=size, resample=resample)
        except (OSError, ValueError) as exc:
            where = _label(source, label)
            raise DataError(
                f"{where}: cannot convert {img.mode!r} image to {target} ({exc})."
            ) from exc


# -- stacks ---------------------------------------------------------------------------------------
def most_common_size(sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The most frequent (H, W); ties go to the one seen first."""
    return Counter(sizes).most_common(1)[0][0]


def load_image_stack(
    sources: Sequence[ImageSource],
    labels: Sequence[str],
    *,
    origin: str,
    mode: str | None = None,
    size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resample: str = "bicubic",
) -> np.ndarray:
    """Decode many images to one uint8 N x C x H x W array.

    The default mode is 'L' when every image is grayscale-like, else 'RGB'; the default size is
    the most common (H, W). Images whose mode or size differ from the target are converted and
    their number is reported with a :class:`VarsecWarning` naming ``origin``.
    """
    if len(sources) == 0:
        raise DataError(f"{origin}: no images to load.")
    check_resample(resample)
    if len(labels) != len(sources):
        raise ValueError("load_image_stack needs one label per source.")
    pairs = list(zip(sources, labels, strict=True))
    infos = [probe_image(s, label=lab, max_pixels=max_pixels) for s, lab in pairs]
    modes, sizes = [i.mode for i in infos], [i.size for i in infos]
    target_mode = check_mode(mode) if mode is not None else default_mode(modes)
    target_size = check_size(size) if size is not None else most_common_size(sizes)
    out = np.empty((len(sources), target_channels(target_mode), *target_size), dtype=np.uint8)
    for k, (source, label) in enumerate(progress(pairs, desc="images")):
        out[k] = _decode(source, mode=target_mode, size=target_size, max_pixels=max_pixels,
                         resample=resample, label=label)
    _warn_conversions(infos, target_mode, target_size, origin)
    return out


def _warn_conversions(
    infos: Sequence[ImageInfo], mode: str, size: tuple[int, int], origin: str
) -> None:
    other_mode = sum(info.mode != mode for info in infos)
    other_size = sum(info.size != size for info in infos)
    converted = sum(info.mode != mode or info.size != size for info in infos)
    if converted:
        warnings.warn(
            VarsecWarning(
                f"{origin}: {converted} of {len(infos)} images were converted to {mode} "
                f"{size[0]}x{size[1]} ({other_mode} differed in mode, {other_size} in size)."
            ),
            stacklevel=3,
        )
