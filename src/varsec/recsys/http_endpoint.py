"""A recommender behind an HTTP endpoint: a platform's live model audited without its code.

The platform keeps its model; varsec scores catalog items and uploaded images through the
endpoint, so the query-only rungs of the threat ladder (Square Attack on the scores or on probe
accounts' ranks, c-SEMA) and every clean and attacked evaluation run against the real ranker.
It gives no gradient (``differentiable = False``): a study that sends a white-box attack
through it stops at validation. ``fit`` trains nothing (the platform did); it asks the endpoint
what it serves and checks that its users and items are the dataset's.

**The protocol** (``varsec-scores/1``; :mod:`varsec.recsys.serve` is the reference server,
``varsec serve-model MODEL.pt``). Users and items are the dataset's 0-based indices::

    GET  {url}/info          -> {"protocol": "varsec-scores/1", "n_users": U, "n_items": N}
    POST {url}/score         {"users": [u, ...], "items": [i, ...] or null}
                             -> scores, len(users) x len(items) (null: all N catalog items)
    POST {url}/score-images  {"users": [u, ...], "images": ["<base64 PNG>", ...]}
                             -> scores, len(users) x len(images)

Images are uploaded as 8-bit PNG (mode L for one channel, RGB for three), as a merchant
uploads, so quantisation is honest: what is scored is exactly the uint8 image the evaluation
measures. Scores come back as a float32 ``.npy`` (``Content-Type: application/x-npy``, when
the request's ``Accept`` lists it) or JSON ``{"scores": [[...], ...]}``; an error is a non-2xx
status with JSON ``{"error": "..."}``. An endpoint that cannot be reached within ``timeout``
seconds, or answers anything else (another shape, NaN or infinite scores, an undecodable body),
is one :class:`~varsec.errors.ModelError` line naming the URL.

Every request is counted (:func:`endpoint_usage`: requests and uploaded images); a study's
stages record what they spent in their ``info.json`` (``endpoint``).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from varsec.data.catalog import Dataset
from varsec.errors import ConfigError, DataError, ModelError
from varsec.params import Param
from varsec.recsys.base import Recommender, register_recommender

PROTOCOL = "varsec-scores/1"
NPY = "application/x-npy"
JSON = "application/json"
# What one answer may hold beyond its scores (the .npy header, JSON punctuation).
_SLACK_BYTES = 1 << 16
_JSON_BYTES_PER_SCORE = 32  # a float written by JSON, with its separator

_USAGE: Counter[str] = Counter()


def endpoint_usage() -> dict[str, int]:
    """What this process has asked every endpoint so far: ``requests`` (HTTP calls) and
    ``images`` (uploads scored)."""
    return dict(_USAGE)


# -- the wire format (shared with the reference server) -------------------------------------------
def encode_png(image: np.ndarray) -> str:
    """One uint8 C x H x W image (C = 1 or 3) as a base64 PNG."""
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise DataError(f"an upload is a uint8 image with 1 or 3 channels, got {image.dtype} "
                        f"with shape {image.shape}.")
    pixels = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_png(text: Any, max_pixels: int = 4096 * 4096) -> np.ndarray:
    """A base64 PNG (mode L or RGB) as uint8 C x H x W; a DataError for anything else."""
    from PIL import Image

    if not isinstance(text, str):
        raise DataError(f"an image must be a base64 PNG string, got {type(text).__name__}.")
    try:
        data = base64.b64decode(text, validate=True)
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG" or image.mode not in ("L", "RGB"):
                raise DataError(f"an image must be a PNG of mode L or RGB, got a {image.format} "
                                f"of mode {image.mode}.")
            if image.width * image.height > max_pixels:
                raise DataError(f"an image of {image.width} x {image.height} pixels is larger "
                                "than this server takes.")
            pixels = np.asarray(image)
    except DataError:
        raise
    except Exception as exc:  # binascii, PIL: whatever cannot be read is one line
        raise DataError(f"an image is not a readable base64 PNG ({type(exc).__name__}).") \
            from None
    return pixels[None] if pixels.ndim == 2 else np.ascontiguousarray(pixels.transpose(2, 0, 1))


def encode_scores(scores: np.ndarray, accept: str) -> tuple[bytes, str]:
    """(body, content type) of a scores answer: float32 .npy when ``accept`` lists it, else
    JSON."""
    array = np.ascontiguousarray(scores, dtype=np.float32)
    if NPY in accept:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue(), NPY
    return json.dumps({"scores": array.tolist()}).encode(), JSON


def decode_scores(body: bytes, content_type: str) -> np.ndarray:
    """The scores of an answer (a ValueError when the body is not what it says)."""
    if content_type == NPY:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    else:
        payload = json.loads(body)
        if not isinstance(payload, dict) or "scores" not in payload:
            raise ValueError("JSON without 'scores'")
        array = np.asarray(payload["scores"], dtype=np.float64)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{array.dtype} values")
    return array


def check_url(url: Any, owner: str = "url") -> str:
    """``url`` when it is an http(s) URL with a host and no query; a ConfigError otherwise."""
    parsed = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname \
            or parsed.query or parsed.fragment:
        raise ConfigError(f"{owner} must be an http(s) URL of the endpoint such as "
                          f"http://127.0.0.1:8000, got {url!r}.")
    return url.rstrip("/")


# -- the recommender ------------------------------------------------------------------------------
@register_recommender("http")
class HttpRecommender(Recommender):
    """A platform's model behind an HTTP endpoint (protocol ``varsec-scores/1``, module doc):
    query-only, visual (it scores uploaded images), trained by the platform."""

    visual: ClassVar[bool] = True
    differentiable: ClassVar[bool] = False
    params: ClassVar[dict[str, Param]] = {
        **Recommender.params,
        "url": Param("", str, doc="the endpoint's base URL, e.g. http://127.0.0.1:8000"),
        "timeout": Param(30.0, float, low=0, low_open=True, doc="seconds to wait for each "
                         "answer"),
        "batch_images": Param(256, int, low=1, doc="images uploaded per request at most"),
    }

    def _check_params(self) -> None:
        super()._check_params()
        check_url(self.hp.url, f"{type(self).__name__} parameter url")

    @property
    def url(self) -> str:
        """The endpoint's base URL (no trailing slash)."""
        return self.hp.url.rstrip("/")

    # -- fitting: nothing to learn; the endpoint must serve this dataset's users and items ------
    def _fit(self, dataset: Dataset, features: Any | None, extractor: Any | None) -> None:
        info = self.describe_endpoint()
        for key, expected in (("n_users", dataset.n_users), ("n_items", dataset.n_items)):
            if info.get(key) != expected:
                raise DataError(f"endpoint {self.url} serves {key} = {info.get(key)!r}, but the "
                                f"dataset has {expected}: it must score the same users and items "
                                "(0-based indices).")

    def describe_endpoint(self) -> dict[str, Any]:
        """The endpoint's ``/info`` answer, checked for the protocol."""
        body, _ = self._request("/info", None)
        try:
            info = json.loads(body)
        except ValueError:
            info = None
        if not isinstance(info, dict) or info.get("protocol") != PROTOCOL:
            got = info.get("protocol") if isinstance(info, dict) else "no JSON object"
            raise ModelError(f"endpoint {self.url}/info does not speak {PROTOCOL} "
                             f"(protocol: {got!r}).")
        return info

    def _build(self, shapes: dict[str, Any]) -> None:
        """Nothing to build: the model lives behind the endpoint."""

    # -- scoring ----------------------------------------------------------------------------------
    def _score(self, users: Tensor, items: Tensor | None) -> Tensor:
        payload = {"users": users.tolist(), "items": None if items is None else items.tolist()}
        width = self.n_items if items is None else len(items)
        return self._scores("/score", payload, (len(users), width))

    def _score_images(self, users: Tensor, images: Tensor) -> Tensor:
        from varsec.vision.perturbation import float_to_uint8

        pixels = float_to_uint8(images.detach()).cpu().numpy()
        parts = []
        for start in range(0, len(pixels), self.hp.batch_images):
            chunk = pixels[start:start + self.hp.batch_images]
            payload = {"users": users.tolist(), "images": [encode_png(one) for one in chunk]}
            parts.append(self._scores("/score-images", payload, (len(users), len(chunk))))
            _USAGE["images"] += len(chunk)
        if not parts:
            return torch.zeros((len(users), 0), device=self.device)
        return torch.cat(parts, 1)

    def _scores(self, path: str, payload: dict[str, Any], shape: tuple[int, int]) -> Tensor:
        """POST ``payload`` and return its checked [U, B] float32 scores."""
        limit = _SLACK_BYTES + _JSON_BYTES_PER_SCORE * shape[0] * shape[1]
        body, kind = self._request(path, payload, limit)
        where = f"endpoint {self.url}{path}"
        try:
            array = decode_scores(body, kind)
        except ValueError as exc:
            raise ModelError(f"{where} answered malformed data ({exc}); expected a float32 .npy "
                             "or JSON {\"scores\": [[...], ...]}.") from None
        if array.shape != shape:
            raise ModelError(f"{where} answered scores of shape {array.shape}, expected {shape} "
                             "(users x items).")
        if not np.isfinite(array).all():
            raise ModelError(f"{where} answered NaN or infinite scores.")
        return torch.as_tensor(array.astype(np.float32), device=self.device)

    def _request(self, path: str, payload: dict[str, Any] | None,
                 limit: int = _SLACK_BYTES) -> tuple[bytes, str]:
        """(body, content type) of one request: GET without ``payload``, POST of its JSON."""
        url = f"{self.url}{path}"
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                         headers={"Content-Type": JSON,
                                                  "Accept": f"{NPY}, {JSON}"})
        _USAGE["requests"] += 1
        try:
            with urllib.request.urlopen(request, timeout=self.hp.timeout) as response:
                body = response.read(limit + 1)
                kind = response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            raise ModelError(f"endpoint {url} answered HTTP {exc.code}: "
                             f"{_error_detail(exc)}.") from None
        except urllib.error.URLError as exc:
            raise ModelError(f"endpoint {url} is unreachable ({exc.reason}).") from None
        except TimeoutError:
            raise ModelError(f"endpoint {url} did not answer within its timeout "
                             f"({self.hp.timeout:g} s, params.timeout).") from None
        except (http.client.HTTPException, OSError) as exc:
            raise ModelError(f"endpoint {url} broke off its answer ({type(exc).__name__}: "
                             f"{exc}).") from None
        if len(body) > limit:
            raise ModelError(f"endpoint {url} answered more than the {limit:,} bytes its scores "
                             "can take.")
        return body, kind


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """The ``error`` of an error answer's JSON body, else its reason."""
    try:
        detail = json.loads(exc.read(_SLACK_BYTES)).get("error")
    except Exception:  # an error page that is not our JSON: its reason is enough
        detail = None
    return str(detail or exc.reason).strip().rstrip(".")


__all__ = ["JSON", "NPY", "PROTOCOL", "HttpRecommender", "check_url", "decode_png",
           "decode_scores", "encode_png", "encode_scores", "endpoint_usage"]
