"""edge-run --ui: the live page is served locally and its WebSocket carries trace, HR, lead-off and results."""

import asyncio
import importlib.util
import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from ecgedge.contract.package import load_package
from ecgedge.edge_runtime.session import Session, SessionOptions
from ecgedge.edge_runtime.ui import LiveUi

_spec = importlib.util.spec_from_file_location("runtime_support", Path(__file__).with_name("runtime_support.py"))
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_websocket_carries_trace_hr_lead_off_and_result(tmp_path):
    import aiohttp

    pkg = load_package(support.build_test_package())
    port = free_port()

    async def go():
        ui = LiveUi("127.0.0.1", port, pkg)
        await ui.start()
        sess = Session(pkg, SessionOptions(source="sim://pocket_k?k=6.5&hr=80&speed=20&lead_off=14:30",
                                           out_dir=tmp_path / "s", duration_s=40, status_interval_s=0.1),
                       ui.on_event)
        ui.session = sess
        run = asyncio.create_task(sess.run())
        seen = {"trace": 0, "lead_off": False, "result": None, "hr": None, "demo": False}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/") as r:
                page = await r.text()
            async with http.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
                while not run.done():
                    try:
                        msg = await asyncio.wait_for(ws.receive(), 5)
                    except asyncio.TimeoutError:
                        break
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    m = json.loads(msg.data)
                    seen["trace"] += len(m["trace"])
                    seen["lead_off"] |= m["lead_off"]
                    seen["result"] = m["result"] or seen["result"]
                    seen["hr"] = m["hr_bpm"] or seen["hr"]
                    seen["demo"] |= m["demo"]
        await run
        await ui.stop()
        return page, seen

    page, seen = asyncio.run(asyncio.wait_for(go(), 120))
    assert "Lead I ECG" in page and "<canvas" in page and "/ws" in page
    assert seen["trace"] > 125 * 10 and seen["lead_off"] and seen["demo"]
    assert seen["result"] is not None and abs(seen["hr"] - 80) < 5


def test_edge_run_serves_the_page(tmp_path):
    port = free_port()
    p = subprocess.Popen([support.venv_bin("edge-run"), "--model", str(support.build_test_package()), "--source",
                          "sim://pocket_k?k=6.5", "--ui", f"127.0.0.1:{port}", "--out", str(tmp_path / "s"), "--quiet"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        body = None
        for _ in range(200):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.2)
        state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=5).read())
    finally:
        p.terminate()
        p.wait(30)
    assert body and "ecg" in body.lower()
    assert state["demo"] is True and state["model"] == "pocket_k"
    assert (tmp_path / "s" / "summary.json").exists()  # SIGTERM ends the session cleanly
