"""Open a page in headless Chromium over the DevTools protocol (a pipe; no extra packages).

:func:`inspect_page` loads a file, then returns every image's (complete, naturalWidth), every
console error / uncaught exception / log error, and a full-page PNG screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--hide-scrollbars", "--mute-audio"]


def chromium() -> str | None:
    """The Chromium executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    images: list[tuple[bool, int]]
    errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    title: str = ""


class _Pipe:
    def __init__(self, process: subprocess.Popen, write_fd: int, read_fd: int) -> None:
        self.process, self.write_fd, self.read_fd = process, write_fd, read_fd
        self.buffer, self.next_id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(raw)


def _errors(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(json.dumps(params.get("args")))
        elif method == "Runtime.exceptionThrown":
            found.append(json.dumps(params.get("exceptionDetails")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            found.append(params["entry"].get("text", ""))
    return found


def inspect_page(path: Path, width: int = 1200, height: int = 1600) -> PageReport:
    """Load ``path`` in a fresh headless Chromium profile and report on it."""
    executable = chromium()
    if executable is None:
        raise FileNotFoundError("chromium is not installed")
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="varsec-chromium-")

    def wire() -> None:  # runs in the child before the unlisted descriptors are closed
        read_end, write_end = os.dup(to_child_r), os.dup(from_child_w)
        os.dup2(read_end, 3)
        os.dup2(write_end, 4)

    process = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={profile}",
                                "about:blank"], pass_fds=(3, 4),
                               preexec_fn=wire, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    os.close(to_child_r)
    os.close(from_child_w)
    pipe = _Pipe(process, to_child_w, from_child_r)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                        "deviceScaleFactor": 1,
                                                        "mobile": False}, session=session)
        pipe.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        pipe.wait_event("Page.loadEventFired")
        probe = ("JSON.stringify({t: document.title, i: Array.from(document.images).map("
                 "i => [i.complete, i.naturalWidth])})")
        value = pipe.send("Runtime.evaluate", {"expression": probe, "returnByValue": True},
                          session=session)["result"]["value"]
        page = json.loads(value)
        shot = pipe.send("Page.captureScreenshot", {"format": "png",
                                                    "captureBeyondViewport": True},
                         session=session)["data"]
        time.sleep(0.2)
        pipe.send("Runtime.evaluate", {"expression": "1"}, session=session)
        report = PageReport(images=[tuple(i) for i in page["i"]], errors=_errors(pipe.events),
                            screenshot=base64.b64decode(shot), title=page["t"])
        with contextlib.suppress(RuntimeError, TimeoutError):
            pipe.send("Browser.close", timeout=10)
        return report
    finally:
        process.kill()
        process.wait(timeout=30)
        os.close(to_child_w)
        os.close(from_child_r)
        shutil.rmtree(profile, ignore_errors=True)
