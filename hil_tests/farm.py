"""The bench at scale: the run stage's shards executed in this process, in local worker processes (one device
each: a host build, a QEMU instance, a simulator) or as Ray tasks on a cluster (a device URL may name a Ray
resource, `serial:///dev/ttyACM0?resource=board:nucleo-h743zi2`, so that its shards run on the node with that
board). A shard whose worker process or node died runs again (at most `max_retries` times); the merged run
records it (`retries`). Merging is in window order, so the report does not depend on where shards ran.

Ray is an optional extra (`pip install 'ecgedge[farm]'`), imported only when --ray is given.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ecgedge.contract.package import Package
from ecgedge.errors import ConfigError, EdgeError
from ecgedge.hil_tests.devices import BenchDevice, parse_device_url, qemu_firmware
from ecgedge.hil_tests.shard import RunResult, ShardResult, ShardSpec, merge_shards, plan_shards, run_shard

# schemes whose device the bench can instantiate once per worker; any other (a serial port, a socket, a BLE
# peripheral) is one physical device: one shard at a time, unless Ray places shards on nodes by resource
REPLICABLE = ("host", "qemu", "sim")


@dataclass
class FarmPlan:
    """What the run stage shards: the package, the int8 windows and how to reach the device(s)."""
    package: Package
    model_dir: str
    device_url: str
    q_in: np.ndarray
    ids: list[str]
    groups: np.ndarray
    timeout_s: float = 10.0
    integrity_uv: np.ndarray | None = None
    elf: Path | None = None
    defines: dict | None = None
    on_window: Callable[[int, BenchDevice], None] | None = None
    workers: int = 1
    ray: str | None = None
    shards: int | None = None
    max_retries: int = 2
    reference: str = "tflm"           # the INT8 reference's runtime


def device_resource(url: str) -> tuple[str, str | None]:
    """(the URL without its `resource=` query item, the Ray resource it names or None)."""
    base, sep, query = url.partition("?")
    items = [q for q in query.split("&") if q] if sep else []
    res = [q.split("=", 1)[1] for q in items if q.startswith("resource=")]
    keep = [q for q in items if not q.startswith("resource=")]
    if res and not res[0]:
        raise ConfigError(f"device {url!r}: resource= names no Ray resource (expected e.g. board:nucleo-h743zi2)")
    return (base + ("?" + "&".join(keep) if keep else "")), (res[0] if res else None)


def _firmware(plan: FarmPlan, url: str) -> Path | None:
    """A qemu:// device's firmware, built (or taken from the cache) once, before the shards start."""
    scheme, rest, query = parse_device_url(url)
    if scheme != "qemu" or plan.elf is not None or "elf" in query:
        return plan.elf
    return qemu_firmware(plan.package.path, rest or plan.package.target, query, plan.defines)


def make_specs(plan: FarmPlan, n_shards: int, url: str, ship_package: bool = False) -> list[ShardSpec]:
    scheme = parse_device_url(url)[0]
    elf = _firmware(plan, url)
    files = _package_files(plan.package.path) if ship_package else None
    specs = []
    for k, (a, b) in enumerate(plan_shards(plan.groups, n_shards)):
        specs.append(ShardSpec(
            index=k, start=a, stop=b, n_total=len(plan.ids), device_url=url, display_url=plan.device_url,
            package_dir=str(plan.package.path), model_dir_label=plan.model_dir, q_in=plan.q_in[a:b],
            ids=list(plan.ids[a:b]), timeout_s=plan.timeout_s,
            integrity_uv=plan.integrity_uv if a == 0 else None, profile=(a == 0 and scheme == "qemu"),
            elf=str(elf) if elf is not None else None, defines=None if elf is not None else plan.defines,
            on_window=plan.on_window, package_files=files, reference=plan.reference))
    return specs


def _package_files(root: Path) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


