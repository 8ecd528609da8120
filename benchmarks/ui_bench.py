"""Live-screen cost: CPU share of one core used by `edge-run` at 500 Hz in real time, with the live page open in
a browser versus without the UI, measured in one run.

    python benchmarks/ui_bench.py --model DIR [--seconds 20] [--out ui_bench.json]

Phases (each `--seconds` of process CPU time, after a warm-up), with the simulated Pocket-K in-process
(`sim://pocket_k?k=5`, real time, so its signal generation is in every phase alike):
  no_ui          edge-run without --ui
  ui_idle        edge-run --ui, no page open
  ui_open        edge-run --ui with headless Chromium (Debian's, driven by Playwright) showing the page at 800x480
CPU share = (user + system CPU seconds of the edge-run process) / wall seconds. The browser's own CPU share
(all its processes) is reported too: on the handheld it runs on the same CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of one process (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def descendants(root: int) -> list[int]:
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def browser_cpu_seconds() -> float:
    total = 0.0
    for pid in descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"chromium" not in f.read():
                    continue
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def measure(pid: int, seconds: float, with_browser: bool = False) -> dict:
    c0, b0, t0 = cpu_seconds(pid), browser_cpu_seconds() if with_browser else 0.0, time.monotonic()
    time.sleep(seconds)
    c1, b1, t1 = cpu_seconds(pid), browser_cpu_seconds() if with_browser else 0.0, time.monotonic()
    out = {"wall_s": round(t1 - t0, 3), "cpu_s": round(c1 - c0, 3), "cpu_share": round((c1 - c0) / (t1 - t0), 4)}
    if with_browser:
        out["browser_cpu_share"] = round((b1 - b0) / (t1 - t0), 4)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_edge_run(model: str, out_dir: Path, ui: str | None) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "edge-run"
    cmd = [str(exe), "--model", model, "--source", "sim://pocket_k?k=5", "--out", str(out_dir), "--quiet"]
    if ui:
        cmd += ["--ui", ui]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_streaming(out_dir: Path, proc: subprocess.Popen) -> None:
    """Until the session records (imports done, device connected): startup is not what is measured."""
    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit(f"edge-run exited with {proc.returncode}")
        if (out_dir / "raw.json").exists():
            return
        time.sleep(0.05)
    raise SystemExit(f"edge-run did not start streaming into {out_dir}")


def wait_page(url: str, proc: subprocess.Popen) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"edge-run exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"no page at {url}")


def main(args=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model package folder (edge-export output)")
    p.add_argument("--seconds", type=float, default=20.0, help="measuring time per phase")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds after streaming starts, before measuring")
    p.add_argument("--out", default="ui_bench.json")
    a = p.parse_args(args)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    phases = {}
    with tempfile.TemporaryDirectory() as tmp:
        with console.status("no_ui: edge-run without --ui"):
            proc = start_edge_run(a.model, Path(tmp) / "a", None)
            try:
                wait_streaming(Path(tmp) / "a", proc)
                time.sleep(a.warmup)
                phases["no_ui"] = measure(proc.pid, a.seconds)
            finally:
                proc.terminate()
                proc.wait(30)
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        proc = start_edge_run(a.model, Path(tmp) / "b", f"127.0.0.1:{port}")
        try:
            wait_page(url, proc)
            wait_streaming(Path(tmp) / "b", proc)
            with console.status("ui_idle: --ui, no page open"):
                time.sleep(a.warmup)
                phases["ui_idle"] = measure(proc.pid, a.seconds)
            with console.status("ui_open: headless Chromium showing the page"):
                from playwright.sync_api import sync_playwright

                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                    page = browser.new_page(viewport={"width": 800, "height": 480})
                    page.goto(url)
                    time.sleep(a.warmup)
                    phases["ui_open"] = measure(proc.pid, a.seconds, with_browser=True)
                    # the page kept receiving trace the whole time
                    phases["ui_open"]["page_signal_s"] = float(page.evaluate("document.body.dataset.signalS || 0"))
                    browser.close()
        finally:
            proc.terminate()
            proc.wait(30)
    base = phases["no_ui"]["cpu_share"]
    result = {
        "machine": platform.machine(), "cpus": os.cpu_count(), "sampling_rate_hz": 500, "seconds_per_phase": a.seconds,
        "model": a.model, "phases": phases,
        "ratio_ui_open_vs_no_ui": round(phases["ui_open"]["cpu_share"] / base, 3) if base else None,
        "ratio_ui_idle_vs_no_ui": round(phases["ui_idle"]["cpu_share"] / base, 3) if base else None,
        "note": "edge-run process only (the simulated device runs inside it); the browser's share is separate",
    }
    Path(a.out).write_text(json.dumps(result, indent=1))
    t = Table(title="edge-run CPU share of one core at 500 Hz (real time)")
    for col in ("phase", "edge-run CPU share", "browser CPU share"):
        t.add_column(col)
    for name, ph in phases.items():
        t.add_row(name, f"{ph['cpu_share'] * 100:.1f} %",
                  f"{ph['browser_cpu_share'] * 100:.1f} %" if "browser_cpu_share" in ph else "-")
    console.print(t)
    console.print(f"ratio with the page open / without the UI: {result['ratio_ui_open_vs_no_ui']}  -> {a.out}")


if __name__ == "__main__":
    main()
