"""The bench matrix: every model on every target on every device, into one summary table (JSON + HTML).

Each model/target pair is exported once (edge-export's own road) into a cache keyed by a hash of what the export
depends on (model, target, options, checkpoint bytes, the exporter's sources and the shipped weights); then each
device benches the package (the run stage sharded like `edge-hil run`). A cell that fails is recorded with its
error and the matrix goes on. A `--models` entry that is a package folder is benched as it is (no export).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ecgedge.errors import ConfigError, EdgeError

SUMMARY_JSON = "matrix.json"
SUMMARY_HTML = "matrix.html"
# what the export depends on besides its options: these packages' files (sources, tables, shipped weights)
EXPORT_SOURCES = ("ecgedge.quantize", "ecgedge.calibration", "ecgedge.models", "ecgedge.contract",
                  "ecgedge.signals", "ecgedge.firmware_bridge")
CELL_KEYS = ("bit_exact_fraction", "max_abs_delta_int8_lsb", "auroc_float", "auroc_device", "agreement",
             "f1_challenge_device", "f1_challenge_float", "latency_ms_p50", "latency_ms_p99", "latency_basis",
             "instructions_per_inference", "flash_bytes", "ram_bytes", "windows", "gates_passed", "gates_failed")


@dataclass
class MatrixConfig:
    models: list[str]                      # zoo model names, or package folders
    targets: list[str]
    devices: list[str]                     # URLs; `{target}` is replaced, a bare `qemu` means qemu://{target}
    out_dir: Path
    data_dir: Path | None = None
    labels_file: Path | None = None
    windows: int | None = None
    checkpoint: Path | None = None
    export_options: dict = field(default_factory=dict)   # ExportOptions fields (calib_windows=32, ...)
    workers: int = 1
    ray: str | None = None
    float_reference: bool = True
    progress: bool = False


def device_for(spec: str, target: str) -> str:
    return f"qemu://{target}" if spec == "qemu" else spec.replace("{target}", target)


def parse_export_options(items: list[str]) -> dict:
    """`key=value` items as ExportOptions fields, typed by the fields' defaults."""
    from ecgedge.quantize.pipeline import ExportOptions

    fields = {f.name: f for f in dataclasses.fields(ExportOptions)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        allowed = sorted(k for k in fields if k not in ("model", "target", "out", "checkpoint", "log", "progress"))
        if not sep or key not in allowed:
            raise ConfigError(f"--export-option {item!r}: expected KEY=VALUE with KEY one of {allowed}")
        default = fields[key].default
        try:
            if isinstance(default, bool):
                out[key] = value.strip().lower() in ("1", "true", "yes", "on")
            elif isinstance(default, (int, float, str)):
                out[key] = type(default)(value)
            else:  # an optional field (None by default): a number if it reads as one
                out[key] = int(value) if value.lstrip("-").isdigit() else float(value) if _is_float(value) else value
        except ValueError:
            raise ConfigError(f"--export-option {item!r}: {value!r} is not a {type(default).__name__}") from None
    return out


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def export_key(model: str, target: str, options: dict, checkpoint: Path | None) -> str:
    """The hash the export cache is keyed by."""
    h = hashlib.sha256(json.dumps({"model": model, "target": target, "options": options}, sort_keys=True).encode())
    if checkpoint is not None:
        h.update(Path(checkpoint).read_bytes())
    for pkg in EXPORT_SOURCES:
        root = Path(str(resources.files(pkg)))
        for p in sorted(root.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
                h.update(p.relative_to(root).as_posix().encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:20]


def export_cache_dir() -> Path:
    return Path(os.environ.get("ECGEDGE_CACHE", Path.home() / ".cache" / "ecgedge")) / "exports"


def cached_export(model: str, target: str, options: dict, checkpoint: Path | None) -> tuple[Path, bool]:
    """(the package folder, whether it came from the cache): exported once per key, written atomically."""
    from ecgedge.quantize.pipeline import ExportOptions, export_package

    dest = export_cache_dir() / f"{model}-{target}-{export_key(model, target, options, checkpoint)}"
    if (dest / "manifest.json").is_file():
        return dest, True
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        export_package(ExportOptions(model=model, target=target, checkpoint=str(checkpoint) if checkpoint else None,
                                     out=str(tmp / "pkg"), progress=False, **options))
        try:
            os.replace(tmp / "pkg", dest)
        except OSError:  # another matrix exported the same key meanwhile: theirs is as good
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest, False


def _packages(cfg: MatrixConfig) -> list[dict]:
    """One entry per model/target: the package folder (exported or cached), or the export's error."""
    out = []
    for model in cfg.models:
        if (Path(model) / "manifest.json").is_file():  # a package folder: its own target
            from ecgedge.contract.package import read_manifest
            target = read_manifest(model)[1].get("target", "")
            if cfg.targets and target not in cfg.targets:
                raise ConfigError(f"--models {model}: a package for {target!r}, not one of --targets {cfg.targets}")
            out.append({"model": Path(model).name, "target": target, "package": str(model), "export": "given"})
            continue
        for target in cfg.targets:
            t0 = time.perf_counter()
            try:
                pkg, hit = cached_export(model, target, cfg.export_options, cfg.checkpoint)
                out.append({"model": model, "target": target, "package": str(pkg), "export": "cached" if hit else
                            f"exported in {time.perf_counter() - t0:.0f} s"})
            except EdgeError as e:
                out.append({"model": model, "target": target, "package": None, "export": "failed", "error": str(e)})
    return out


def _bench_cell(cfg: MatrixConfig, entry: dict, device: str) -> dict:
    from ecgedge.hil_tests.bench import BenchConfig, run_bench

    cell = {"model": entry["model"], "target": entry["target"], "device": device, "export": entry["export"],
            "package": entry["package"]}
    if entry["package"] is None:
        return {**cell, "error": entry["error"]}
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{entry['model']}-{entry['target']}-{device}")
    cell["report_dir"] = str(Path(cfg.out_dir) / "cells" / name)
    try:
        res = run_bench(BenchConfig(model_dir=Path(entry["package"]), device_url=device, windows=cfg.windows,
                                    data_dir=cfg.data_dir, labels_file=cfg.labels_file,
                                    report_dir=Path(cell["report_dir"]), float_reference=cfg.float_reference,
                                    progress=cfg.progress, workers=cfg.workers, ray=cfg.ray))
    except EdgeError as e:
        return {**cell, "error": str(e)}
    rep = res.report
    return {**cell, "model_sha256": rep["model_sha256"], **{k: rep.get(k) for k in CELL_KEYS},
            "error": rep.get("error")}


def run_matrix(cfg: MatrixConfig) -> dict:
    """Export (cached) and bench every cell; writes matrix.json and matrix.html in cfg.out_dir."""
    if not cfg.models or not cfg.devices:
        raise ConfigError("matrix: give --models and --devices (comma-separated)")
    if not cfg.targets and not all((Path(m) / "manifest.json").is_file() for m in cfg.models):
        raise ConfigError("matrix: give --targets for zoo models (comma-separated, see edge-export --list-targets)")
    t0 = time.perf_counter()
    cells = [_bench_cell(cfg, entry, device_for(d, entry["target"]))
             for entry in _packages(cfg) for d in cfg.devices]
    summary = {"models": cfg.models, "targets": cfg.targets, "devices": cfg.devices,
               "data": str(cfg.data_dir) if cfg.data_dir else None, "windows": cfg.windows,
               "cells": cells, "all_passed": all(c.get("gates_passed") is True for c in cells),
               "errors": sum(1 for c in cells if c.get("error")), "seconds": round(time.perf_counter() - t0, 1)}
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=1))
    (out / SUMMARY_HTML).write_text(render_matrix_html(summary, out))
    return summary


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "-"
    return str(v)