def run_sharded(plan: FarmPlan, n_outputs: int, prog=None) -> RunResult:
    """The run stage: shards planned, executed where the plan says, merged in window order."""
    url, resource = device_resource(plan.device_url)
    replicable = parse_device_url(url)[0] in REPLICABLE
    if plan.workers < 1:
        raise ConfigError(f"--workers {plan.workers}: expected a positive number")
    if plan.ray:
        return _run_ray(plan, url, resource, replicable, n_outputs, prog)
    if resource is not None:
        raise ConfigError(f"device {plan.device_url!r} names a Ray resource ({resource}): add --ray auto|ADDRESS")
    workers = plan.workers if replicable else 1
    specs = make_specs(plan, plan.shards or workers, url)
    if workers == 1:
        results, retries = [_in_process(s, prog) for s in specs], []
        executor = "in-process"
    else:
        results, retries = _processes(specs, workers, plan.max_retries, prog)
        executor = f"local processes ({workers})"
    return _merged(results, retries, n_outputs, workers, executor)


def _merged(results: list[ShardResult], retries: list[dict], n_outputs: int, workers: int, executor: str
            ) -> RunResult:
    run = merge_shards(results, n_outputs)
    attempts = {}
    for r in retries:
        attempts[r["shard"]] = attempts.get(r["shard"], 1) + 1
    run.shards = [{"shard": r.index, "windows": [r.start, r.stop], "answered": r.done, "device": r.device,
                   "node": r.node, "seconds": round(r.seconds, 3), "attempts": attempts.get(r.index, 1)}
                  for r in sorted(results, key=lambda r: r.start)]
    run.retries, run.workers, run.executor = retries, workers, executor
    return run


def _in_process(spec: ShardSpec, prog) -> ShardResult:
    tasks: dict[str, int] = {}
    titles = {"reference": ("INT8 reference (tflite-micro)", len(spec)), "device": (f"device {spec.display_url}",
              len(spec)), "integrity": ("sample integrity (START/SAMPLES/WINDOW_INFER)", 1),
              "profile": ("per-layer instructions (QEMU + plugin)", 1)}

    def progress(kind: str, amount: int) -> None:
        if prog is None:
            return
        if kind not in tasks:
            tasks[kind] = prog.add_task(titles[kind][0], total=titles[kind][1])
        prog.advance(tasks[kind], amount)
    return run_shard(spec, progress)


def _retry(spec: ShardSpec, attempt: int, reason: str, node: str, max_retries: int) -> dict:
    if attempt > max_retries:
        raise EdgeError(f"shard {spec.index} (windows {spec.start}-{spec.stop - 1}) failed {attempt} times, "
                        f"the last: {reason}; giving up (max retries {max_retries})")
    return {"shard": spec.index, "windows": [spec.start, spec.stop], "attempt": attempt, "reason": reason,
            "node": node}


# -------------------------------------------------------------------------------------- local processes
def worker_main(argv: list[str] | None = None) -> None:
    """A local worker process: `python -c "...worker_main()" IN OUT` runs the shard pickled in IN and writes
    ("ok", ShardResult) or ("error", EdgeError) to OUT (atomically: a worker that dies leaves no OUT)."""
    inp, out = (argv or sys.argv[1:])[:2]
    with open(inp, "rb") as f:
        sys.path[:] = pickle.load(f)          # the parent's import path (its on_window hook's module)
        spec = pickle.load(f)
    try:
        result = ("ok", run_shard(spec))
    except Exception as e:  # noqa: BLE001 - every failure goes back to the parent
        result = ("error", e if isinstance(e, EdgeError) else EdgeError(f"shard {spec.index}: {type(e).__name__}: {e}"))
    try:
        data = pickle.dumps(result)
    except Exception as e:  # an unpicklable exception: its text
        data = pickle.dumps(("error", EdgeError(f"shard {spec.index}: {result[1]} ({e})")))
    Path(out + ".part").write_bytes(data)
    os.replace(out + ".part", out)


def _start_worker(spec: ShardSpec, attempt: int, tmp: Path) -> tuple[subprocess.Popen, Path, Path]:
    inp, out, log = (tmp / f"shard{spec.index}-{attempt}.{ext}" for ext in ("in", "out", "log"))
    try:
        inp.write_bytes(pickle.dumps(list(sys.path)) + pickle.dumps(spec))
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        raise ConfigError(f"--workers: a shard cannot travel to a worker process ({e}); an on_window hook "
                          "must be importable (a module-level function or class)") from None
    with open(log, "wb") as lf:
        proc = subprocess.Popen([sys.executable, "-c", "from ecgedge.hil_tests.farm import worker_main; worker_main()",
                                 str(inp), str(out)], stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT)
    return proc, out, log


