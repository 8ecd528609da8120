"""The bench over the in-process virtual device (sim://): wire protocol, sample integrity, a device that
goes silent mid-run, a device running another model."""

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hil_helpers import build_keras, convert, make_test_package, representative, write_package  # noqa: E402

from ecgedge.hil_tests.bench import BenchConfig, run_bench  # noqa: E402
from ecgedge.tools import edge_hil  # noqa: E402

SIM = "sim://pocket_k?fs=500"
# The simulator runs our C engine's host build with the firmware's input quantisation: bit-exact with
# tflite-micro, like the firmware (these tests' own gates add what they are about).
SIM_GATES = """
[bit_exact]
metric = "bit_exact_fraction"
op = "=="
threshold = 1.0
required = true
[sample_integrity]
metric = "sample_integrity_ok"
op = "=="
threshold = true
required = true
[model_hash]
metric = "model_hash_match"
op = "=="
threshold = true
required = true
[input_contract]
metric = "input_contract_match"
op = "=="
threshold = true
[windows_completed]
metric = "windows_completed_fraction"
op = ">="
threshold = 1.0
"""


@pytest.fixture(scope="session")
def sim_package(tmp_path_factory):
    return make_test_package(tmp_path_factory.mktemp("hil_sim") / "hil_testnet-cortex-m7")[0]


@pytest.fixture
def sim_gates(tmp_path):
    p = tmp_path / "sim_gates.toml"
    p.write_text(SIM_GATES)
    return p


def test_sim_bench_streams_every_sample_and_checks_the_device_window(sim_package, sim_gates, tmp_path):
    out = run_bench(BenchConfig(model_dir=sim_package, device_url=SIM, windows=12, report_dir=tmp_path,
                                gates_file=sim_gates, progress=False, timeout_s=5.0))
    rep = out.report
    assert out.passed, rep["gates"]
    si = rep["sample_integrity"]
    assert si["samples_received"] >= 500 and si["gaps"] == [] and si["dropped_reported"] == 0
    assert si["window_checked"] and si["window_bit_exact"] and si["window_max_abs_lsb"] == 0
    assert rep["windows"] == 12 and rep["model_hash_match"] and rep["input_contract_match"]
    assert rep["round_trip_ms_p50"] is not None and rep["latency_ms_p99"] is not None
    assert rep["latency_basis"].startswith("estimate (emulated)")


def test_sim_that_drops_samples_fails_the_sample_integrity_gate(sim_package, sim_gates, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        edge_hil.main(["run", "--model", str(sim_package), "--device", SIM + "&drop=0.3&seed=3", "--windows", "3",
                       "--gates", str(sim_gates), "--no-progress", "--report", str(tmp_path)])
    assert e.value.code == 1
    assert "sample_integrity" in capsys.readouterr().err
    rep = json.loads((tmp_path / "hil_report.json").read_text())
    assert rep["gates_failed"] == ["sample_integrity"] and rep["sample_integrity"]["gaps"]
    assert rep["sample_integrity"]["dropped_reported"] > 0


def test_device_that_stops_answering_gives_a_partial_report_naming_the_window(sim_package, sim_gates, tmp_path):
    def go_silent(i, device):
        if i == 5:
            device._transport.device.detach()  # the virtual device stops sending anything

    t0 = time.monotonic()
    out = run_bench(BenchConfig(model_dir=sim_package, device_url=SIM, windows=10, report_dir=tmp_path,
                                gates_file=sim_gates, progress=False, timeout_s=1.0, on_window=go_silent))
    assert time.monotonic() - t0 < 120  # timeouts, not a hang
    rep = json.loads((tmp_path / "hil_report.json").read_text())
    assert rep["partial"] is True and rep["gates_passed"] is False
    assert rep["failed_window"] == 5 and rep["windows"] == 5 and rep["failed_window_id"]
    assert "window 5 of 10" in rep["error"] and "no " in rep["error"]
    assert "windows_completed" in rep["gates_failed"]
    assert "Run ended early" in (tmp_path / "report.html").read_text()
    assert (tmp_path / "hil_junit.xml").read_text().count("<error") == 1
    assert not out.passed


def test_device_running_another_model_is_refused(sim_package, tmp_path, capsys):
    other = tmp_path / "other"
    model = build_keras(seed=7)
    write_package(other, convert(model, representative(16, seed=5)))
    with pytest.raises(SystemExit) as e:
        edge_hil.main(["run", "--model", str(sim_package), "--device", f"{SIM}&package={other}", "--windows", "3",
                       "--no-progress", "--report", str(tmp_path / "r")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "refused" in err and "SHA-256" in err
    rep = json.loads((tmp_path / "r" / "hil_report.json").read_text())
    assert rep["model_hash_match"] is False and "model_hash" in rep["gates_failed"] and rep["windows"] == 0


@pytest.mark.backend
def test_sim_is_bit_exact_with_tflite_micro_on_the_real_pocket_k_and_passes_the_default_gates(pocket_k_m7_package,
                                                                                            tmp_path):
    """The shipped pocket_k through edge-export: sim:// passes the DEFAULT gates, bit_exact 1.0 (it ran LiteRT
    before and scored 0.125: LiteRT rounds some outputs one step away from tflite-micro)."""
    with pytest.raises(SystemExit) as e:
        edge_hil.main(["run", "--model", str(pocket_k_m7_package), "--device", "sim://pocket_k", "--windows", "20",
                       "--no-progress", "--report", str(tmp_path)])
    rep = json.loads((tmp_path / "hil_report.json").read_text())
    assert e.value.code == 0, (rep["gates_failed"], rep["error"])
    assert rep["bit_exact_fraction"] == 1.0 and rep["windows"] == 20 and rep["gates_passed"]
    assert rep["sample_integrity"]["window_bit_exact"]


def test_edge_hil_writes_every_report_without_matplotlib_or_tflite_micro(sim_package, tmp_path):
    """A runtime-only install (no matplotlib, no tflite-micro, no torch): hil_report.json, JUnit and HTML are
    written, each plot replaced by a note, the INT8 reference named (LiteRT)."""
    import subprocess

    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('matplotlib', 'tflite_micro', 'torch', 'tensorflow'):\n"
        "            raise ImportError(f'{name} is not installed (blocked: runtime-only install)')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from ecgedge.tools.edge_hil import main\n"
        "main(sys.argv[1:])\n")
    gates = tmp_path / "g.toml"
    # the reference is LiteRT here, one step from tflite-micro on some outputs (this model: every window)
    gates.write_text('[within_one_step]\nmetric = "max_abs_delta_int8_lsb"\nop = "<="\nthreshold = 1\n'
                     '[windows_completed]\nmetric = "windows_completed_fraction"\nop = ">="\nthreshold = 1.0\n')
    r = subprocess.run([sys.executable, "-c", script, "run", "--model", str(sim_package), "--device", SIM,
                        "--windows", "3", "--no-progress", "--gates", str(gates), "--report", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rep = json.loads((tmp_path / "r" / "hil_report.json").read_text())
    html = (tmp_path / "r" / "report.html").read_text()
    assert rep["windows"] == 3 and (tmp_path / "r" / "hil_junit.xml").is_file()
    assert html.count("matplotlib is not installed") == 4 and "<img" not in html
    assert rep["int8_reference"] == "LiteRT interpreter"
    assert any("tflite-micro is not installed" in n for n in rep["notes"])
    assert rep["float_reference"] is None and any("no float reference" in n for n in rep["notes"])
