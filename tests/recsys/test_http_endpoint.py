"""A recommender behind an HTTP endpoint (protocol varsec-scores/1): the reference server serves
a fitted model, the ``http`` recommender scores through it with the same numbers as in process,
counts its requests, and turns every endpoint failure into one ModelError line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from recsys_helpers import FAST, PixelExtractor

from varsec.errors import ConfigError, DataError, ModelError
from varsec.recsys import VBPR, create_recommender
from varsec.recsys.http_endpoint import (
    NPY,
    PROTOCOL,
    HttpRecommender,
    decode_png,
    encode_png,
    encode_scores,
    endpoint_usage,
)
from varsec.recsys.serve import serve_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def vbpr(planted):
    """The model the reference server serves (its image extractor attached)."""
    return VBPR(factors=8, visual_factors=8, **FAST).fit(planted, extractor=PixelExtractor())


@pytest.fixture(scope="module")
def served(vbpr):
    server = serve_model(vbpr, threads=1)
    yield server
    server.close()


@pytest.fixture(scope="module")
def remote(served, planted):
    return HttpRecommender(url=served.url, timeout=10).fit(planted)


def _images(planted, rows) -> torch.Tensor:
    return torch.from_numpy(np.asarray(planted.catalog.images[rows])).float() / 255


def test_scores_over_http_are_the_in_process_scores(remote, vbpr, planted):
    model = vbpr
    users = [0, 3, 7]
    assert torch.equal(remote.score(users), model.score(users))
    assert torch.equal(remote.score(users, [5, 1, 90]), model.score(users, [5, 1, 90]))
    images = _images(planted, [80, 81, 82, 83])  # cold items, on the 8-bit grid
    assert torch.equal(remote.score_images(users, images), model.score_images(users, images))


def test_uploads_are_8_bit_pngs_so_float_images_are_rounded_first(remote, vbpr, planted):
    images = _images(planted, [80, 81]) + 0.4 / 255  # off the grid: rounds back to it
    assert torch.equal(remote.score_images([1], images),
                       vbpr.score_images([1], _images(planted, [80, 81])))
    grey = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    for image in (grey[:1].astype(np.uint8), grey.astype(np.uint8)):  # mode L, mode RGB
        assert np.array_equal(decode_png(encode_png(image)), image)


def test_it_is_a_query_only_visual_model_whose_scores_carry_no_gradient(remote, planted):
    assert HttpRecommender.visual and not HttpRecommender.differentiable
    images = _images(planted, [80]).requires_grad_(True)
    assert not remote.score_images([0], images).requires_grad


def test_every_request_and_upload_is_counted(remote, planted):
    before = endpoint_usage()
    remote.score([0, 1])
    remote.score_images([0], _images(planted, [80, 81, 82]))
    after = endpoint_usage()
    assert after["requests"] - before.get("requests", 0) == 2
    assert after["images"] - before.get("images", 0) == 3


def test_uploads_go_in_batches_of_batch_images(served, vbpr, planted):
    small = HttpRecommender(url=served.url, batch_images=2).fit(planted)
    before = endpoint_usage()["requests"]
    scores = small.score_images([0, 2], _images(planted, [80, 81, 82, 83, 84]))
    assert endpoint_usage()["requests"] - before == 3  # 2 + 2 + 1 images
    assert scores.shape == (2, 5)


def test_fit_trains_nothing_and_checks_that_the_endpoint_serves_this_dataset(served, planted):
    from recsys_helpers import planted_dataset

    other = planted_dataset(n_users=40)
    with pytest.raises(DataError, match=r"^endpoint http://127\.0\.0\.1:\d+ serves n_users = 60, "
                       r"but the dataset has 40: it must score the same users"):
        HttpRecommender(url=served.url).fit(other)


def test_it_saves_and_loads_without_contacting_the_endpoint(remote, tmp_path):
    remote.save(tmp_path / "m.pt")
    before = endpoint_usage()["requests"]
    loaded = HttpRecommender.load(tmp_path / "m.pt")
    assert isinstance(loaded, HttpRecommender) and loaded.url == remote.url
    assert (loaded.n_users, loaded.n_items) == (remote.n_users, remote.n_items)
    assert endpoint_usage()["requests"] == before


@pytest.mark.parametrize("url", ["", "ftp://host/x", "localhost:8000", "http://h/?q=1"])
def test_a_bad_url_is_refused_when_the_model_is_built(url):
    with pytest.raises(ConfigError, match=r"HttpRecommender parameter url must be an http\(s\) "
                       r"URL of the endpoint such as http://127\.0\.0\.1:8000"):
        create_recommender("http", url=url)


def test_an_unreachable_endpoint_is_one_line(planted):
    with socket_bound() as port:  # a port nobody listens on
        model = HttpRecommender(url=f"http://127.0.0.1:{port}", timeout=5)
        with pytest.raises(ModelError, match=rf"^endpoint http://127\.0\.0\.1:{port}/info is "
                           r"unreachable \(.*refused.*\)\.$"):
            model.fit(planted)


class socket_bound:  # noqa: N801  (a context manager used like a function)
    """A free port, bound but not listening (connections to it are refused)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


# -- endpoints that misbehave ---------------------------------------------------------------------
PLANTED_INFO = {"protocol": PROTOCOL, "n_users": 60, "n_items": 100}


