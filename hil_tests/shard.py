"""The bench's run stage, one shard at a time: a contiguous range of windows through one device.

A shard is what a worker executes, in this process, in a local worker process or as a Ray task
(hil_tests/farm.py): it opens its own device, refuses one that runs another model, computes the golden INT8
outputs of its windows (tflite-micro), sends every window (LOAD_INPUT + INFER) and returns the answers.
The shard holding window 0 also runs the device's sample-integrity phase and (under QEMU) the per-layer
profile, so a report has the same phases whatever the number of shards. merge_shards() joins the shards in
window order into one RunResult, exactly what one shard over every window gives.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ecgedge.contract import quantization as Q
from ecgedge.contract.package import Package, load_package, read_manifest
from ecgedge.contract.runners import open_int8_runner
from ecgedge.errors import EdgeError
from ecgedge.hil_tests.devices import DEVICE_ERRORS, BenchDevice, DeviceInfo, Footprint, IntegrityReport, open_device

# progress(kind, amount): kind is "reference", "device", "integrity" or "profile"
Progress = Callable[[str, int], None] | None


@dataclass
class ShardSpec:
    """Everything a worker needs for its windows: plain data (it travels to processes and Ray nodes)."""
    index: int
    start: int                        # first window (index into the whole eval set)
    stop: int                         # one past the last
    n_total: int                      # windows in the whole run (error messages name "window i of n")
    device_url: str                   # the device this shard opens (a resource= query already removed)
    display_url: str                  # the device as the user named it (reports, errors)
    package_dir: str
    model_dir_label: str              # the package as the user named it (refusal messages)
    q_in: np.ndarray                  # int8 inputs of windows [start, stop)
    ids: list[str]
    timeout_s: float = 10.0
    integrity_uv: np.ndarray | None = None   # windows of samples fed in the integrity phase (shard of window 0)
    profile: bool = False             # per-layer instruction profile (shard of window 0, QEMU)
    elf: str | None = None
    defines: dict | None = None
    on_window: Callable[[int, BenchDevice], None] | None = None
    package_files: dict[str, bytes] | None = None   # the package's bytes, for a node that lacks the folder
    reference: str = "tflm"           # the INT8 reference's runtime (prepare's choice)

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass
class ShardResult:
    index: int
    start: int
    stop: int
    ref_q: np.ndarray                 # golden int8 outputs of every window of the shard
    dev_q: np.ndarray                 # device int8 outputs, rows [0, done) valid
    done: int = 0
    counters: list = field(default_factory=list)
    kinds: list = field(default_factory=list)
    infer_us: list = field(default_factory=list)
    round_trips: list = field(default_factory=list)
    error: str | None = None
    failed_window: int | None = None  # global index
    info: DeviceInfo | None = None
    integrity: IntegrityReport | None = None
    emulated: bool = False
    footprint: Footprint | None = None
    profile: dict | None = None
    int8_reference: str = ""
    notes: list = field(default_factory=list)
    restarts: list = field(default_factory=list)   # device restarts (window, error, restart_s)
    device: str = ""
    node: str = ""
    seconds: float = 0.0


@dataclass
class RunResult:
    """The run stage's answer over the whole eval set (the shards merged in window order)."""
    ref_q: np.ndarray                 # golden outputs of the answered windows [done, n_outputs]
    dev_q: np.ndarray
    done: int
    counters: list
    kinds: list
    infer_us: list
    round_trips: list
    error: str | None
    failed_window: int | None
    infos: list                       # DeviceInfo (or None) of every shard that ran, in window order
    integrity: IntegrityReport | None
    emulated: bool
    footprint: Footprint | None
    profile: dict | None
    int8_reference: str
    notes: list
    restarts: list = field(default_factory=list)  # device restarts in window order
    shards: list = field(default_factory=list)    # per shard: windows, device, node, seconds, attempts
    retries: list = field(default_factory=list)   # shards run again after their worker or node died
    workers: int = 1
    executor: str = "in-process"

    @property
    def info(self) -> DeviceInfo | None:
        return self.infos[0] if self.infos else None


class Refused(Exception):
    """The device runs another model (or none): nothing it answers counts."""


class OutputCount(Exception):
    def __init__(self, n):
        self.n = n


