"""The live screen (`edge-run --ui HOST:PORT`): a local page with a scrolling lead-I trace on ECG paper,
heart rate, signal quality, lead-off, connection and recording state, and the latest result.

aiohttp serves ui_assets/index.html (no CDN, no network) and pushes JSON updates over a WebSocket at
about 20 Hz. The trace is decimated to 125 Hz and band-pass filtered for display only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import numpy as np

from ecgedge.errors import ConfigError

log = logging.getLogger("ecgedge.ui")
ASSETS = Path(__file__).resolve().parent / "ui_assets"
DISPLAY_RATE = 125.0
HISTORY_S = 12.0
RAIL_RUN = 10  # consecutive full-scale samples (20 ms at 500 Hz) taken as an electrode off


class LiveUi:
    def __init__(self, host: str, port: int, package):
        self.host, self.port = host, port
        self.package = package
        self.session = None
        self._clients: set = set()
        self._pending: list[float] = []
        self._recent: list[float] = []  # the last HISTORY_S of display samples, sent to a newly opened page
        self._state = {"connected": False, "recording": False, "hr_bpm": None, "sqi": None, "lead_off": False,
                       "result": None, "demo": package.demo, "notice": package.notice, "model": package.model,
                       "gaps": 0, "samples": 0, "signal_s": 0.0, "fs": DISPLAY_RATE, "storage_warning": None}
        self._status_lead_off = False  # what the device's STATUS says
        self._rail_lead_off = False  # what the samples say (an open electrode drives the ADC to the rail)
        self._filter = None
        self._decim = 1
        self._phase = 0
        self._runner = None
        self._task = None

    # -- events from the session -------------------------------------------------------------------
    def on_event(self, kind: str, data) -> None:
        s = self._state
        if kind == "connected":
            info = data["info"]
            s["connected"] = True
            s["device"] = info.name
            if self._filter is None:
                from ecgedge.signals import StreamingFilter

                self._filter = StreamingFilter(info.sample_rate_hz, {"highpass_hz": 0.5, "notch_hz": 50.0,
                                                                     "lowpass_hz": 40.0})
                self._decim = max(1, int(round(info.sample_rate_hz / DISPLAY_RATE)))
                s["fs"] = info.sample_rate_hz / self._decim
                self._uv_per_lsb = info.uv_per_lsb
                self._input_fs = float(info.sample_rate_hz)
        elif kind == "disconnected":
            s["connected"] = False
        elif kind == "samples" and self._filter is not None:
            y = self._filter.process(np.asarray(data["counts"], np.float64) * self._uv_per_lsb)
            start = (-self._phase) % self._decim
            self._pending.extend(np.round(y[start::self._decim], 1).tolist())
            self._phase = (self._phase + y.size) % self._decim
            s["samples"] = int(data["index"] + y.size)
            s["signal_s"] = round(s["samples"] / self._input_fs, 3)
            tail = np.asarray(data["counts"][-RAIL_RUN:])
            # shown at once, not at the next STATUS poll; the device's STATUS stays the authority on lead-off
            self._rail_lead_off = tail.size == RAIL_RUN and bool(np.all(np.abs(tail.astype(np.int32)) >= 32767))
            s["lead_off"] = self._status_lead_off or self._rail_lead_off
            sess = self.session
            s["recording"] = bool(sess and sess.recorder and sess.recorder.active)
        elif kind == "status":
            self._status_lead_off = bool(data.lead_off)
            s["lead_off"] = self._status_lead_off or self._rail_lead_off
            s["battery_pct"] = data.battery_pct
        elif kind == "gap":
            s["gaps"] += 1
        elif kind == "recording_stopped":
            s["recording"] = False
            s["storage_warning"] = f"recording stopped: {data['reason']}"
        elif kind == "result":
            s["sqi"] = data["sqi"]
            if data["sqi"].get("hr_bpm"):
                s["hr_bpm"] = data["sqi"]["hr_bpm"]
            s["result"] = {k: data.get(k) for k in ("window_start_s", "scores", "decisions", "skipped")}

    # -- server ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            from aiohttp import web
        except ImportError as e:
            raise ConfigError(f"--ui needs aiohttp ({e}); pip install aiohttp") from None

        async def index(request):
            return web.FileResponse(ASSETS / "index.html")

        async def state(request):
            return web.json_response(self._state)

        async def ws(request):
            sock = web.WebSocketResponse(heartbeat=10)
            await sock.prepare(request)
            await sock.send_str(json.dumps({"t": time.time(), "trace": self._recent, **self._state}))
            self._clients.add(sock)
            try:
                async for _ in sock:
                    pass
            finally:
                self._clients.discard(sock)
            return sock

        app = web.Application()
        app.add_routes([web.get("/", index), web.get("/state", state), web.get("/ws", ws),
                        web.static("/assets", ASSETS)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as e:
            raise ConfigError(f"--ui {self.host}:{self.port}: cannot listen ({e})") from None
        self._task = asyncio.get_running_loop().create_task(self._push_loop())
        log.warning("live screen on http://%s:%d/", self.host, self.port)

    async def _push_loop(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self._recent.extend(self._pending)
            del self._recent[:-int(HISTORY_S * self._state["fs"])]
            if not self._clients:
                self._pending.clear()
                continue
            msg = json.dumps({"t": time.time(), "trace": self._pending, **self._state})
            self._pending = []
            for c in list(self._clients):
                try:
                    await c.send_str(msg)
                except (ConnectionError, RuntimeError):
                    self._clients.discard(c)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for c in list(self._clients):
            await c.close()
        if self._runner is not None:
            await self._runner.cleanup()
