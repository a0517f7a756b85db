"""The reference server of the ``varsec-scores/1`` protocol (:mod:`varsec.recsys.http_endpoint`):
any saved varsec recommender served over HTTP, so a study can audit it as ``kind: http``.

It is the protocol's executable specification and a test double for a platform's endpoint::

    varsec serve-model runs/vbpr.pt --extractor runs/cnn.pt --port 8000

    from varsec.recsys.serve import serve_model
    server = serve_model(model, port=0)       # a background thread; server.url
    ...
    server.close()

Requests are answered one at a time (a lock around the model) on ``threads`` torch threads, so
the same model gives the same scores over HTTP as in process. A request it cannot answer is a
4xx status with JSON ``{"error": "..."}``; the body of a request is bounded (``max_bytes``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import torch

from varsec.errors import VarsecError
from varsec.recsys.base import Recommender
from varsec.recsys.http_endpoint import JSON, PROTOCOL, decode_png, encode_scores

MAX_BYTES = 256 * 1024 * 1024  # the largest request body the server reads


class ModelServer(ThreadingHTTPServer):
    """An HTTP server that answers the protocol with one fitted :class:`Recommender`."""

    daemon_threads = True

    def __init__(self, model: Recommender, host: str = "127.0.0.1", port: int = 0, *,
                 threads: int | None = None, max_bytes: int = MAX_BYTES,
                 log: Callable[[str], None] | None = None) -> None:
        model._require_fitted()
        self.model, self.threads, self.max_bytes, self.log = model.eval(), threads, max_bytes, log
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """``http://host:port`` of the listening socket."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def info(self) -> dict[str, Any]:
        """The ``/info`` answer."""
        return {"protocol": PROTOCOL, "n_users": self.model.n_users,
                "n_items": self.model.n_items, "model": type(self.model).__name__}

    def answer(self, path: str, request: dict[str, Any]) -> np.ndarray:
        """The scores a POST to ``path`` asks for (a VarsecError for a bad request)."""
        if not isinstance(request, dict) or not isinstance(request.get("users"), list):
            raise _BadRequestError("the body must be a JSON object with a list 'users'.")
        users = request["users"]
        with self.lock, torch.no_grad():
            if self.threads is not None:  # the thread's own OpenMP setting, as a stage's
                torch.set_num_threads(self.threads)
            if path == "/score":
                scores = self.model.score(users, request.get("items"))
            else:
                images = request.get("images")
                if not isinstance(images, list):
                    raise _BadRequestError("score-images needs a list 'images' of base64 PNGs.")
                pixels = np.stack([decode_png(one) for one in images]) if images else None
                scores = torch.zeros((len(users), 0)) if pixels is None else \
                    self.model.score_images(users, _to_float(pixels, self.model.device))
        return scores.detach().cpu().numpy()

    def start(self) -> ModelServer:
        """Serve in a background (daemon) thread; returns ``self``."""
        self._thread = threading.Thread(target=self.serve_forever, name="varsec-serve",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()


def _to_float(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    from varsec.vision.perturbation import uint8_to_float

    return uint8_to_float(pixels, str(device))


class _BadRequestError(VarsecError):
    """A request the protocol does not allow."""


class _Handler(BaseHTTPRequestHandler):
    server: ModelServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/info":
            self._send_error(404, f"no such path {self.path!r} (GET /info)")
            return
        self._send(200, json.dumps(self.server.info()).encode(), JSON)

    def do_POST(self) -> None:
        path = self.path.rstrip("/")
        if path not in ("/score", "/score-images"):
            self._send_error(404, f"no such path {self.path!r} (POST /score, /score-images)")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send_error(411, "a request needs its Content-Length")
            return
        if not 0 <= length <= self.server.max_bytes:
            self._send_error(413, f"a request body may hold {self.server.max_bytes:,} bytes")
            return
        try:
            request = json.loads(self.rfile.read(length))
            scores = self.server.answer(path, request)
        except (ValueError, VarsecError) as exc:  # bad JSON, unknown users, unreadable images
            self._send_error(400, str(exc).rstrip("."))
            return
        body, kind = encode_scores(scores, self.headers.get("Accept", ""))
        self._send(200, body, kind)

    def _send_error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode(), JSON)

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")


def serve_model(model: Recommender, host: str = "127.0.0.1", port: int = 0, *,
                threads: int | None = None, log: Callable[[str], None] | None = None
                ) -> ModelServer:
    """Serve ``model`` (fitted, its extractor attached when it scores images) in a background
    thread on ``host:port`` (0: a free port; ``server.url`` says which); ``server.close()``
    stops it. ``threads`` sets torch's threads for scoring (a study's ``threads``, for the same
    numbers as in process)."""
    return ModelServer(model, host, port, threads=threads, log=log).start()


def load_served_model(model_path: str, extractor: str | None = None, layer: str | None = None,
                      device: str = "cpu") -> Recommender:
    """A saved recommender with the backbone of an extractor checkpoint attached (at ``layer``,
    default the backbone's), as a study's stages attach it."""
    model = Recommender.load(model_path, device=device)
    if extractor is not None:
        from varsec.vision.checkpoint import load_checkpoint

        backbone = load_checkpoint(extractor, device=device).backbone
        model.attach_extractor(_LayerFeatures(backbone, backbone.check_layer(layer)))
    return model


class _LayerFeatures(torch.nn.Module):
    """``images -> backbone.features(images, layer)`` as a module."""

    def __init__(self, backbone: Any, layer: str) -> None:
        super().__init__()
        self.backbone, self.layer = backbone, layer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.features(images, self.layer)


__all__ = ["MAX_BYTES", "ModelServer", "load_served_model", "serve_model"]
