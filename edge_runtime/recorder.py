"""Crash-safe session recording.

raw.i16 is append-only, addressed by sample index (2 bytes per sample since the session start); samples
inside a reported gap are written as -32768 (WFDB's "no data" value for 16-bit formats) and listed in
the sidecar. raw.json (the sidecar) is replaced atomically after every fsync of raw.i16, so after a
crash `read_partial` returns every sample up to the last flush and nothing half-written. On close the
recording is finalised as WFDB (record.hea + record.dat).

The sidecar survives a torn write (power loss on a card whose filesystem does not rename atomically): every
flush first rewrites raw.json.prev with the previous sidecar, then raw.json with the new one, each through a
fsynced temporary file and a rename; `read_partial` takes the valid candidate (raw.json, raw.json.prev,
raw.json.tmp) that promises the most samples raw.i16 actually holds, so a power loss at any point of a flush
loses at most that flush.

A recording is never truncated or overwritten: a new Recorder creates raw.i16 exclusively (it refuses a
folder that already holds one), and `append=True` (edge-run --resume) continues an earlier recording at its
last flushed sample, with a resume marker in the sidecar (`resumes`: where, when, after how long).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ecgedge.errors import DataError

log = logging.getLogger("ecgedge.recorder")

RAW = "raw.i16"
SIDECAR = "raw.json"
SIDECAR_PREV = "raw.json.prev"  # the sidecar of the flush before: what a torn raw.json falls back to
GAP_VALUE = -32768


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Recorder:
    def __init__(self, session_dir: str | Path, sampling_rate: float, uv_per_lsb: float,
                 flush_interval_s: float = 1.0, max_bytes: int | None = None, lead: str = "I",
                 min_free_bytes: int | None = None, on_stop=None, append: bool = False):
        self.dir = Path(session_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sampling_rate = float(sampling_rate)
        self.uv_per_lsb = float(uv_per_lsb)
        self.flush_interval_s = float(flush_interval_s)
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes  # stop before the filesystem fills (checked at every flush)
        self.on_stop = on_stop  # called with the reason when recording stops early
        self.lead = lead
        self.samples_written = 0  # samples handed to the file (index of the next sample)
        self.samples_flushed = 0
        self.gaps: list[list[int]] = []
        self.active = True
        self.stopped_reason: str | None = None
        self.flushes = 0
        self._last_flush = time.monotonic()
        self.resumes: list[dict] = []
        self._sidecar_text: str | None = None  # the last sidecar written (raw.json.prev gets it next time)
        if append and any((self.dir / n).exists() for n in (SIDECAR, SIDECAR_PREV, SIDECAR + ".tmp")):
            self._f = self._reopen()
        elif append and (self.dir / RAW).exists() and (self.dir / RAW).stat().st_size == 0:
            self._f = open(self.dir / RAW, "r+b")  # killed between creating raw.i16 and its first sidecar
        else:
            try:  # exclusive: an existing recording is never truncated
                self._f = open(self.dir / RAW, "xb")
            except FileExistsError:
                raise DataError(f"{self.dir / RAW} exists: refusing to overwrite a recording") from None
        try:
            self._write_sidecar(closed=False)
        except OSError as e:  # a full disk from the start: no recording, the session goes on
            self._disk_error(e)

    def _reopen(self):
        """Continue an earlier recording: its flushed samples stay as they are; an unflushed tail (a crash
        after the last flush) is cut, and a resume marker goes into the sidecar."""
        old = read_partial(self.dir)
        if (old.sampling_rate, old.uv_per_lsb) != (self.sampling_rate, self.uv_per_lsb):
            raise DataError(f"{self.dir}: the recording is at {old.sampling_rate:g} Hz, {old.uv_per_lsb:g} uV/LSB; "
                            f"this device gives {self.sampling_rate:g} Hz, {self.uv_per_lsb:g} uV/LSB: not resumable")
        n = old.counts.size
        self.samples_written = self.samples_flushed = n
        self.gaps = [list(g) for g in old.gaps]
        self.lead = old.meta.get("lead", self.lead)
        prev = list(old.meta.get("resumes", []))
        last = old.meta.get("flushed_utc")
        after = None
        if last:
            after = round((datetime.now(timezone.utc) - datetime.fromisoformat(last)).total_seconds(), 3)
        self.resumes = prev + [{"at_sample": int(n), "utc": _utc_now(), "after_s": after}]
        f = open(self.dir / RAW, "r+b")
        f.truncate(n * 2)
        f.seek(n * 2)
        return f

    # -- writing -------------------------------------------------------------------------------
    def _stop(self, why: str) -> None:
        self.active = False
        self.stopped_reason = why
        log.warning("recording stopped: %s (samples up to %d are kept)", why, self.samples_flushed)
        if self.on_stop is not None:
            self.on_stop(why)

    def free_bytes(self) -> int:
        st = os.statvfs(self.dir)
        return st.f_bavail * st.f_frsize

    def _append(self, counts: np.ndarray) -> None:
        if not self.active:
            return
        data = np.asarray(counts, "<i2").tobytes()
        if self.max_bytes is not None and (self.samples_written * 2 + len(data)) > self.max_bytes:
            self.flush()
            self._stop(f"storage limit of {self.max_bytes} bytes reached")
            return
        try:
            self._f.write(data)
        except OSError as e:
            self._disk_error(e)
            return
        self.samples_written += len(data) // 2

    def _disk_error(self, e: OSError) -> None:
        why = "disk full" if e.errno == errno.ENOSPC else f"write failed: {e}"
        # keep the file consistent with the last sidecar: drop the unflushed tail
        try:
            self._f = None
            with open(self.dir / RAW, "r+b") as f:
                f.truncate(self.samples_flushed * 2)
        except OSError:
            pass
        self.samples_written = self.samples_flushed
        self._stop(why)

    def gap(self, start: int, length: int) -> None:
        if start != self.samples_written and self.active:
            raise DataError(f"gap at sample {start} but the recording is at {self.samples_written}")
        self.gaps.append([int(start), int(length)])
        self._append(np.full(length, GAP_VALUE, np.int16))

    def write(self, start: int, counts: np.ndarray) -> None:
        if self.active and start != self.samples_written:
            raise DataError(f"samples at {start} but the recording is at {self.samples_written}")
        self._append(counts)
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        if not self.active or self._f is None:
            return
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            # flushed = promised by a sidecar on disk: counted only once the sidecar is written (a sidecar that
            # hit ENOSPC left the count ahead of every sidecar, and the closing WFDB export failed on 0 samples)
            self._write_sidecar(closed=False, samples=self.samples_written)
            self.samples_flushed = self.samples_written
        except OSError as e:
            self._disk_error(e)
            return
        self.flushes += 1
        self._last_flush = time.monotonic()
        if self.min_free_bytes is not None and self.free_bytes() < self.min_free_bytes:
            self._stop(f"storage low: {self.free_bytes()} bytes free, below the minimum of {self.min_free_bytes}")

    def _write_sidecar(self, closed: bool, samples: int | None = None) -> None:
        n = self.samples_flushed if samples is None else samples
        meta = {"format": "ecgedge-raw/1", "dtype": "int16", "sampling_rate": self.sampling_rate,
                "uv_per_lsb": self.uv_per_lsb, "lead": self.lead, "samples": n,
                "gaps": [g for g in self.gaps if g[0] < n], "gap_value": GAP_VALUE,
                "closed": closed, "stopped_reason": self.stopped_reason, "flushed_utc": _utc_now()}
        if self.resumes:
            meta["resumes"] = self.resumes
        text = json.dumps(meta)
        if self._sidecar_text is not None:
            _atomic_write(self.dir / SIDECAR_PREV, self._sidecar_text)
        _atomic_write(self.dir / SIDECAR, text)
        self._sidecar_text = text

    def close(self, finalise: bool = True) -> dict:
        self.flush()
        if self._f is not None:
            self._f.close()
            self._f = None
        try:
            self._write_sidecar(closed=True)
        except OSError as e:
            log.warning("cannot write the closing sidecar: %s", e)
        out = {"samples": self.samples_flushed, "gaps": self.gaps, "stopped_reason": self.stopped_reason,
               "flushes": self.flushes, "raw": str(self.dir / RAW)}
        if self.resumes:
            out["resumes"] = self.resumes
        if finalise and self.samples_flushed:
            try:
                out["wfdb"] = str(finalise_wfdb(self.dir))
            except Exception as e:  # noqa: BLE001 - a derived file; wfdb raises what it likes (IndexError...)
                log.warning("WFDB export failed: %s: %s (raw.i16 and raw.json are intact)", type(e).__name__, e)
        return out


@dataclass
class PartialRecording:
    counts: np.ndarray  # int16, index = sample since session start
    sampling_rate: float
    uv_per_lsb: float
    gaps: list = field(default_factory=list)
    closed: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def signal_uv(self) -> np.ndarray:
        x = self.counts.astype(np.float64) * self.uv_per_lsb
        for s, n in self.gaps:
            x[s:s + n] = np.nan
        return x

    @property
    def resumes(self) -> list[dict]:
        return list(self.meta.get("resumes", []))

    def segments(self) -> list[tuple[int, np.ndarray]]:
        """Contiguous (start index, counts) runs between gaps and resume markers (a resumed session is a new run
        of the signal: nothing before the marker continues into it)."""
        cuts = sorted([list(g) for g in self.gaps] + [[int(r["at_sample"]), 0] for r in self.resumes])
        out, pos = [], 0
        for s, n in cuts + [[self.counts.size, 0]]:
            if s > pos:
                out.append((pos, self.counts[pos:s]))
            pos = max(pos, s + n)
        return out


def _sidecar_candidates(d: Path) -> list[tuple[str, dict | None, str]]:
    """(file name, parsed sidecar or None, why not) for raw.json and its fallbacks."""
    out = []
    try:
        held = (d / RAW).stat().st_size // 2
    except OSError:
        held = 0
    for name in (SIDECAR, SIDECAR_PREV, SIDECAR + ".tmp", SIDECAR_PREV + ".tmp"):
        try:
            meta = json.loads((d / name).read_text())
            n = int(meta["samples"])
            float(meta["sampling_rate"]), float(meta["uv_per_lsb"])
            if meta.get("format") != "ecgedge-raw/1" or n < 0:
                raise ValueError("not an ecgedge-raw/1 sidecar")
            if n > held:
                out.append((name, None, f"promises {n} samples, {RAW} holds {held}"))
                continue
            out.append((name, meta, ""))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError) as e:  # torn by a power loss, or not ours
            out.append((name, None, f"unreadable ({type(e).__name__})"))
    return out


def read_partial(session_dir: str | Path) -> PartialRecording:
    """Everything recorded up to the last complete flush (after a crash, SIGKILL or a power loss that tore the
    sidecar: the valid sidecar candidate promising the most samples wins)."""
    d = Path(session_dir)
    cands = _sidecar_candidates(d)
    valid = [(n, m) for n, m, _ in cands if m is not None]
    if not valid:
        why = "; ".join(f"{n}: {w}" for n, _, w in cands) or f"no {SIDECAR}"
        raise DataError(f"{d}: not a readable session recording ({why})")
    name, meta = max(valid, key=lambda nm: int(nm[1]["samples"]))
    n = int(meta["samples"])
    counts = np.fromfile(d / RAW, dtype="<i2", count=n)
    if name != SIDECAR:
        meta = {**meta, "recovered_from": name}
    return PartialRecording(counts.astype(np.int16), float(meta["sampling_rate"]), float(meta["uv_per_lsb"]),
                            [list(g) for g in meta.get("gaps", [])], bool(meta.get("closed")), meta)


def finalise_wfdb(session_dir: str | Path, name: str = "record") -> Path:
    """Write record.hea/.dat (format 16, gaps as WFDB no-data) from the raw recording."""
    import wfdb

    rec = read_partial(session_dir)
    if rec.counts.size == 0:
        raise DataError(f"{session_dir}: no flushed sample to export as WFDB")
    d = Path(session_dir)
    gain = 1.0 / rec.uv_per_lsb  # counts per µV
    wfdb.wrsamp(name, fs=rec.sampling_rate, units=["uV"], sig_name=[rec.meta.get("lead", "I")],
                d_signal=rec.counts.reshape(-1, 1).astype(np.int16), fmt=["16"], adc_gain=[gain], baseline=[0],
                write_dir=str(d))
    return d / f"{name}.hea"