def _endpoint(answer, info=PLANTED_INFO):
    """A server whose POST answers are ``answer(request) -> (status, body, content type)``;
    its /info answer is ``info`` (by default: it serves the planted dataset)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self._send(200, json.dumps(info).encode(), "application/json")

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._send(*answer(request))

        def _send(self, status, body, kind):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _scores(request, shape=None, value=0.5):
    users = len(request["users"])
    width = len(request.get("images") or request.get("items") or range(100))
    return np.full(shape or (users, width), value, dtype=np.float32)


@pytest.mark.parametrize(("answer", "message"), [
    (lambda r: (200, encode_scores(_scores(r, (1, 1)), NPY)[0], NPY),
     r"/score answered scores of shape \(1, 1\), expected \(2, 100\) \(users x items\)\.$"),
    (lambda r: (200, encode_scores(_scores(r, value=np.nan), NPY)[0], NPY),
     r"/score answered NaN or infinite scores\.$"),
    (lambda r: (200, b"<html>oops</html>", "text/html"),
     r"/score answered malformed data \(.*\); expected a float32 \.npy or JSON"),
    (lambda r: (200, json.dumps({"ranks": [1]}).encode(), "application/json"),
     r"/score answered malformed data \(JSON without 'scores'\)"),
    (lambda r: (500, json.dumps({"error": "model not loaded"}).encode(), "application/json"),
     r"/score answered HTTP 500: model not loaded\.$"),
])
def test_a_malformed_answer_is_one_line_naming_the_endpoint(answer, message, planted):
    server = _endpoint(answer)
    try:
        model = HttpRecommender(url=f"http://127.0.0.1:{server.server_address[1]}").fit(planted)
        with pytest.raises(ModelError, match=r"^endpoint http://127\.0\.0\.1:\d+" + message):
            model.score([0, 1])
    finally:
        server.shutdown()
        server.server_close()


def test_a_json_answer_gives_the_same_scores_as_an_npy_one(planted):
    values = np.arange(6, dtype=np.float32).reshape(2, 3) / 7  # not exact in decimal
    server = _endpoint(lambda r: (200, *encode_scores(values, "application/json")))
    try:
        model = HttpRecommender(url=f"http://127.0.0.1:{server.server_address[1]}").fit(planted)
        assert torch.equal(model.score([0, 1], [4, 5, 6]), torch.from_numpy(values))
    finally:
        server.shutdown()
        server.server_close()


def test_an_endpoint_that_does_not_answer_in_time_is_one_line(planted):
    def slow(request):
        time.sleep(3)  # /info answers at once: fit is quick
        return 200, encode_scores(_scores(request), NPY)[0], NPY

    server = _endpoint(slow)
    try:
        model = HttpRecommender(url=f"http://127.0.0.1:{server.server_address[1]}",
                                timeout=1).fit(planted)
        with pytest.raises(ModelError, match=r"^endpoint http://127\.0\.0\.1:\d+/score did not "
                           r"answer within its timeout \(1 s, params\.timeout\)\.$"):
            model.score([0])
    finally:
        server.shutdown()
        server.server_close()


def test_an_endpoint_of_another_protocol_is_refused_at_fit(planted):
    server = _endpoint(None, info={"protocol": "something-else"})
    try:
        with pytest.raises(ModelError, match=r"/info does not speak varsec-scores/1 \(protocol: "
                           r"'something-else'\)\.$"):
            HttpRecommender(url=f"http://127.0.0.1:{server.server_address[1]}").fit(planted)
    finally:
        server.shutdown()
        server.server_close()


# -- the reference server -------------------------------------------------------------------------
def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(("path", "body", "status", "error"), [
    ("/score", b'{"users": [0, 60]}', 400, "user index 60 is unknown to the model"),
    ("/score", b"not json", 400, "Expecting value"),
    ("/score", b'{"user": [0]}', 400, "the body must be a JSON object with a list 'users'"),
    ("/score-images", b'{"users": [0], "images": ["bm90IGEgcG5n"]}', 400,
     "an image is not a readable base64 PNG"),
    ("/rank", b'{"users": [0]}', 404, "no such path '/rank'"),
])
def test_the_server_answers_a_bad_request_with_its_error(served, path, body, status, error):
    got, payload = _post(served.url + path, body)
    assert got == status and error in payload["error"]


def test_the_server_answers_json_to_a_client_that_does_not_take_npy(served, vbpr):
    status, payload = _post(served.url + "/score", b'{"users": [2], "items": [0, 1]}')
    assert status == 200
    assert np.array_equal(np.asarray(payload["scores"], dtype=np.float32),
                          vbpr.score([2], [0, 1]).numpy())


def test_varsec_serve_model_serves_a_saved_model(tmp_path, planted):
    model = VBPR(factors=4, visual_factors=4, epochs=2, early_stopping=False).fit(planted)
    model.save(tmp_path / "vbpr.pt")  # scores catalog items from its features: no extractor
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    process = subprocess.Popen([sys.executable, "-m", "varsec", "serve-model",
                                str(tmp_path / "vbpr.pt"), "--port", "0", "--threads", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert line.startswith(f"serving {tmp_path / 'vbpr.pt'} (VBPR, 60 users, 100 items) on "
                               "http://127.0.0.1:"), process.stderr.read()
        url = line.split(" on ")[1].split()[0]
        remote = HttpRecommender(url=url).fit(planted)
        assert torch.equal(remote.score([0, 5]), model.score([0, 5]))
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0 and "stopped." in out
