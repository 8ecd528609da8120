"""The live screen in a real browser: headless Chromium (Debian's) driven by Playwright, at 800x480, against
`edge-run --source sim://... --ui` running in real time as its own process.

Screenshots go to test-artifacts/handheld/ (or $ECGEDGE_TEST_ARTIFACTS).
"""

import importlib.util
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("runtime_support", Path(__file__).with_name("runtime_support.py"))
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SIM_HR = 72.0
LEAD_OFF_AT = 16.0  # signal seconds (after the first result, at 10 s)
ARTIFACTS = Path(os.environ.get("ECGEDGE_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.backend
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_live_screen_in_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    out = ARTIFACTS / "handheld"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    port = free_port()
    source = f"sim://pocket_k?k=6.5&hr={SIM_HR:g}&lead_off={LEAD_OFF_AT:g}:60"
    package = support.build_test_package()
    proc = None
    try:
        with sync_api.sync_playwright() as p:
            # the browser first (slow to start on a busy machine), then the device's clock starts
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 800, "height": 480})
            proc = subprocess.Popen([support.venv_bin("edge-run"), "--model", str(package), "--source", source,
                                     "--ui", f"127.0.0.1:{port}", "--out", str(tmp_path / "s"), "--quiet"],
                                    stdout=subprocess.DEVNULL, stderr=open(tmp_path / "edge-run.log", "w"))
            for _ in range(600):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                    break
                except OSError:
                    assert proc.poll() is None, (tmp_path / "edge-run.log").read_text()
                    time.sleep(0.05)
            page.goto(f"http://127.0.0.1:{port}/")
            t_page = time.monotonic()
            signal_s = lambda: float(page.evaluate("document.body.dataset.signalS || 0"))  # noqa: E731
            page.wait_for_function("Number(document.body.dataset.signalS || 0) > 2", timeout=10_000)

            # the trace moves
            trace = page.locator("#trace")
            first = trace.screenshot(path=str(out / "trace_1.png"))
            page.wait_for_timeout(1000)
            second = trace.screenshot(path=str(out / "trace_2.png"))
            assert first != second, "the trace area did not change in one second"

            # the demo banner, connection and recording state
            assert "not for clinical use" in page.inner_text("#banner") and page.is_visible("#banner")
            assert page.inner_text("#conn") == "connected", page.inner_text("#conn")
            assert page.inner_text("#rec") == "● recording", page.inner_text("#rec")

            # a model result (with its scores) within 15 s of the page opening, and the heart rate
            remaining_ms = max(1, int((15 - (time.monotonic() - t_page)) * 1000))
            page.wait_for_function("document.getElementById('result').textContent.startsWith('latest result @')",
                                   timeout=remaining_ms)
            assert "p_k_gt_5_5" in page.inner_text("#result"), page.inner_text("#result")
            hr = float(page.inner_text("#hr"))
            assert abs(hr - SIM_HR) <= 3, f"heart rate shown {hr}, simulated {SIM_HR}"
            page.screenshot(path=str(out / "screen_result.png"))

            # lead-off: no warning before it, the warning within 1 s after it (in signal and in wall time)
            assert signal_s() < LEAD_OFF_AT and not page.is_visible("#leadoff"), signal_s()
            page.wait_for_function(f"Number(document.body.dataset.signalS || 0) >= {LEAD_OFF_AT}", timeout=10_000,
                                   polling=20)
            t_onset = time.monotonic()
            page.wait_for_selector("#leadoff", state="visible", timeout=5_000)
            wall_delay = time.monotonic() - t_onset
            shown_at = signal_s()
            page.screenshot(path=str(out / "screen_lead_off.png"))
            browser.close()
        assert wall_delay < 1.0 and shown_at - LEAD_OFF_AT < 1.0, (wall_delay, shown_at)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    assert (tmp_path / "s" / "summary.json").exists()
