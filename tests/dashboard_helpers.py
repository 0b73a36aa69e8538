"""Start TensorBoard and ``mlflow ui`` on 127.0.0.1, read them through their HTTP APIs, and screenshot them in headless
Chromium: what tests/test_dashboards.py checks a finished sweep with."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(command: Sequence[str], url: str, cwd: Path, log: Path, timeout: float = 180) -> Iterator[str]:
    """Run ``command`` (a web server) in ``cwd``, wait until ``url`` answers, yield it; stop the server afterwards.
    Its output goes to ``log``, quoted in the failure if it never answers."""
    with log.open("wb") as out:
        process = subprocess.Popen(list(command), cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{command[0]} did not answer on {url}:\n{log.read_text(errors='replace')[-3000:]}") from None
                time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def post_json(url: str, body: Any, timeout: float = 60) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def get_json(url: str, timeout: float = 60) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def chromium() -> str:
    """The Chromium executable; skips the test, saying what to install, where there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no chromium on PATH to screenshot the dashboards: apt-get update && apt-get install -y chromium")


def screenshot(url: str, path: Path, profile: Path, size: tuple[int, int] = (1600, 900), budget_ms: int = 20000) -> Path:
    """A headless Chromium screenshot of ``url`` as a PNG at ``path``, after ``budget_ms`` of virtual time for the page
    to load its data and render; ``profile`` is a fresh user-data folder."""
    command = [
        chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={budget_ms}", f"--screenshot={path}", url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and path.is_file(), f"chromium failed ({result.returncode}):\n{result.stderr[-3000:]}"
    return path


def distinct_colours(png: Path) -> int:
    """How many colours a PNG has: a blank or error page has a handful, a rendered table with text hundreds."""
    from PIL import Image

    with Image.open(png) as image:
        return len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])


def save_screenshot(png: Path, folder: str | None) -> None:
    """Copy ``png`` into ``folder`` (``SEQ2SEQ_SCREENSHOT_DIR``, e.g. docs/figures) where one is given."""
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, Path(folder) / png.name)
