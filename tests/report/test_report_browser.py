"""End to end: a generated report opened in headless Chromium from a file URL.

Chromium (Debian's ``chromium`` package; ``.ci/run`` installs it when absent) is started with
``--headless --no-sandbox --disable-gpu``, a fresh user-data directory, and the DevTools
protocol on a pipe (``--remote-debugging-pipe``: file descriptors 3 and 4, JSON messages ending
in NUL), so the test needs no websocket library. It checks that the page logs no console error
and throws no exception, loads nothing from the network, shows the audit table with one row per
audit and a ledger image that decoded; then it saves a full-page screenshot as a test artifact
(``$MEDTRANSPORT_ARTIFACTS`` if set, else pytest's temporary directory).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import medtransport as mt
from medtransport.audit import AuditReport
from medtransport.report import render_report, write_report

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_helpers import DYE, leaky_failure

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (.ci/run installs Debian's 'chromium' package "
           "when it runs as root with apt-get; it could not here)")

TIMEOUT = 60.0


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe."""

    def __init__(self, user_data: Path) -> None:
        import fcntl

        def high(fd: int) -> int:
            # above 4, so that placing the child's ends on 3 and 4 cannot clobber the other
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(fd)
            return moved

        to_chrome_r, self._to_chrome = (high(fd) for fd in os.pipe())
        self._from_chrome, from_chrome_w = (high(fd) for fd in os.pipe())

        def fds() -> None:  # in the child: the protocol's pipes on descriptors 3 and 4
            os.dup2(to_chrome_r, 3)  # dup2 leaves the copies inheritable
            os.dup2(from_chrome_w, 4)

        # close_fds=False: subprocess would otherwise close 3 and 4 after preexec_fn; every
        # other descriptor of ours is close-on-exec (PEP 446).
        self.proc = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
             f"--user-data-dir={user_data}", "--remote-debugging-pipe", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
             "--window-size=1280,1000", "about:blank"],
            preexec_fn=fds, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""

    def _read_message(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: bool = True) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + TIMEOUT
        while True:
            event = self._read_message(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send("Target.attachToTarget", {"targetId": target["targetId"],
                                                       "flatten": True}, session=False)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True})
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        metrics = self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        self.send("Emulation.setDeviceMetricsOverride", {
            "width": 1280, "height": int(size["height"]), "deviceScaleFactor": 1,
            "mobile": False})
        shot = self.send("Page.captureScreenshot", {"format": "png",
                                                    "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and network requests beyond file:/data:."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error",
                                                                               "assert"):
                out.append(f"console error: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(f"log error: {params['entry'].get('text')}")
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if not url.startswith(("file:", "data:", "about:")):
                    out.append(f"network request: {url}")
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def artifacts(tmp_path: Path) -> Path:
    target = os.environ.get("MEDTRANSPORT_ARTIFACTS")
    directory = Path(target) if target else tmp_path / "artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


PAGE_FACTS = """JSON.stringify({
  status: document.getElementById('status').dataset.status,
  auditRows: document.querySelectorAll('table#audits tbody tr').length,
  failedRows: [...document.querySelectorAll('table#audits tbody tr[data-passed=false]')]
      .map(r => r.dataset.audit),
  ledgerImages: [...document.querySelectorAll('img.ledger')]
      .map(i => ({complete: i.complete, width: i.naturalWidth, alt: i.alt.length})),
  headings: document.querySelectorAll('h1, h2').length,
  title: document.title
})"""


def look_at(report: Path, tmp_path: Path, name: str) -> tuple[dict[str, Any], list[str], Path]:
    browser = Browser(tmp_path / f"profile-{name}")
    try:
        browser.open(report.resolve().as_uri())
        facts = json.loads(browser.evaluate(PAGE_FACTS))
        shot = artifacts(tmp_path) / f"report-{name}.png"
        browser.screenshot(shot)
        problems = browser.problems()
    finally:
        browser.close()
    return facts, problems, shot


def check_screenshot(shot: Path) -> None:
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    height = int.from_bytes(data[20:24], "big")
    assert height > 1500, "the whole page, not one screen"


def test_a_passing_report_in_headless_chromium(tmp_path: Path) -> None:
    ds = mt.run(DYE)
    report = AuditReport.from_json(ds.attrs["audit_report"])
    page = write_report(tmp_path / "dye.html", ds)
    facts, problems, shot = look_at(page, tmp_path, "passing")
    assert problems == []
    assert facts["status"] == "passed" and facts["failedRows"] == []
    assert facts["auditRows"] == len(report.results)
    assert facts["ledgerImages"] and all(i["complete"] and i["width"] > 0 and i["alt"] > 0
                                         for i in facts["ledgerImages"])
    assert facts["headings"] >= 6
    check_screenshot(shot)


def test_a_failed_report_in_headless_chromium(tmp_path: Path) -> None:
    exc, model = leaky_failure()
    page = tmp_path / "leak.html"
    page.write_text(render_report(exc.dataset, report=exc.report, model=model,
                                  failure_message=str(exc)), encoding="utf-8")
    facts, problems, shot = look_at(page, tmp_path, "failed")
    assert problems == []
    assert facts["status"] == "failed" and facts["title"].startswith("FAILED")
    assert "mass_balance[solute]" in facts["failedRows"]
    assert facts["auditRows"] == len(exc.report.results)
    assert facts["ledgerImages"] and all(i["width"] > 0 for i in facts["ledgerImages"])
    check_screenshot(shot)


def test_the_browser_check_sees_errors_broken_images_and_network_use(tmp_path: Path) -> None:
    """The checks above can fail: a page with a console error, an exception, a broken image
    and a network fetch is caught on each count."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html lang="en"><head><title>bad</title></head><body>'
                   '<p id="status" data-status="passed">x</p>'
                   '<img class="ledger" src="data:image/png;base64,AAAA" alt="broken">'
                   '<img src="https://example.invalid/x.png" alt="remote">'
                   '<script>console.error("boom"); notDefined();</script></body></html>')
    facts, problems, _ = look_at(bad, tmp_path, "bad")
    assert facts["ledgerImages"] == [{"complete": True, "width": 0, "alt": len("broken")}]
    kinds = {p.split(":")[0] for p in problems}
    assert {"console error", "exception", "network request"} <= kinds, problems