def plan_shards(groups: np.ndarray, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous window ranges, about equal, each cut where the record (group) changes so that a record's
    windows stay in one shard; never an empty shard."""
    n = len(groups)
    if n == 0:
        return [(0, 0)]
    bounds = [0]
    for k in range(1, max(1, min(n_shards, n))):
        cut = max(round(k * n / n_shards), bounds[-1] + 1)
        while 0 < cut < n and groups[cut] == groups[cut - 1]:
            cut += 1
        if cut < n and cut > bounds[-1]:
            bounds.append(cut)
    bounds.append(n)
    return list(zip(bounds[:-1], bounds[1:]))


def shard_package(spec: ShardSpec) -> Package:
    """The package on this node: its folder when the node has the same one, else its bytes written to a
    private folder keyed by their manifest (every artefact's SHA-256 is checked again by load_package)."""
    root = Path(spec.package_dir)
    if spec.package_files is not None:
        want = spec.package_files.get("manifest.json")
        try:
            same = read_manifest(root)[0] == want
        except (EdgeError, OSError):
            same = False
        if not same:
            import hashlib
            key = hashlib.sha256(want or b"").hexdigest()[:16]
            root = Path(tempfile.gettempdir()) / f"ecgedge-farm-pkg-{key}"
            if not (root / "manifest.json").is_file():
                tmp = Path(tempfile.mkdtemp(prefix=f"ecgedge-farm-pkg-{key}-"))
                for name, data in spec.package_files.items():
                    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / name).write_bytes(data)
                try:
                    os.replace(tmp, root)
                except OSError:  # another worker won the race: use theirs
                    pass
    return load_package(root, allow_unsigned=True)


MAX_RESTARTS_PER_WINDOW = 2


def reference_runner(package: Package):
    """(the INT8 reference runner, notes): tflite-micro's interpreter, or LiteRT, named, where tflite-micro is
    not installed (a runtime-only install)."""
    try:  # the reference needs it anyway: import it rather than guess from a module spec
        import tflite_micro  # noqa: F401
    except ImportError:
        return open_int8_runner(package.file("model_int8.tflite"), "litert"), [
            "INT8 reference: LiteRT, because tflite-micro is not installed (runtime-only install); "
            "LiteRT may differ from tflite-micro by 1 LSB on some windows (TF issue 66358)"]
    return open_int8_runner(package.file("model_int8.tflite"), "tflm"), []


def golden(package: Package, q_in: np.ndarray, progress: Progress = None, runtime: str = "tflm"
           ) -> tuple[np.ndarray, str, list[str]]:
    """(golden int8 outputs, the runner's name, notes): the INT8 reference's outputs, by the runtime prepare
    chose (reference_runner: tflite-micro, or LiteRT where it is not installed)."""
    runner = open_int8_runner(package.file("model_int8.tflite"), runtime)
    tick = (lambda: progress("reference", 1)) if progress else None
    return runner.run(q_in, progress=tick), runner.describe, []


def run_shard(spec: ShardSpec, progress: Progress = None) -> ShardResult:
    """One shard: golden outputs, then the device over the shard's windows. A device that fails ends the
    shard with `error` set (the windows it answered are kept); a device that runs another model is refused."""
    t0 = time.perf_counter()
    package = shard_package(spec)
    ref_q, describe, notes = golden(package, spec.q_in, progress, spec.reference)
    res = ShardResult(index=spec.index, start=spec.start, stop=spec.stop, ref_q=ref_q, dev_q=np.zeros_like(ref_q),
                      int8_reference=describe, notes=notes, device=spec.display_url, node=socket.gethostname())
    elf = spec.elf if spec.elf is None or Path(spec.elf).is_file() else None  # a node without the driver's build
    device = open_device(spec.device_url, package, timeout=spec.timeout_s, elf=elf, defines=spec.defines)
    res.emulated, res.footprint = bool(getattr(device, "emulated", False)), device.footprint
    try:
        _drive(spec, package, device, res, progress)
    except Refused as e:
        res.error = str(e)
    except OutputCount as e:
        res.error = f"device returned {e.n} outputs, the manifest lists {ref_q.shape[1]} (window {res.failed_window})"
    except DEVICE_ERRORS as e:
        i = res.failed_window
        res.error = (f"device {spec.display_url} failed at window {i} of {spec.n_total} "
                     f"({spec.ids[i - spec.start] if spec.start <= i < spec.stop else 'setup'}): {e}"
                     if i is not None else f"device {spec.display_url} failed during setup: {e}")
    finally:
        device.close()
    if res.error is None and spec.profile and getattr(device, "elf", None) is not None and len(spec):
        _profile(spec, package, device, res, progress)
    res.seconds = time.perf_counter() - t0
    return res


def _drive(spec: ShardSpec, package: Package, device: BenchDevice, res: ShardResult, progress: Progress) -> None:
    """HELLO and the model check, the integrity phase (shard of window 0), then every window."""
    res.info = info = device.open()
    if not info.has_model:
        raise Refused(f"device {spec.display_url} refused: it reports no valid model (its model blob "
                      "failed the device's SHA-256 check, INFO flag bit1 clear)")
    if info.model_sha256 != package.model_sha256:
        raise Refused(f"device {spec.display_url} refused: it runs model SHA-256 {info.model_sha256}, "
                      f"the package {spec.model_dir_label} was validated with {package.model_sha256}")
    if spec.integrity_uv is not None:
        inp = package.input
        win = int(inp["window_samples"])
        feed = np.clip(np.round(np.concatenate(list(spec.integrity_uv)) / max(info.uv_per_lsb, 1e-9)),
                       -32768, 32767).astype(np.int16)
        res.integrity = device.sample_integrity(
            lambda counts, start, inf, filtered: device_window_input(counts, start, inf, inp, filtered),
            win + win // 5, feed_counts=feed)
        if progress:
            progress("integrity", 1)
    n_out = res.ref_q.shape[1]
    k, hooked = 0, -1
    while k < len(spec):
        i = spec.start + k
        if spec.on_window is not None and hooked < k:
            hooked = k
            spec.on_window(i, device)
        res.failed_window = i
        try:
            r = device.infer(spec.q_in[k])
        except DEVICE_ERRORS as e:
            # a device the host runs (QEMU) that died or hung is restarted and the shard resumes at the window
            # it lost; a window that kills it again and again ends the run (partial report)
            if not device.restartable or sum(x["window"] == i for x in res.restarts) >= MAX_RESTARTS_PER_WINDOW:
                raise
            res.restarts.append(_restart(device, package, spec.display_url, i, spec.ids[k], e))
            res.notes.append(f"device restarted at window {i} ({spec.ids[k]}) after: {res.restarts[-1]['error']}")
            continue
        if r.outputs.shape[0] != n_out:
            raise OutputCount(r.outputs.shape[0])
        res.dev_q[k] = r.outputs
        res.counters.append(r.counter)
        res.kinds.append(r.counter_kind)
        res.infer_us.append(r.infer_us)
        res.round_trips.append(r.round_trip_s)
        k += 1
        res.done = k
        res.failed_window = None
        if progress:
            progress("device", 1)


def _restart(device: BenchDevice, package: Package, url: str, window: int, window_id: str, why: Exception) -> dict:
    """Restart a dead or hung device and check that the new boot runs the same model; the record goes into the
    report (`restarts`)."""
    from datetime import datetime, timezone

    t0 = time.perf_counter()
    info = device.restart()
    if not info.has_model or info.model_sha256 != package.model_sha256:
        raise Refused(f"device {url} refused after its restart at window {window}: it runs model SHA-256 "
                      f"{info.model_sha256} (valid: {info.has_model}), the package has {package.model_sha256}")
    return {"window": int(window), "window_id": window_id, "error": f"{type(why).__name__}: {why}",
            "restart_s": round(time.perf_counter() - t0, 3),
            "at_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _profile(spec: ShardSpec, package: Package, device: BenchDevice, res: ShardResult, progress: Progress) -> None:
    from ecgedge.hil_tests.devices import qemu_layer_profile

    try:
        res.profile = qemu_layer_profile(device.elf, spec.q_in[0], timeout=max(spec.timeout_s, 30.0))
    except (EdgeError, OSError) as e:
        res.notes.append(f"no per-layer profile: {e}")
    if progress:
        progress("profile", 1)


def device_window_input(counts: np.ndarray, start: int, info: DeviceInfo, inp: dict,
                        filtered: bool = False) -> np.ndarray:
    """The INT8 input a device must build from its own samples (ADC counts since START): microvolts =
    counts x uv_per_lsb, (on a device that filters: the contract's causal filters from the first sample),
    model units = uV / scale_uv, quantised with the package's input scale."""
    from ecgedge.signals import StreamingFilter

    uv = np.asarray(counts, np.float64) * float(info.uv_per_lsb)
    if filtered and inp.get("preprocessing"):
        uv = StreamingFilter(float(inp["sampling_rate_hz"]), inp["preprocessing"]).process(uv)
    win = uv[start:start + int(inp["window_samples"])]
    return Q.window_int8(win, inp)


def merge_shards(results: list[ShardResult], n_outputs: int) -> RunResult:
    """The shards in window order, as one run over every window: up to and including the first shard that
    failed (the windows after its failure are not scored, as a single device would not have reached them)."""
    results = sorted(results, key=lambda r: r.start)
    used: list[ShardResult] = []
    for r in results:
        used.append(r)
        if r.error is not None:
            break
    last = used[-1] if used else None
    cat = (lambda rows: np.concatenate(rows) if rows else np.zeros((0, n_outputs), np.int8))
    first = results[0] if results else None
    notes = [n for r in used for n in r.notes]
    return RunResult(
        ref_q=cat([r.ref_q[:r.done] for r in used]), dev_q=cat([r.dev_q[:r.done] for r in used]),
        done=sum(r.done for r in used),
        counters=[v for r in used for v in r.counters], kinds=[v for r in used for v in r.kinds],
        infer_us=[v for r in used for v in r.infer_us], round_trips=[v for r in used for v in r.round_trips],
        error=last.error if last else None, failed_window=last.failed_window if last and last.error else None,
        infos=[r.info for r in used if r.info is not None], integrity=first.integrity if first else None,
        emulated=bool(first and first.emulated), footprint=first.footprint if first else None,
        profile=first.profile if first and last.error is None else None,
        int8_reference=first.int8_reference if first else "",
        notes=notes, restarts=[x for r in used for x in r.restarts])
