"""The live session: transport -> frames -> samples (gap detection by index) -> recording + processing ->
inference -> results.jsonl / summary.json / live view. Reconnects with backoff and resumes by sample index.

Sessions are never overwritten or truncated (docs/runtime.md, "Session folder"): with no `out_dir` each session
gets a new folder `sessions/<UTC time>-<model>/`; an `out_dir` that already holds a session is refused unless
`resume=True`, which appends to it after a resume marker. Nothing is created before the source is connected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ecgedge.errors import (ConfigError, DataError, DeviceTimeout, EdgeError, PackageError, ProtocolError,
                            TransportError)
from ecgedge.firmware_bridge import protocol as P
from ecgedge.firmware_bridge.link import DeviceErrorReply, DeviceLink
from ecgedge.edge_runtime.processing import Processor, window_result
from ecgedge.signals import QualityThresholds
from ecgedge.edge_runtime.recorder import Recorder
from ecgedge.edge_runtime.transports import open_transport

log = logging.getLogger("ecgedge.runtime")


from ecgedge.edge_runtime.options import (SESSION_FILES, SESSIONS_ROOT, SessionOptions,  # noqa: F401 - re-exported
                                         new_session_dir, session_files)


def _resume_point(out: Path) -> tuple[int, list[dict]]:
    """(session sample index to continue at, the earlier runs' summaries) of the session in `out`."""
    from ecgedge.edge_runtime.recorder import read_partial

    start, earlier = 0, []
    try:
        summary = json.loads((out / "summary.json").read_text())
        earlier = list(summary.pop("earlier_runs", [])) + [summary]
        start = int(summary.get("end_sample") or 0)
    except (OSError, ValueError):
        pass  # killed before its summary: the recording tells where it ended
    try:
        start = read_partial(out).counts.size  # the sidecar (or the fallback a torn one left) has the last word
    except DataError:
        pass
    return start, earlier


def _trim_torn_line(path: Path) -> None:
    """A results.jsonl whose writer was killed mid-line ends without a newline: cut the torn line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


class Session:
    def __init__(self, package, opts: SessionOptions, on_event=None):
        opts.validate()
        self.package = package
        self.opts = opts
        self._thresholds = opts.thresholds if opts.thresholds is not None else QualityThresholds()
        self.on_event = on_event or (lambda kind, data: None)
        # nothing is created here: the folder and its files appear once the source has connected
        self.out: Path | None = Path(opts.out_dir) if opts.out_dir is not None else None
        self._start_sample, self._earlier_runs = 0, []
        if self.out is not None and opts.resume and session_files(self.out):
            self._start_sample, self._earlier_runs = _resume_point(self.out)
        self._created = False
        self.transport = open_transport(opts.source)
        self.link = DeviceLink(self.transport)
        self.info: P.Info | None = None
        self.recorder: Recorder | None = None
        self.processor: Processor | None = None
        self.host_infer = None
        # sample bookkeeping (session indices)
        self.expected = 0  # next session sample index
        self.samples_received = 0
        self.gaps: list[dict] = []
        self.duplicates = 0
        self.unwrap_base = 0
        self.last_first32: int | None = None
        self.index_offset = 0  # device index -> session index (changes on a device restart)
        self.device_restarts = 0
        self.reconnects = 0
        self.windows = 0
        self.skipped = 0
        self.latencies_ms: list[float] = []
        self.last_status: P.Status | None = None
        self.lead_off_now = False
        self.last_result: dict | None = None
        self.hr_bpm: float | None = None
        self.t_wall0 = time.monotonic()
        self._results_f = None
        self._results_error: str | None = None
        self._limit = None
        self.stopped_because = None
        self.clock_jumps: list[dict] = []
        self.payload_errors = 0
        self._t_ref: tuple[int, int] | None = None  # (session index, device t_us) for the timestamp check
        self._restart_pending = False  # the device counted fewer samples than we hold: it rebooted
        self.restarts: list[dict] = []
        self.status_timeouts = 0  # STATUS polls whose answer never came
        self.status_polls = 0
        self.status_answers = 0
        self._status_asked_at: float | None = None  # when the unanswered GET_STATUS was sent
        self._backlog: list = []  # windows from frames kept when the link died, not yet inferred
        self._package_stat: dict | None = None  # (size, mtime, inode) of each package file when verified
        self._package_checked = 0.0
        self.package_changes: list[dict] = []

    # -- setup ------------------------------------------------------------------------------------
    async def _handshake(self, first: bool) -> None:
        await self.link.open()
        self.link.resync()
        self._status_asked_at = None  # an answer to a poll sent on the old link will not come
        f = await self._request_retry(P.MsgType.HELLO, P.MsgType.INFO)
        info = P.unpack_info(f.payload)
        if info.proto_version != P.PROTO_VERSION:
            raise ProtocolError(f"device speaks protocol {info.proto_version}, expected {P.PROTO_VERSION}")
        if info.has_model and info.model_sha256_hex != self.package.model_sha256:
            raise PackageError(f"device model sha256 {info.model_sha256_hex[:16]}... differs from the package's "
                               f"{self.package.model_sha256[:16]}...: refusing this device")
        if self.opts.infer == "device" and not info.has_model:
            raise ConfigError("--infer device but the device reports no built-in model")
        if first:
            self.info = info
            self._setup_processing(info)
        elif (info.sample_rate_hz, info.uv_per_lsb) != (self.info.sample_rate_hz, self.info.uv_per_lsb):
            raise ProtocolError(f"device changed rate/resolution across a reconnect: {info.sample_rate_hz} Hz "
                                f"{info.uv_per_lsb} µV/LSB, was {self.info.sample_rate_hz} Hz {self.info.uv_per_lsb}")
        if not first:
            # a device that rebooted has counted fewer samples than we received from it: its index restarts
            st = P.unpack_status((await self._request_retry(P.MsgType.GET_STATUS, P.MsgType.STATUS)).payload)
            device_expected = (self.expected - self.index_offset) & 0xFFFFFFFF
            if self.expected > 0 and st.total < device_expected:
                self._restart_pending = True
        await self._request_retry(P.MsgType.START, P.MsgType.ACK)
        self.on_event("connected", {"info": info})

    async def _request_retry(self, msg_type, expect, tries: int = 3):
        """A request whose answer was lost on a noisy link is asked again (HELLO, GET_STATUS and START are
        idempotent) before the link is declared dead."""
        for attempt in range(tries):
            try:
                return await self.link.request(msg_type, b"", expect=expect, timeout=self.opts.request_timeout_s)
            except DeviceTimeout:
                if attempt == tries - 1:
                    raise
                log.warning("no answer to %s; asking again", P.MsgType(msg_type).name)

    def _create_output(self) -> None:
        """The session folder and its files, created once the source is connected: a new folder, or (resume)
        the earlier session's, appended to. Exclusive creation: an existing results.jsonl is never truncated."""
        try:
            if self.out is None:
                self.out = new_session_dir(self.opts.sessions_root, self.package.model)
            else:
                self.out.mkdir(parents=True, exist_ok=True)
            if self.opts.resume:
                _trim_torn_line(self.out / "results.jsonl")
            self._results_f = open(self.out / "results.jsonl", "a" if self.opts.resume else "x")
        except FileExistsError:
            raise ConfigError(f"--out {str(self.out)!r} already holds a session (results.jsonl): refusing to "
                              "overwrite it") from None
        except OSError as e:  # a full or read-only disk before anything was recorded
            raise ConfigError(f"cannot create the session folder {str(self.out or self.opts.sessions_root)!r}: "
                              f"{e.strerror or e}") from None
        self._created = True
        self.on_event("session_folder", {"path": str(self.out), "resumed_at_sample": self._start_sample})

    def _setup_processing(self, info: P.Info) -> None:
        pkg = self.package
        fs = float(info.sample_rate_hz)
        self.fs = fs
        self.expected = self.index_offset = self._start_sample  # a resumed session continues the index
        if self.opts.duration_s is not None:
            self._limit = self._start_sample + int(round(self.opts.duration_s * fs))
        self.processor = Processor(fs, info.uv_per_lsb, pkg.sampling_rate, pkg.window_samples, self.opts.hop,
                                   pkg.preprocessing)
        self.processor.restart(self._start_sample)
        if self.opts.infer == "device" and not self.processor.resampler.identity:
            raise ConfigError(f"--infer device needs the device rate ({fs:g} Hz) to equal the model's "
                              f"({pkg.sampling_rate:g} Hz)")
        if self.opts.infer != "device":
            from ecgedge.edge_runtime.inference import HostInference

            self.host_infer = HostInference(pkg, self.opts.infer)
        self._create_output()
        if self.opts.record:
            try:
                self.recorder = Recorder(self.out, fs, info.uv_per_lsb, self.opts.flush_interval_s,
                                         self.opts.max_record_bytes, min_free_bytes=self.opts.min_free_bytes,
                                         on_stop=lambda why: self.on_event("recording_stopped", {
                                             "reason": why, "samples_kept": self.recorder.samples_flushed}),
                                         append=self.opts.resume)
            except DataError as e:
                raise ConfigError(f"--out {str(self.out)!r}: {e}") from None
            if self.recorder.samples_written != self._start_sample:
                raise ConfigError(f"--out {str(self.out)!r}: its recording ends at sample "
                                  f"{self.recorder.samples_written}, its summary at {self._start_sample}")

    # -- samples --------------------------------------------------------------------------------
    def _session_index(self, first32: int) -> int:
        if self.last_first32 is not None and first32 < self.last_first32 and self.last_first32 - first32 > 2**31:
            self.unwrap_base += 2**32
        self.last_first32 = first32
        return self.unwrap_base + first32 + self.index_offset

    async def _on_samples(self, s: P.Samples) -> list:
        if self._restart_pending:
            self._restart_pending = False
            self.device_restarts += 1
            self.unwrap_base, self.last_first32, self._t_ref = 0, None, None
            self.index_offset = self.expected - s.first_index
            self.restarts.append({"at_sample": int(self.expected), "device_first_index": int(s.first_index)})
            log.warning("device rebooted: its sample index restarts at %d (session sample %d)",
                        s.first_index, self.expected)
        idx = self._session_index(s.first_index)
        counts = s.samples
        if idx + counts.size <= self.expected:
            # resent after a reconnect, or a device restart (indices back to 0)
            if self.expected - idx > 60 * self.fs and s.first_index < 10 * self.fs:
                self.device_restarts += 1
                self.index_offset = self.expected - (self.unwrap_base + s.first_index)
                idx = self.expected
                self._t_ref = None
                log.warning("device restarted: its sample index went back to %d", s.first_index)
            else:
                self.duplicates += counts.size
                return []
        if idx < self.expected:
            cut = self.expected - idx
            self.duplicates += cut
            counts, idx = counts[cut:], self.expected
        if self._limit is not None:
            if self.expected >= self._limit:
                return []
            # samples past the end are cut, but a jump past the end still closes the session with its gap
            counts = counts[: max(0, self._limit - idx)]
        windows = []
        if idx > self.expected:
            gap_len = idx - self.expected
            if self._limit is not None:
                gap_len = min(gap_len, self._limit - self.expected)
            self.gaps.append({"start_sample": self.expected, "length": gap_len})
            log.warning("gap: %d samples missing from %d", gap_len, self.expected)
            if self.recorder:
                self.recorder.gap(self.expected, gap_len)
            self.processor.restart(idx)
            self.on_event("gap", self.gaps[-1])
            if self._limit is not None and idx >= self._limit:
                self.expected = self._limit
                return []
        self._check_clock(idx, s.t_us)
        if counts.size:
            if self.recorder:
                self.recorder.write(idx, counts)
            self.samples_received += counts.size
            self.expected = idx + counts.size
            windows = self.processor.push(idx, counts)
            self.on_event("samples", {"index": idx, "counts": counts})
        return windows

    def _check_clock(self, idx: int, t_us: int) -> None:
        """Device timestamps must advance with the sample index; a jump (beyond 50 ms or 1000 ppm) is reported,
        never taken as lost samples (the index is the authority on gaps)."""
        if self._t_ref is None:
            self._t_ref = (idx, t_us)
            return
        span_us = (idx - self._t_ref[0]) * 1e6 / self.fs
        dev = t_us - (self._t_ref[1] + span_us)
        if abs(dev) > max(50_000, abs(span_us) * 1e-3):
            self.clock_jumps.append({"at_sample": int(idx), "jump_us": int(round(dev))})
            log.warning("device clock jumped by %.3f s at sample %d", dev / 1e6, idx)
            self._t_ref = (idx, t_us)

    async def _infer_device(self, win) -> dict:
        from ecgedge.contract.quantization import interpret_int8

        first = (win.device_start - self.index_offset) & 0xFFFFFFFF
        f = await self.link.request(P.MsgType.WINDOW_INFER, P.pack_window_infer(P.WindowInfer(first)),
                                    expect=P.MsgType.RESULT, timeout=self.opts.request_timeout_s)
        r = P.unpack_result(f.payload)
        out = interpret_int8(r.outputs, self.package.outputs, self.package.task)
        out["device_counter"] = {"kind": r.counter_kind, "value": r.counter, "infer_us": r.infer_us}
        return out

    async def _handle_windows(self, windows, t_arrival: float) -> None:
        for win in windows:
            if self.opts.infer == "device":
                inner = await self._infer_device(win)
                rec = window_result(win, self.package, lambda w: inner, self._thresholds, self.processor.rail_uv,
                                    self.package.sampling_rate)
            else:
                rec = window_result(win, self.package, lambda w: self.host_infer.infer(w.filtered),
                                    self._thresholds, self.processor.rail_uv, self.package.sampling_rate)
            latency = (time.perf_counter() - t_arrival) * 1000
            rec["latency_ms"] = round(latency, 3)
            rec["engine"] = self.opts.infer
            rec["demo"] = self.package.demo
            if self.package.notice:
                rec["notice"] = self.package.notice
            if self.opts.unsigned:
                rec["unsigned"] = True
            self.windows += 1
            if rec["skipped"]:
                self.skipped += 1
            else:
                self.latencies_ms.append(latency)
            if rec["sqi"].get("hr_bpm"):
                self.hr_bpm = rec["sqi"]["hr_bpm"]
            self._write_result(rec)
            self.last_result = rec
            self.on_event("result", rec)

    def _write_result(self, rec: dict) -> None:
        if self._results_f is None:
            return
        try:
            self._results_f.write(json.dumps(rec) + "\n")
            self._results_f.flush()
        except OSError as e:  # disk full: the live session goes on; what was written stays readable
            log.warning("results.jsonl: %s; no more results are written", e)
            self._results_error = str(e)
            try:
                self._results_f.close()
            except OSError:
                pass
            self._results_f = None

    async def _poll_status(self) -> None:
        """Ask for STATUS without waiting for it: the answer is taken by the main loop when it comes
        (_on_status). Waiting here held up every sample behind a STATUS answer lost on a noisy link for the
        whole request timeout. An answer still missing after the request timeout counts as lost."""
        now = time.monotonic()
        if self._status_asked_at is not None:
            if now - self._status_asked_at < self.opts.request_timeout_s:
                return  # the answer may still be on its way
            self.status_timeouts += 1
            log.warning("STATUS answer lost; the stream goes on")
        self._status_asked_at = now
        self.status_polls += 1
        await self.link.send(P.MsgType.GET_STATUS)

    def _on_status(self, payload: bytes) -> None:
        try:
            st = P.unpack_status(payload)
        except ProtocolError as e:  # a CRC-valid frame with a bad payload: count, skip
            self.payload_errors += 1
            log.warning("bad STATUS payload skipped: %s", e)
            return
        self._status_asked_at = None
        self.status_answers += 1
        self.last_status = st
        self.lead_off_now = bool(st.lead_off)
        if st.lead_off and self.expected > 0:
            self.processor.mark_lead_off(self.expected - 1)
        self.on_event("status", st)

    async def _keep_received(self) -> None:
        """The link died: SAMPLES frames that arrived whole before it did are recorded now (a reconnect resyncs
        the link and would drop them; the device's rewind may not reach back that far). Their windows wait for
        the next turn of the loop (device inference needs the link back)."""
        for f in self.link.take_received(P.MsgType.SAMPLES):
            try:
                samples = P.unpack_samples(f.payload)
            except ProtocolError as e:
                self.payload_errors += 1
                log.warning("bad SAMPLES payload skipped: %s", e)
                continue
            self._backlog += await self._on_samples(samples)

    # -- the package on disk ------------------------------------------------------------------------
    def _watch_package(self) -> None:
        """The package was verified and its model loaded into memory before streaming; a file of it changed on
        disk since (an update copied over a running handheld, a failing card) is reported, never loaded: the
        results keep coming from the verified model."""
        self._package_checked = time.monotonic()
        root = Path(self.package.path)
        names = ["manifest.json", *self.package.manifest.get("artifacts", {})]
        now = {}
        for name in names:
            try:
                st = (root / name).stat()
                now[name] = (st.st_size, st.st_mtime_ns, st.st_ino)
            except OSError:
                now[name] = None
        if self._package_stat is not None:
            for name in names:
                if now[name] != self._package_stat.get(name):
                    change = {"file": name, "at_sample": int(self.expected), "removed": now[name] is None,
                              "utc": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
                    self.package_changes.append(change)
                    log.warning("package file %s changed on disk while running; results still come from the "
                                "model verified at start", name)
                    self.on_event("package_changed", change)
        self._package_stat = now

    # -- main loop --------------------------------------------------------------------------------
    def done(self) -> bool:
        return self._limit is not None and self.expected >= self._limit

    async def run(self, stop: asyncio.Event | None = None) -> dict:
        stop = stop or asyncio.Event()
        last_status = 0.0
        backoff = 0.1
        failures = 0
        try:
            await self._handshake(first=True)
            self._watch_package()
            while not self.done() and not stop.is_set():
                try:
                    if self._backlog:  # windows completed by frames kept from a lost link
                        windows, self._backlog = self._backlog, []
                        await self._handle_windows(windows, time.perf_counter())
                    f = await self.link.recv(timeout=self.opts.stall_timeout_s)
                    t_arrival = time.perf_counter()
                    if f.type == P.MsgType.SAMPLES:
                        try:
                            samples = P.unpack_samples(f.payload)
                        except ProtocolError as e:  # a CRC-valid frame with a bad payload: count, skip
                            self.payload_errors += 1
                            log.warning("bad SAMPLES payload skipped: %s", e)
                            continue
                        windows = await self._on_samples(samples)
                        if windows:
                            await self._handle_windows(windows, t_arrival)
                    elif f.type == P.MsgType.STATUS:
                        self._on_status(f.payload)
                    elif f.type == P.MsgType.ERROR:
                        try:
                            log.warning("device error: %s", P.unpack_error(f.payload))
                        except ProtocolError as e:
                            self.payload_errors += 1
                            log.warning("bad ERROR payload skipped: %s", e)
                    now = time.monotonic()
                    if now - last_status >= self.opts.status_interval_s and not self.done():
                        last_status = now
                        await self._poll_status()
                    backoff = 0.1
                    failures = 0
                except (TransportError, ProtocolError) as e:
                    if isinstance(e, DeviceErrorReply):
                        raise
                    # give up only after max_reconnects attempts IN A ROW (it counted every reconnect of the
                    # session: a long session over a flaky link died at its 21st drop, however well it recovered)
                    if failures >= self.opts.max_reconnects:
                        raise TransportError(f"gave up after {failures} reconnects in a row: {e}") from None
                    await self._keep_received()
                    if self.done():
                        break
                    failures += 1
                    self.reconnects += 1
                    log.warning("link problem (%s); reconnecting in %.1f s", e, backoff)
                    self.on_event("disconnected", {"error": str(e)})
                    if self.recorder:
                        self.recorder.flush()
                    await self.transport.close()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    try:
                        await self._handshake(first=False)
                    except (TransportError, ProtocolError) as e2:
                        log.warning("reconnect failed: %s", e2)
                if self.recorder and time.monotonic() - self.recorder._last_flush >= self.opts.flush_interval_s:
                    self.recorder.flush()
                if time.monotonic() - self._package_checked >= self.opts.package_check_s:
                    self._watch_package()
            if self._backlog and self.opts.infer != "device":
                windows, self._backlog = self._backlog, []
                await self._handle_windows(windows, time.perf_counter())
            if self.processor is not None and self.opts.infer != "device":
                # the stream ended: the resampler's last samples complete the last windows
                windows = self.processor.finish()
                if windows:
                    await self._handle_windows(windows, time.perf_counter())
            try:
                await self.link.request(P.MsgType.STOP, b"", expect=P.MsgType.ACK, timeout=2.0)
            except (TransportError, ProtocolError):
                pass
        finally:
            summary = await self.finish()
        return summary

    async def finish(self) -> dict:
        try:
            await self.transport.close()
        except (OSError, EdgeError):
            pass
        if self._results_f is not None:
            try:
                self._results_f.close()
            except OSError as e:
                log.warning("results.jsonl: %s", e)
        rec_info = self.recorder.close() if self.recorder else None
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else None
        fs = getattr(self, "fs", None)
        summary = {
            "out": str(self.out) if self.out is not None else None,
            "source": self.opts.source, "model": self.package.model, "target": self.package.target,
            "model_sha256": self.package.model_sha256, "engine": self.opts.infer,
            "samples_received": int(self.samples_received),
            "samples_lost": int(sum(g["length"] for g in self.gaps)),
            "gaps": self.gaps, "duplicates_dropped": int(self.duplicates),
            "windows": int(self.windows), "windows_skipped_low_quality": int(self.skipped),
            "seconds": round((self.expected - self._start_sample) / fs, 4) if fs else 0.0,
            "start_sample": int(self._start_sample), "end_sample": int(self.expected),
            "wall_seconds": round(time.monotonic() - self.t_wall0, 3),
            "sampling_rate_hz": fs, "uv_per_lsb": self.info.uv_per_lsb if self.info else None,
            "reconnects": self.reconnects, "device_restarts": self.device_restarts,
            "restarts": self.restarts, "clock_jumps": self.clock_jumps, "package_changes": self.package_changes,
            "link": {**self.link.stats, "payload_errors": self.payload_errors,
                     "status_timeouts": self.status_timeouts, "status_polls": self.status_polls,
                     "status_answers": self.status_answers}, "recording": rec_info,
            "latency_ms": ({"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                            "p99": float(np.percentile(lat, 99))} if lat is not None else None),
            "demo": self.package.demo, "notice": self.package.notice,
            "unsigned": bool(self.opts.unsigned), "signed": bool(self.package.signed),
        }
        if self._results_error:
            summary["results_error"] = self._results_error
        if self.opts.resume and self._earlier_runs:
            summary["resumed"] = True
            summary["earlier_runs"] = self._earlier_runs  # nothing of the earlier summaries is lost
        if not self._created:  # never connected: nothing was created, nothing is written
            return summary
        tmp = self.out / "summary.json.tmp"
        try:
            tmp.write_text(json.dumps(summary, indent=1))
            tmp.replace(self.out / "summary.json")
        except OSError as e:  # disk full: the caller still gets the summary
            log.warning("cannot write summary.json: %s", e)
            tmp.unlink(missing_ok=True)
        return summary
