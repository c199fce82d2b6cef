"""Headless Chromium for report tests: load a page with the network unreachable, return
the DOM after scripts ran, and the health the page records on <body>."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Chromium flags: headless, no GPU, and every network name resolves nowhere; the
#: proxy is a closed local port, so even direct IP addresses are unreachable.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--virtual-time-budget=5000",
)


def chromium() -> str | None:
    """The Chromium executable, or ``None`` when none is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _offline_prefix() -> list[str]:
    """``unshare -n`` (no network namespace at all) when this user may use it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


@dataclass
class Page:
    """What the browser made of a report."""

    dom: str
    body: dict[str, str]

    def attribute(self, name: str) -> str | None:
        return self.body.get(name)

    @property
    def plots_expected(self) -> int:
        return int(self.body.get("data-plots-expected", "-1"))

    @property
    def plots_rendered(self) -> int:
        return int(self.body.get("data-plots-rendered", "-1"))

    @property
    def js_errors(self) -> int:
        return int(self.body.get("data-js-errors", "-1"))

    @property
    def error_text(self) -> str:
        match = re.search(r'<pre id="js-errors"[^>]*>(.*?)</pre>', self.dom, re.S)
        return match.group(1) if match else ""


def _body_attributes(dom: str) -> dict[str, str]:
    match = re.search(r"<body([^>]*)>", dom)
    if not match:
        return {}
    return dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(1)))


def _run(args: list[str], profile: Path, timeout: float) -> subprocess.CompletedProcess:
    command = [*_offline_prefix(), chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
    env = {**os.environ, "HOME": str(profile)}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def load(html: Path, profile: Path, screenshot: Path | None = None, timeout: float = 60) -> Page:
    """Open ``html`` offline; dump the DOM (and save a 1400x3000 screenshot if asked)."""
    url = html.resolve().as_uri()
    result = _run(["--dump-dom", url], profile / "dom", timeout)
    if result.returncode != 0:
        raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        shot = _run(
            [f"--screenshot={screenshot}", "--window-size=1400,3000", "--hide-scrollbars", url],
            profile / "shot",
            timeout,
        )
        if shot.returncode != 0 or not screenshot.exists():
            raise RuntimeError(f"chromium screenshot failed: {shot.stderr[-2000:]}")
    return Page(result.stdout, _body_attributes(result.stdout))