def _processes(specs: list[ShardSpec], workers: int, max_retries: int, prog) -> tuple[list, list]:
    """Each shard in its own worker process (a fresh interpreter: nothing of this one's state, no fork of its
    threads), `workers` at a time; a process that dies without answering has its shard started again."""
    queue = [(s, 0) for s in specs]
    running: dict = {}
    results, retries = [], []
    task = prog.add_task(f"shards ({len(specs)}) over {workers} worker processes",
                         total=sum(len(s) for s in specs)) if prog is not None else None
    with tempfile.TemporaryDirectory(prefix="ecgedge-farm-") as tmp:
        try:
            while queue or running:
                while queue and len(running) < workers:
                    spec, attempt = queue.pop(0)
                    proc, out, log = _start_worker(spec, attempt, Path(tmp))
                    running[proc] = (spec, attempt, out, log)
                time.sleep(0.05)
                for proc in [p for p in running if p.poll() is not None]:
                    spec, attempt, out, log = running.pop(proc)
                    if not out.is_file():
                        tail = (log.read_text(errors="replace").strip().splitlines() or [""])[-1][:200]
                        retries.append(_retry(spec, attempt + 1, f"worker process died (exit code {proc.returncode})"
                                              + (f": {tail}" if tail else ""), socket.gethostname(), max_retries))
                        queue.append((spec, attempt + 1))
                        continue
                    status, value = pickle.loads(out.read_bytes())
                    if status == "error":
                        raise value
                    results.append(value)
                    if task is not None:
                        prog.advance(task, len(spec))
        finally:
            for proc in running:
                proc.kill()
                proc.wait()
    return results, retries


# ------------------------------------------------------------------------------------------------- Ray
def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray, which is not installed: pip install 'ecgedge[farm]'") from None
    return ray


def connect_ray(address: str) -> None:
    """Connect to the cluster at `address`; `auto`: a running cluster if there is one, else a local one."""
    ray = import_ray()
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, log_to_driver=False)
    except ConnectionError as e:
        if address != "auto":
            raise ConfigError(f"--ray {address}: no Ray cluster answers there ({e})") from None
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)


def _ray_shard(spec: ShardSpec) -> ShardResult:
    """run_shard on a Ray worker; the result names the node."""
    import ray

    res = run_shard(spec)
    res.node = f"{socket.gethostname()} (ray node {ray.get_runtime_context().get_node_id()[:12]})"
    return res


def _run_ray(plan: FarmPlan, url: str, resource: str | None, replicable: bool, n_outputs: int, prog) -> RunResult:
    ray = import_ray()
    connect_ray(plan.ray)
    try:
        avail = ray.cluster_resources()
        if resource is not None and not avail.get(resource):
            raise ConfigError(f"device {plan.device_url!r}: no node of the Ray cluster has resource {resource!r} "
                              f"(the cluster has {sorted(k for k in avail if ':' in k and not k.startswith('node:'))})")
        slots = int(avail.get(resource, 0)) if resource else int(avail.get("CPU", 1))
        if resource is None and not replicable:
            slots = 1
        specs = make_specs(plan, plan.shards or max(1, slots), url, ship_package=True)
        opts = {"num_cpus": 1, "max_retries": 0}  # retries are ours, so that the report can say so
        if resource:
            opts["resources"] = {resource: 1}
        remote = ray.remote(_ray_shard).options(**opts)
        refs = {remote.remote(s): (s, 0) for s in specs}
        results, retries = [], []
        task = prog.add_task(f"shards ({len(specs)}) as Ray tasks", total=len(plan.ids)) if prog is not None else None
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            spec, attempt = refs.pop(ready[0])
            try:
                results.append(ray.get(ready[0]))
            except ray.exceptions.RayTaskError as e:  # our code raised on the worker: the same error here
                raise (e.cause if isinstance(e.cause, Exception) else EdgeError(str(e).splitlines()[0])) from None
            except ray.exceptions.RayError as e:      # the worker process or its node died
                retries.append(_retry(spec, attempt + 1, f"{type(e).__name__}: {str(e).splitlines()[0]}",
                                      "", plan.max_retries))
                refs[remote.remote(spec)] = (spec, attempt + 1)
                continue
            if task is not None:
                prog.advance(task, len(spec))
        return _merged(results, retries, n_outputs, max(1, slots), f"ray {plan.ray}")
    finally:
        ray.shutdown()
