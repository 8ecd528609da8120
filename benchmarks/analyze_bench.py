"""edge-analyze timing per architecture family (tests/byom_models.py): each family, built with seeded weights
(no training: the analysis reads ops, shapes, sizes and arenas, which weights do not change), saved with
torch.export.save and analysed as `edge-analyze MODEL.pt2 --contract C.toml --target cortex-m7 --json F`,
one family at a time, as a separate process (imports included: what a user waits for).

    python benchmarks/analyze_bench.py [--out analyze_bench.json] [--work DIR] [--families a,b] [--repeat N]
                                       [--compare OTHER.json | --baseline-root OTHER_CHECKOUT]

Figures: per family, wall and CPU seconds of the process (the best of --repeat runs, and each run), and the
analysis's figures (macs, params, flash, both arenas, n_ops, unsupported ops). --compare OTHER.json (an
earlier run of this benchmark, e.g. before a change) adds its seconds beside these and checks that every
figure the analysis reports (the whole JSON but its `seconds` and the source path) is the same;
--baseline-root OTHER_CHECKOUT does the same with runs of another checkout's code interleaved with these
(the machine's load then weighs on both alike).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from byom_models import CONTRACT, FAMILIES  # noqa: E402  (the families and their contract, one home)

WINDOW = 3000
VOLATILE = ("seconds", "source")     # the analysis's keys that may differ between runs of the same model


def _timed(cmd: list[str], log: Path, root: Path = ROOT) -> tuple[int, float, float]:
    """(exit code, wall seconds, CPU seconds of the child and its children), with `root`'s ecgedge."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)   # (PYTHONPATH: that checkout's ecgedge, installed or not)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return rc, time.perf_counter() - t0, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def family_files(name: str, work: Path, seed: int) -> tuple[Path, Path]:
    """(.pt2, contract) of a family with seeded weights; made once per work folder."""
    pt2, contract = work / f"{name}.pt2", work / f"{name}.toml"
    if not pt2.is_file():
        import torch
        torch.manual_seed(seed)
        model = FAMILIES[name]().eval()
        torch.export.save(torch.export.export(model, (torch.zeros(1, 1, WINDOW),)), pt2)
    contract.write_text(CONTRACT.format(name=name))
    return pt2, contract


def figures(analysis: dict) -> dict:
    """The analysis without the keys that may change between runs of one model."""
    return {k: v for k, v in analysis.items() if k not in VOLATILE}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("analyze_bench.json"))
    p.add_argument("--work", type=Path, default=Path("analyze_bench_work"))
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", type=Path, help="an earlier analyze_bench.json: seconds side by side, figures checked")
    p.add_argument("--baseline-root", type=Path,
                   help="another checkout of ecgedge (e.g. `git worktree add /tmp/base main`): each run of a family is "
                        "followed by one with that checkout's code (same load), its seconds and figures beside these")
    ns = p.parse_args(argv)
    names = ns.families.split(",")
    bad = [n for n in names if n not in FAMILIES]
    if bad or ns.repeat < 1:
        print(f"error: --families {','.join(bad)}: expected some of {','.join(FAMILIES)}" if bad
              else f"error: --repeat {ns.repeat}: expected >= 1", file=sys.stderr)
        return 2
    if ns.compare and ns.baseline_root:
        print("error: --compare and --baseline-root: give one", file=sys.stderr)
        return 2
    if ns.baseline_root and not (ns.baseline_root / "ecgedge" / "__init__.py").is_file():
        print(f"error: --baseline-root {ns.baseline_root}: not an ecgedge checkout (no ecgedge/__init__.py)",
              file=sys.stderr)
        return 2
    before = json.loads(ns.compare.read_text()) if ns.compare else {"families": []} if ns.baseline_root else None
    ns.work.mkdir(parents=True, exist_ok=True)
    exe = str(Path(sys.executable).parent / "edge-analyze")
    rows = []
    for name in names:
        pt2, contract = family_files(name, ns.work, ns.seed)
        runs, base_runs = [], []
        out, base_out = ns.work / f"{name}.analysis.json", ns.work / f"{name}.baseline.analysis.json"
        for i in range(ns.repeat):
            for root, json_out, into in ((ROOT, out, runs), (ns.baseline_root, base_out, base_runs)):
                if root is None:
                    continue
                rc, wall, cpu = _timed([exe, str(pt2), "--contract", str(contract), "--target", "cortex-m7", "--json",
                                        str(json_out)], ns.work / f"{name}.{'baseline.' if root != ROOT else ''}analyze.log",
                                       root)
                into.append({"rc": rc, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)})
        if base_runs:
            base = {"family": name, "wall_s": min(r["wall_s"] for r in base_runs),
                    "cpu_s": min(r["cpu_s"] for r in base_runs), "runs": base_runs}
            if all(r["rc"] == 0 for r in base_runs):
                base["figures"] = figures(json.loads(base_out.read_text()))
            before["families"].append(base)
        row = {"family": name, "rc": max(r["rc"] for r in runs), "runs": runs,
               "wall_s": min(r["wall_s"] for r in runs), "cpu_s": min(r["cpu_s"] for r in runs)}
        if row["rc"] == 0:
            a = json.loads(out.read_text())
            t = a["targets"]["cortex-m7"]
            row.update({"analysis_seconds": a["seconds"], "macs": a["macs"], "params": a["params"],
                        "flash_bytes": a["flash_bytes"], "arena_bytes": a["arena_bytes"],
                        "arena_bytes_tflm": a["arena_bytes_tflm"], "n_ops": a["n_ops"],
                        "unsupported_ops": sorted({u["op"] for u in t["unsupported_ops"]}), "figures": figures(a)})
        if before is not None:
            old = next((r for r in before["families"] if r["family"] == name), None)
            if old is not None:
                row["before_wall_s"], row["before_cpu_s"] = old["wall_s"], old["cpu_s"]
                if "figures" in old and "figures" in row:
                    row["figures_same_as_before"] = old["figures"] == row["figures"]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "figures"}), flush=True)
    result = {"benchmark": "analyze", "command": "edge-analyze MODEL.pt2 --contract C.toml --target cortex-m7 --json F",
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average": os.getloadavg()},
              "repeat": ns.repeat, "compared_with": str(ns.compare or ns.baseline_root or "") or None,
              "families": rows}
    ns.out.write_text(json.dumps(result, indent=2) + "\n")
    cmp = before is not None
    print(f"\n{'family':<10} {'wall s':>7} {'CPU s':>7}" + (f" {'before wall':>11} {'before CPU':>10} {'same':>5}" if cmp else "")
          + f" {'MACs':>10} {'flash B':>8} {'arena ours':>10} {'arena TFLM':>10} engine lacks")
    for r in rows:
        if r["rc"]:
            print(f"{r['family']:<10} edge-analyze failed (exit {r['rc']}; log in {ns.work})")
            continue
        extra = (f" {r.get('before_wall_s', float('nan')):>11.2f} {r.get('before_cpu_s', float('nan')):>10.2f}"
                 f" {str(r.get('figures_same_as_before', '-')):>5}") if cmp else ""
        print(f"{r['family']:<10} {r['wall_s']:>7.2f} {r['cpu_s']:>7.2f}{extra} {r['macs']:>10,} {r['flash_bytes']:>8,}"
              f" {str(r['arena_bytes']):>10} {r['arena_bytes_tflm']:>10,} {','.join(r['unsupported_ops']) or '-'}")
    print(f"written {ns.out}")
    return 1 if any(r["rc"] for r in rows) or any(r.get("figures_same_as_before") is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
