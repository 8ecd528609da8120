"""A session's options and the rules for its folder, checked before any work: light on purpose (no numpy, scipy
or transports), so edge-run refuses a bad number or an occupied --out in a fraction of a second.

Sessions are never overwritten or truncated (docs/runtime.md, "Session folder"): with no `out_dir` each session
gets a new folder `sessions/<UTC time>-<model>/`; an `out_dir` that already holds a session is refused unless
`resume=True`, which appends to it after a resume marker.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ecgedge.errors import ConfigError

if TYPE_CHECKING:
    from ecgedge.signals import QualityThresholds


SESSION_FILES = ("results.jsonl", "summary.json", "raw.i16", "raw.json", "raw.json.prev", "record.hea", "record.dat")
SESSIONS_ROOT = Path("sessions")


def session_files(folder: str | Path) -> list[str]:
    """The session files a folder already holds (empty for a missing or fresh folder)."""
    d = Path(folder)
    return [n for n in SESSION_FILES if (d / n).exists()] if d.is_dir() else []


def new_session_dir(root: str | Path, model: str) -> Path:
    """Create (exclusively) and return a new folder root/<UTC time>-<model>[-k] for one session."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stem = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + (re.sub(r"[^A-Za-z0-9_.-]", "_", model) or "model")
    for k in range(1, 1000):
        d = root / (stem if k == 1 else f"{stem}-{k}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise ConfigError(f"cannot make a new session folder under {root}: {stem}-1..999 all exist")


def _positive(value, flag: str, what: str = "a number > 0", whole: bool = False, zero_ok: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
        value >= 0 if zero_ok else value > 0) and (not whole or float(value).is_integer())
    if not ok:
        raise ConfigError(f"{flag} {value!r}: expected {what}")


@dataclass
class SessionOptions:
    source: str
    out_dir: Path | None = None  # None: a new folder under sessions_root, named when the source connects
    sessions_root: Path = SESSIONS_ROOT
    resume: bool = False  # append to the session already in out_dir (after a resume marker)
    duration_s: float | None = None  # seconds of signal
    hop: int | None = None
    infer: str = "litert"  # litert | onnxruntime | device
    flush_interval_s: float = 1.0
    max_record_bytes: int | None = None
    min_free_bytes: int | None = None  # stop recording when the output filesystem has less free
    record: bool = True
    stall_timeout_s: float = 3.0
    max_reconnects: int = 20  # reconnects IN A ROW without a frame in between; a long session may drop often
    status_interval_s: float = 0.5
    thresholds: QualityThresholds | None = None  # None: the signals' defaults
    unsigned: bool = False
    request_timeout_s: float = 5.0
    package_check_s: float = 1.0  # how often the package files are looked at (a stat each) while running

    def validate(self) -> None:
        """Every number and the output folder, before any work (the error names edge-run's flag)."""
        if self.duration_s is not None:
            _positive(self.duration_s, "--duration", "seconds of signal > 0")
        if self.hop is not None:
            _positive(self.hop, "--hop", "a whole number of model samples >= 1", whole=True)
        _positive(self.flush_interval_s, "--flush-interval", "seconds >= 0 (0: after every write)", zero_ok=True)
        _positive(self.stall_timeout_s, "--stall-timeout", "seconds > 0")
        _positive(self.request_timeout_s, "request timeout", "seconds > 0")
        _positive(self.status_interval_s, "status interval", "seconds >= 0", zero_ok=True)
        _positive(self.max_reconnects, "max reconnects", "a whole number >= 0", whole=True, zero_ok=True)
        if self.max_record_bytes is not None and not (self.max_record_bytes > 0):
            raise ConfigError(f"--max-record-mb {self.max_record_bytes / 1e6:g}: expected a size in MB > 0")
        if self.min_free_bytes is not None and not (self.min_free_bytes >= 0):
            raise ConfigError(f"--min-free-mb {self.min_free_bytes / 1e6:g}: expected a size in MB >= 0")
        if self.infer not in ("litert", "onnxruntime", "device"):
            raise ConfigError(f"--infer {self.infer!r}: expected litert, onnxruntime or device")
        for flag, d in (("--out", self.out_dir), ("--sessions", None if self.out_dir is not None else self.sessions_root)):
            if d is not None and Path(d).exists() and not Path(d).is_dir():
                raise ConfigError(f"{flag} {str(d)!r}: exists and is not a folder")
        if self.out_dir is not None and not self.resume:
            held = session_files(self.out_dir)
            if held:
                raise ConfigError(f"--out {str(self.out_dir)!r} already holds a session ({', '.join(held)}): "
                                  "choose a new folder (or none: sessions/<time>-<model>/), or --resume to append to it")
