"""Reliability benchmark: every fault kind injected into real sessions, plus the fuzz targets; writes JSON.

    python benchmarks/reliability_bench.py [--out reliability.json] [--seconds 6] [--fuzz-seconds 20]
        [--model DIR] [--kinds link_drop,...] [--skip-fuzz]

Per fault kind: injected, samples_lost (beyond the reported gaps, must be 0), crashes (must be 0), recovery_s.
Per fuzz target: executions, crashes. A PNG figure (recovery per fault kind; samples vs time with gaps) is
written next to the JSON, and a short table is printed. Exit status 1 if anything was lost or crashed.
"""

from __future__ import annotations

import argparse
import json
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

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.5))
    kinds = list(result["faults"])
    rec = [result["faults"][k]["recovery_s"] for k in kinds]
    bars = a1.barh(kinds, rec, color=["#c0392b" if result["faults"][k]["samples_lost"] or
                                      result["faults"][k]["crashes"] else "#2e86c1" for k in kinds])
    a1.bar_label(bars, [f"{r:.3f} s" for r in rec], fontsize=8)
    a1.set_xscale("symlog", linthresh=0.01)
    a1.set_xlabel("recovery time (s, wall clock; symlog)")
    a1.set_title("Recovery per fault kind (red: samples lost or crash)")
    for k, tr in faults_trace.items():
        if not tr.get("arrivals") or k == "disk_full":  # its 40 s session would flatten the others
            continue
        t = [a[0] for a in tr["arrivals"]]
        i = [a[1] for a in tr["arrivals"]]
        line, = a2.step(t, i, where="post", label=k, lw=1)
        for s, n in tr["gaps"]:
            a2.axhspan(s, s + n, color=line.get_color(), alpha=0.25)
        for r in tr.get("restarts", []):
            a2.axhline(r["at_sample"], color=line.get_color(), ls=":", lw=0.8)
    a2.set_xlabel("wall time since the first samples (s)")
    a2.set_ylabel("session sample index")
    a2.set_title("Samples vs time (shaded: reported gaps, dotted: device reboot)")
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
    p.add_argument("--seconds", type=float, default=6.0, help="seconds of simulated signal per fault run")
    p.add_argument("--speed", type=float, default=20.0, help="simulator speed (x real time)")
    p.add_argument("--kinds", help="comma-separated fault kinds (default: all)")
    p.add_argument("--fuzz-seconds", type=float, default=20.0, help="seconds per libFuzzer / atheris target")
    p.add_argument("--loader-cases", type=int, default=16, help="corrupted files per model loader")
    p.add_argument("--skip-fuzz", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(args)


def main(args=None) -> int:
    a = parse(args)
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from ecgedge.contract.package import load_package
    from ecgedge.hil_tests import fuzzing as F
    from ecgedge.hil_tests.reliability import FAULT_KINDS, run_fault

    console = Console(width=max(120, Console().width))
    work = Path(tempfile.mkdtemp(prefix="ecg-reliability-"))
    pkg_dir = Path(a.model) if a.model else _test_package()
    package = load_package(pkg_dir)
    kinds = a.kinds.split(",") if a.kinds else FAULT_KINDS
    result = {"faults": {}, "fuzz": {}, "config": {"seconds": a.seconds, "speed": a.speed, "seed": a.seed,
              "fuzz_seconds": a.fuzz_seconds, "model": str(pkg_dir)}, "notice": "demo, not for clinical use"}
    traces = {}
    with Progress(console=console) as prog:
        task = prog.add_task("fault injection", total=len(kinds))
        for kind in kinds:
            r = run_fault(kind, package, work, seconds=a.seconds, speed=a.speed, seed=a.seed)
            result["faults"][kind] = r.to_dict()
            traces[kind] = r.trace
            prog.advance(task)
        if not a.skip_fuzz:
            ftask = prog.add_task("fuzzing", total=5)
            result["fuzz"]["python_frame_decoder"] = F.fuzz_python_decoder(seconds=a.fuzz_seconds, seed=a.seed)
            prog.advance(ftask)
            ath = F.fuzz_python_decoder_atheris(a.fuzz_seconds)
            result["fuzz"]["python_frame_decoder_atheris"] = ath or {"executions": 0, "crashes": 0,
                                                                      "engine": "atheris not installed"}
            prog.advance(ftask)
            from ecgedge.device_sim.testmodels import write_test_package

            fw_pkg = write_test_package(work / "fwpkg", (ROOT / "tests" / "golden" / "firmware_opmix_int8.tflite")
                                        .read_bytes())
            for target in F.C_TARGETS:
                exe = F.build_c_fuzzer(target, fw_pkg, work / target)
                result["fuzz"][target] = F.run_c_fuzzer(exe, target, a.fuzz_seconds, work)
                prog.advance(ftask)
            arts = {"tflite": pkg_dir / "model_int8.tflite", "manifest": pkg_dir / "manifest.json",
                    "onnx": (pkg_dir / "model.onnx") if (pkg_dir / "model.onnx").is_file()
                    else _tiny_onnx(work / "tiny.onnx")}
            ckpt = ROOT / "models" / "weights" / "pocket_k.pt"
            if ckpt.is_file():
                arts["checkpoint"] = ckpt
            result["fuzz"].update(F.fuzz_loaders(arts, cases_per_kind=a.loader_cases, seed=a.seed, work=work))
            prog.advance(ftask)
    ok = all(v["samples_lost"] == 0 and v["crashes"] == 0 for v in result["faults"].values()) and \
        all(v["crashes"] == 0 for v in result["fuzz"].values())
    result["ok"] = ok
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = figure(result, traces, out.with_suffix(".png"))
    result["figure"] = str(png)
    out.write_text(json.dumps(result, indent=1))

    t = Table(title=f"reliability ({out}, figure {png})")
    for c in ("fault kind", "injected", "detected", "in reported gaps", "samples_lost", "crashes", "recovery_s"):
        t.add_column(c, justify="right")
    for k, v in result["faults"].items():
        t.add_row(k, str(v["injected"]), str(v["detected"]), str(v["samples_in_reported_gaps"]),
                  str(v["samples_lost"]), str(v["crashes"]), f"{v['recovery_s']:.3f}")
    console.print(t)
    if result["fuzz"]:
        t2 = Table(title="fuzz targets")
        for c in ("target", "engine", "executions", "crashes"):
            t2.add_column(c, justify="right")
        for k, v in result["fuzz"].items():
            t2.add_row(k, v.get("engine", "subprocess loader"), str(v["executions"]), str(v["crashes"]))
        console.print(t2)
    console.print("[green]OK: no sample lost beyond reported gaps, no crash[/]" if ok else "[red]FAILURES[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
