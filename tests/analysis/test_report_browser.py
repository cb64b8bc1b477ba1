"""The report in a real browser: headless Chromium opens index.html from
file://; every image loads, the page makes no network request and logs no
error.

Chromium is driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: JSON messages ending in NUL on file descriptors
3 and 4), so the test needs nothing beyond the browser and the standard
library. Skipped, saying so, when no Chromium is installed (.ci/run
installs Debian's `chromium`).
"""

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time

import pytest

from analysis import report
from tests.analysis.fake_runs import make_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
BROWSER = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


class DevTools:
    """A Chromium process and its DevTools pipe."""

    def __init__(self, binary, profile_dir):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire():  # the child's fds 3 (commands in) and 4 (replies out)
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        # The child's ends moved above 3 and 4, so neither dup2 clobbers the
        # other's source; their old numbers closed.
        high = [
            fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
            for fd in (to_child_r, from_child_w)
        ]
        os.close(to_child_r)
        os.close(from_child_w)
        to_child_r, from_child_w = high
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile_dir}",
                "about:blank",
            ],
            preexec_fn=wire,
            pass_fds=(3, 4),  # kept open in the child: the dup2s above
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events = []

    def send(self, method, params=None, session=None, timeout=30.0):
        """Sends a command and returns its result (events are kept)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method, timeout=30.0):
        deadline = time.time() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read(max(0.1, deadline - time.time())))

    def _read(self, timeout):
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_child], [], [], timeout)
            if not ready:
                raise TimeoutError("no answer from the browser")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)


def open_page(url, profile_dir, screenshot=None):
    """Loads `url`; returns (images as (complete, naturalWidth), request URLs,
    errors)."""
    browser = DevTools(BROWSER, profile_dir)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        browser.send("Page.navigate", {"url": url}, session=session)
        browser.wait_for("Page.loadEventFired")
        images = browser.send(
            "Runtime.evaluate",
            {
                "expression": "JSON.stringify(Array.from(document.images).map("
                "i => [i.complete, i.naturalWidth]))",
                "returnByValue": True,
            },
            session=session,
        )["result"]["value"]
        if screenshot:
            shot = browser.send(
                "Page.captureScreenshot", {"format": "png"}, session=session
            )
            with open(screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
    finally:
        browser.close()
    requests = [
        e["params"]["request"]["url"]
        for e in browser.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    errors = [
        e["params"]
        for e in browser.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (
            e.get("method") == "Runtime.consoleAPICalled"
            and e["params"]["type"] == "error"
        )
        or (
            e.get("method") == "Log.entryAdded"
            and e["params"]["entry"]["level"] == "error"
        )
    ]
    return json.loads(images), requests, errors


@pytest.mark.skipif(
    BROWSER is None,
    reason="no Chromium found (looked for chromium, chromium-browser, google-chrome, "
    "chrome); .ci/run installs Debian's chromium",
)
def test_the_report_opens_from_disk_with_every_image_and_no_request(tmp_path):
    runs = tmp_path / "runs"
    make_run(
        runs / "diverged",
        decay=3.0,
        state="diverged",
        diverged_at=10,
        temporal=[(0, [1e-3, 1e-2, 1.0]), (10, [1.0, 1.0, 1.0])],
    )
    index = report.write_report([str(runs)], str(tmp_path / "report"))
    url = "file://" + index
    images, requests, errors = open_page(
        url, tmp_path / "profile", screenshot=tmp_path / "screenshot.png"
    )
    assert len(images) == 5  # depth, heatmap, ratio, curves, through time
    assert all(complete and width > 0 for complete, width in images), images
    assert [r for r in requests if r != url and not r.startswith("data:")] == []
    assert errors == []
    assert os.path.getsize(tmp_path / "screenshot.png") > 10_000
