"""The bench over the emulated Cortex-M7 (our firmware in QEMU): the CI gate on >= 200 windows of an
exported pocket_k, and proof that it catches broken builds (each fault fails a NAMED gate)."""

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hil_helpers import make_test_package  # noqa: E402

from ecgedge.hil_tests.bench import BenchConfig, run_bench  # noqa: E402
from ecgedge.tools import edge_hil  # noqa: E402

pytestmark = pytest.mark.backend


@pytest.fixture(scope="session")
def m7_test_package(tmp_path_factory):
    """A small pocket_k-shaped INT8 package (1 s window) for the fault-injection runs."""
    return make_test_package(tmp_path_factory.mktemp("hil_qemu") / "hil_testnet-cortex-m7")[0]


def _bench_200(package, report_dir, extra=()):
    with pytest.raises(SystemExit) as e:
        edge_hil.main(["run", "--model", str(package), "--device", "qemu://cortex-m7", "--windows", "200",
                       "--no-progress", "--report", str(report_dir), *extra])
    return e.value.code, json.loads((report_dir / "hil_report.json").read_text())


def test_ci_bench_on_qemu_200_windows_gates_pass(exported_package, tiny_pocket_k_checkpoint, tmp_path):
    """`edge-hil run` as CI runs it, on a complete pocket_k-architecture package (tiny preset): 200 held-out
    windows, every gate of hil_tests/gates.toml passes and the exit code says so."""
    code, rep = _bench_200(exported_package, tmp_path, ["--checkpoint", str(tiny_pocket_k_checkpoint)])
    assert code == 0, (rep["gates_failed"], rep["error"])
    assert rep["gates_passed"] is True and rep["windows"] == 200 and rep["bit_exact_fraction"] == 1.0
    assert rep["instructions_per_inference"] > 0 and rep["latency_basis"].startswith("estimate (emulated)")
    assert rep["latency_ms_p50"] <= rep["latency_ms_p95"] <= rep["latency_ms_p99"]
    assert 0 < rep["flash_bytes"] <= rep["target_flash_bytes"] and 0 < rep["ram_bytes"] <= rep["target_ram_bytes"]
    assert rep["sample_integrity"]["ok"] and rep["sample_integrity"]["window_checked"]
    assert rep["auroc_float"] is not None and rep["auroc_device"] is not None and rep["agreement"] >= 0.98
    assert rep["k_bland_altman_device"]["n"] == 200
    assert list((tmp_path).glob("*.xml")) and (tmp_path / "report.html").exists()


@pytest.fixture(scope="module")
def real_bench(pocket_k_m7_package, tmp_path_factory):
    """The bench on the REAL pocket_k export (shipped demo weights) over QEMU, 200 windows, run once."""
    return _bench_200(pocket_k_m7_package, tmp_path_factory.mktemp("hil-real"))


def test_real_pocket_k_on_qemu_is_bit_exact_and_passes_every_gate(real_bench, pocket_k_m7_package):
    """The acceptance run: the shipped pocket_k through the default export, 200 windows on the emulated
    Cortex-M7: bit-exact with tflite-micro and every gate (decision agreement with the package's float
    model included) passes, with the exit code saying so."""
    code, rep = real_bench
    assert rep["windows"] == 200 and rep["bit_exact_fraction"] == 1.0
    assert code == 0 and rep["gates_passed"] is True and not rep["gates_failed"], rep["gates_failed"]
    assert rep["agreement"] >= 0.98 and rep["agreement_basis"].startswith("package float model")
    macs = json.loads((pocket_k_m7_package / "report.json").read_text())["macs_pruned"]
    assert rep["instructions_per_inference"] / macs <= 1.5   # the firmware issue's bar (optimised DSP path)


FAULTS = [
    ({"ECG_FAULT_REQUANT_SHIFT": 1}, "bit_exact"),
    ({"ECG_FAULT_SWAP_OUTPUTS": 1}, "output_order"),
    ({"ECG_FAULT_INPUT_SCALE": 1}, "input_contract"),
    ({"ECG_FAULT_DROP_SAMPLES": 1}, "sample_integrity"),
    ({"ECG_FAULT_MODEL_HASH": 1}, "model_hash"),
]


@pytest.mark.parametrize("defines,gate", FAULTS, ids=[next(iter(d)) for d, _ in FAULTS])
def test_broken_firmware_fails_a_named_gate(m7_test_package, tmp_path, defines, gate):
    out = run_bench(BenchConfig(model_dir=m7_test_package, device_url="qemu://cortex-m7", windows=6,
                                report_dir=tmp_path, progress=False, timeout_s=20.0, defines=defines))
    rep = out.report
    assert not out.passed and rep["gates_passed"] is False
    assert gate in rep["gates_failed"], (defines, rep["gates_failed"], rep["error"])
    junit = (tmp_path / "hil_junit.xml").read_text()
    assert f'name="{gate}"' in junit and "<failure" in junit


def test_fault_free_firmware_passes_the_same_checks(m7_test_package, tmp_path):
    """The control for the fault tests: the same package and checks, no fault, every gate passes."""
    out = run_bench(BenchConfig(model_dir=m7_test_package, device_url="qemu://cortex-m7", windows=6,
                                report_dir=tmp_path, progress=False, timeout_s=20.0))
    assert out.passed, (out.report["gates_failed"], out.report["error"])
    si = out.report["sample_integrity"]
    assert si["ok"] and si["window_bit_exact"] and si["samples_received"] >= 50


def test_qemu_killed_mid_run_gives_partial_report(m7_test_package, tmp_path):
    import os
    import signal

    def kill_qemu(i, device):
        if i == 3:  # SIGKILL the emulator (QemuDevice runs it under `timeout`: kill the child first)
            proc = device._transport._dev.proc
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            for pid in children:
                os.kill(int(pid), signal.SIGKILL)
            proc.kill()

    t0 = time.monotonic()
    out = run_bench(BenchConfig(model_dir=m7_test_package, device_url="qemu://cortex-m7", windows=8,
                                report_dir=tmp_path, progress=False, timeout_s=5.0, on_window=kill_qemu))
    assert time.monotonic() - t0 < 300
    rep = json.loads((tmp_path / "hil_report.json").read_text())
    assert rep["partial"] and rep["failed_window"] == 3 and rep["windows"] == 3
    assert "window 3 of 8" in rep["error"] and not out.passed
