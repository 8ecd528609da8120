"""Reliability benchmark: every fault kind injected into real sessions, and every fuzz target; writes JSON.

    python benchmarks/reliability_bench.py [--out reliability.json] [--injections 100] [--kinds link_drop,...]
        [--fuzz-seconds 60] [--fuzz-executions 10000000] [--model DIR] [--skip-fuzz] [--skip-faults]

Per fault kind (hil_tests/reliability.py, 14 kinds, at least --injections each): injected, detected,
samples_lost (beyond the reported gaps, must be 0), crashes (must be 0), failures (wrong reports, must be 0),
recovery p50/p95. Per fuzz target (hil_tests/fuzzing.py): executions, crashes; the C frame parser runs on until
the total reaches --fuzz-executions. A PNG figure is written next to the JSON, and a short table is printed.
Exit status 1 if anything was lost, crashed or misreported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _test_package() -> Path:
    """The small full-INT8 test package of the runtime tests (built once, cached under the temp dir)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("runtime_support", ROOT / "tests" / "runtime_support.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_test_package()


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3], [0.01 * i for i in range(24)])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def figure(result: dict, faults_trace: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(14, 5.5))
    kinds = [k for k in result["faults"] if result["faults"][k]["recovery"].get("p95") is not None]
    p50 = [result["faults"][k]["recovery"]["p50"] for k in kinds]
    p95 = [result["faults"][k]["recovery"]["p95"] for k in kinds]
    bad = ["#c0392b" if (result["faults"][k]["samples_lost"] or result["faults"][k]["crashes"]
                         or result["faults"][k]["failures"]) else "#2e86c1" for k in kinds]
    y = range(len(kinds))
    a1.barh([i + 0.2 for i in y], p95, height=0.4, color=bad, alpha=0.5, label="p95")
    a1.barh([i - 0.2 for i in y], p50, height=0.4, color=bad, label="p50")
    a1.set_yticks(list(y), kinds, fontsize=8)
    a1.set_xscale("symlog", linthresh=0.001)
    a1.set_xlabel("recovery time per injection (s, wall clock; symlog)")
    a1.set_title(f"Recovery, {result['config']['injections']} injections per kind (red: lost, crash or wrong)")
    a1.legend(fontsize=8)
    for k, tr in faults_trace.items():
        if not tr.get("arrivals"):
            continue
        t = [x[0] for x in tr["arrivals"]]
        i = [x[1] for x in tr["arrivals"]]
        line, = a2.step(t, i, where="post", label=k, lw=1)
        for s0, n in tr["gaps"][:200]:
            a2.axhspan(s0, s0 + n, color=line.get_color(), alpha=0.25)
    a2.set_xlabel("wall time since the first samples (s)")
    a2.set_ylabel("session sample index")
    a2.set_title("Samples vs time in the streaming campaigns (shaded: reported gaps)")
    a2.legend(fontsize=7)
    fig.suptitle("ecgedge reliability (virtual device; demo, not for clinical use)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse(args=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="reliability.json")
    p.add_argument("--model", help="model package (default: the small test package of the runtime tests)")
    p.add_argument("--injections", type=int, default=100, help="injections of each fault kind (default 100)")
    p.add_argument("--kinds", help="comma-separated fault kinds (default: all)")
    p.add_argument("--fuzz-seconds", type=float, default=60.0, help="seconds per fuzz target (default 60)")
    p.add_argument("--fuzz-executions", type=int, default=10_000_000,
                   help="total fuzz executions to reach: the C frame parser runs on until then (default 10^7)")
    p.add_argument("--loader-cases", type=int, default=16, help="corrupted files per model loader")
    p.add_argument("--skip-fuzz", action="store_true")
    p.add_argument("--skip-faults", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(args)
    if a.injections < 1 or a.fuzz_seconds <= 0 or a.fuzz_executions < 0:
        p.error("--injections >= 1, --fuzz-seconds > 0, --fuzz-executions >= 0")
    return a


def fuzz_all(a, work: Path, pkg_dir: Path, out: dict, progress=None) -> dict:
    """Every fuzz target into `out` (filled as they finish, so a partial run keeps what it measured)."""
    from ecgedge.device_sim.testmodels import write_test_package
    from ecgedge.hil_tests import fuzzing as F

    out["python_frame_decoder_mutations"] = F.fuzz_python_decoder(seconds=a.fuzz_seconds, seed=a.seed)
    fw_pkg = write_test_package(work / "fwpkg", (ROOT / "tests" / "golden" / "firmware_opmix_int8.tflite").read_bytes())
    exes = {}
    for target in F.C_TARGETS:
        exes[target] = F.build_c_fuzzer(target, fw_pkg, work / target)
        out[target] = F.run_c_fuzzer(exes[target], target, a.fuzz_seconds, work)
        if progress:
            progress(target)
    for target in F.ATHERIS_TARGETS:
        r = F.run_atheris(target, a.fuzz_seconds, work, package=fw_pkg)
        out[f"{target}_atheris" if target == "python_frame_decoder" else target] = r or {
            "executions": 0, "crashes": 0, "engine": "atheris not installed"}
        if progress:
            progress(target)
    arts = {"tflite": pkg_dir / "model_int8.tflite", "manifest": pkg_dir / "manifest.json",
            "onnx": (pkg_dir / "model.onnx") if (pkg_dir / "model.onnx").is_file() else _tiny_onnx(work / "tiny.onnx")}
    ckpt = ROOT / "models" / "weights" / "pocket_k.pt"
    if ckpt.is_file():
        arts["checkpoint"] = ckpt
    out.update(F.fuzz_loaders(arts, cases_per_kind=a.loader_cases, seed=a.seed, work=work))
    # the fast target tops the campaign up to the total asked for, in rounds of at most 10 minutes
    top = {"executions": 0, "crashes": 0, "engine": "libFuzzer+ASan+UBSan", "seconds": 0.0, "rounds": 0}
    while (left := a.fuzz_executions - sum(v["executions"] for v in out.values())) > 0 and not top["crashes"]:
        r = F.run_c_fuzzer(exes["c_frame_parser"], "c_frame_parser", 600, work, runs=left)
        for k in ("executions", "crashes", "seconds"):
            top[k] += r[k]
        top["rounds"] += 1
        top["executions_per_s"] = round(top["executions"] / max(top["seconds"], 1e-9))
        if r["crashes"]:
            top.update(log_tail=r.get("log_tail"), artifacts=r.get("artifacts"))
        out["c_frame_parser_topup"] = top
        if progress:
            progress(None)
    return out


def main(args=None) -> int:
    a = parse(args)
    import logging

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from ecgedge.contract.package import load_package
    from ecgedge.hil_tests.reliability import FAULT_KINDS, run_fault

    logging.disable(logging.WARNING)  # the runtime's warnings about every injected fault would flood the table
    console = Console(width=max(120, Console().width))
    work = Path(tempfile.mkdtemp(prefix="ecg-reliability-"))
    pkg_dir = Path(a.model) if a.model else _test_package()
    package = load_package(pkg_dir)
    kinds = a.kinds.split(",") if a.kinds else ([] if a.skip_faults else FAULT_KINDS)
    result = {"faults": {}, "fuzz": {}, "config": {"injections": a.injections, "seed": a.seed,
              "fuzz_seconds": a.fuzz_seconds, "fuzz_executions": a.fuzz_executions, "model": str(pkg_dir)},
              "host": {"cpus": os.cpu_count(), "load_avg_at_start": list(os.getloadavg())},
              "notice": "demo, not for clinical use"}
    traces = {}
    t0 = time.monotonic()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(_=None):  # after every step: a late failure keeps what was measured
        result["fuzz_executions_total"] = sum(v["executions"] for v in result["fuzz"].values())
        out.write_text(json.dumps(result, indent=1))

    with Progress(console=console) as prog:
        task = prog.add_task("fault injection", total=len(kinds))
        for kind in kinds:
            r = run_fault(kind, package, work, injections=a.injections, seed=a.seed)
            result["faults"][kind] = r.to_dict()
            traces[kind] = r.trace
            save()
            prog.advance(task)
        if not a.skip_fuzz:
            ftask = prog.add_task("fuzzing", total=8)

            def step(_):
                save()
                prog.advance(ftask)
            fuzz_all(a, work, pkg_dir, result["fuzz"], progress=step)
    result["fuzz_executions_total"] = sum(v["executions"] for v in result["fuzz"].values())
    result["wall_s"] = round(time.monotonic() - t0, 1)
    ok = all(v["samples_lost"] == 0 and v["crashes"] == 0 and v["failures"] == 0
             for v in result["faults"].values()) and all(v["crashes"] == 0 for v in result["fuzz"].values())
    result["ok"] = ok
    png = None
    if result["faults"]:
        try:
            png = figure(result, traces, out.with_suffix(".png"))
            result["figure"] = str(png)
        except ImportError:
            result["figure"] = None
    out.write_text(json.dumps(result, indent=1))

    t = Table(title=f"reliability ({out}{', figure ' + str(png) if png else ''})")
    for c in ("fault kind", "injected", "detected", "in reported gaps", "samples_lost", "crashes", "failures",
              "recovery p50 (s)", "p95 (s)"):
        t.add_column(c, justify="right")
    for k, v in result["faults"].items():
        rc = v["recovery"]
        t.add_row(k, str(v["injected"]), str(v["detected"]), str(v["samples_in_reported_gaps"]),
                  str(v["samples_lost"]), str(v["crashes"]), str(v["failures"]),
                  "-" if rc.get("p50") is None else f"{rc['p50']:.4f}", "-" if rc.get("p95") is None else f"{rc['p95']:.4f}")
    console.print(t)
    if result["fuzz"]:
        t2 = Table(title=f"fuzz targets ({result['fuzz_executions_total']:,} executions in total)")
        for c in ("target", "engine", "executions", "exec/s", "crashes"):
            t2.add_column(c, justify="right")
        for k, v in result["fuzz"].items():
            t2.add_row(k, v.get("engine", "worker process"), f"{v['executions']:,}", str(v.get("executions_per_s", "")),
                       str(v["crashes"]))
        console.print(t2)
    console.print("[green]OK: nothing lost beyond reported gaps, no crash, no wrong report[/]" if ok else "[red]FAILURES[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