def render_matrix_html(summary: dict, out_dir: Path) -> str:
    e = html.escape
    cols = ("model", "target", "device", "export", "windows", "bit_exact_fraction", "auroc_float", "auroc_device",
            "agreement", "f1_challenge_device", "latency_ms_p50", "latency_ms_p99", "latency_basis", "gates_passed",
            "gates_failed", "error")
    rows = []
    for c in summary["cells"]:
        ok = c.get("gates_passed") is True
        link = (f"<a href='{e(os.path.relpath(c['report_dir'], out_dir))}/report.html'>report</a>"
                if c.get("report_dir") else "")
        rows.append(f"<tr style='background:{'#e8f5e9' if ok else '#ffebee'}'>"
                    + "".join(f"<td>{e(_fmt(c.get(k)))}</td>" for k in cols) + f"<td>{link}</td></tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>HIL bench matrix</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}</style></head><body>"
            f"<h1>HIL bench matrix</h1><p>{len(summary['cells'])} cells, {summary['errors']} with errors; "
            f"all gates passed: {summary['all_passed']}; windows: {e(_fmt(summary['windows']))}; "
            f"data: {e(_fmt(summary['data']))}</p><table><tr>" + "".join(f"<th>{e(k)}</th>" for k in cols)
            + "<th></th></tr>" + "\n".join(rows) + "</table></body></html>")
