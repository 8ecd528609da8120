"""Fixed windows and their INT8 inference outputs, for the arm64 tier's bit-for-bit comparison with x86.

Host (x86, full venv):  python tests/handheld_golden.py --stage DIR [--package PKG]
  writes DIR/package (the runtime test package, or PKG), DIR/windows.npz (raw µV windows and the INT8
  inputs computed here) and DIR/x86_int8.json (raw INT8 outputs of LiteRT on this host).
arm64 (runtime-only install): tests/test_handheld_arm64.py recomputes with `int8_outputs` and compares.
Only numpy, scipy and ai-edge-litert are used here (plus tensorflow on the host to build the test package).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shutil
from pathlib import Path

import numpy as np

N_WINDOWS = 12
LEAD_IN = 1000  # samples of filter settling dropped before each window


def fixed_raw_windows(window: int, fs: int) -> np.ndarray:
    """Raw lead-I µV (float64) with a spread of potassium, heart rate and noise; deterministic by seed."""
    from ecgedge.signals import EcgStream

    rng = np.random.default_rng(2024)
    out = np.empty((N_WINDOWS, window + LEAD_IN))
    for i in range(N_WINDOWS):
        s = EcgStream(fs, heart_rate=float(rng.uniform(50, 110)), k_mmol=float(rng.uniform(3.0, 8.0)),
                      noise=float(rng.uniform(0.0, 0.3)), seed=100 + i)
        out[i] = s.read(window + LEAD_IN)
    return out


def int8_outputs(package_dir: str | Path, windows_npz: str | Path) -> dict:
    """Raw INT8 outputs of the package's .tflite (LiteRT, one thread) for (a) the stored INT8 inputs and
    (b) the whole chain on this machine: raw µV -> causal filter -> quantise -> model."""
    from ecgedge.contract.quantization import window_int8
    from ecgedge.contract.runners import LiteRtRunner
    from ecgedge.contract.package import load_package
    from ecgedge.signals import StreamingFilter

    pkg = load_package(package_dir)
    engine = LiteRtRunner(pkg.file("model_int8.tflite"))
    data = np.load(windows_npz)
    stored_q = data["q"]
    from_inputs, chain, chain_q = [], [], []
    for k in range(stored_q.shape[0]):
        from_inputs.append(engine.run_one(stored_q[k]).tolist())
        f = StreamingFilter(pkg.sampling_rate, pkg.preprocessing)
        q = window_int8(f.process(data["raw_uv"][k])[LEAD_IN:], pkg.input)
        chain_q.append(q)
        chain.append(engine.run_one(q).tolist())
    chain_q = np.asarray(chain_q)
    return {"machine": platform.machine(), "model_sha256": pkg.model_sha256, "from_stored_inputs": from_inputs,
            "full_chain": chain, "full_chain_inputs_equal_stored": bool(np.array_equal(chain_q, stored_q)),
            "full_chain_inputs_differing_values": int(np.count_nonzero(chain_q != stored_q))}


def stage(out: Path, package: Path | None) -> dict:
    if package is None:
        spec = importlib.util.spec_from_file_location("runtime_support", Path(__file__).with_name("runtime_support.py"))
        support = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(support)
        package = support.build_test_package()
    from ecgedge.contract.quantization import window_int8
    from ecgedge.contract.package import load_package
    from ecgedge.signals import StreamingFilter

    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "package", ignore_errors=True)
    shutil.copytree(package, out / "package", ignore=shutil.ignore_patterns("firmware", ".head"))
    pkg = load_package(out / "package")
    raw = fixed_raw_windows(pkg.window_samples, int(pkg.sampling_rate))
    q = np.stack([window_int8(StreamingFilter(pkg.sampling_rate, pkg.preprocessing).process(r)[LEAD_IN:],
                                  pkg.input) for r in raw])
    np.savez(out / "windows.npz", raw_uv=raw, q=q)
    ref = int8_outputs(out / "package", out / "windows.npz")
    (out / "x86_int8.json").write_text(json.dumps(ref))
    return ref


def main(args=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", required=True, type=Path, help="folder copied into the arm64 userland")
    p.add_argument("--package", type=Path, default=None, help="package to compare (default: the test package)")
    a = p.parse_args(args)
    ref = stage(a.stage, a.package)
    print(f"x86 reference: {len(ref['from_stored_inputs'])} windows, model {ref['model_sha256'][:12]}")


if __name__ == "__main__":
    main()
