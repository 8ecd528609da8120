"""The bench end to end on the `host` device (INT8 in-process) with a small real INT8 package."""

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hil_helpers import keras_float_fn, make_test_package  # noqa: E402

import ecgedge  # noqa: E402
from ecgedge.hil_tests.bench import BenchConfig, run_bench  # noqa: E402
from ecgedge.hil_tests.evalset import synthetic_eval_set  # noqa: E402
from ecgedge.tools import edge_hil  # noqa: E402

REQUIRED_KEYS = ("device", "model_sha256", "windows", "bit_exact_fraction", "auroc_float", "auroc_device",
                 "agreement", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "instructions_per_inference",
                 "flash_bytes", "ram_bytes", "gates_passed", "seconds", "gates")


@pytest.fixture(scope="session")
def hil_test_package(tmp_path_factory):
    return make_test_package(tmp_path_factory.mktemp("hil_pkg") / "hil_testnet-cortex-m7")


def test_host_bench_is_bit_exact_and_writes_every_report(hil_test_package, tmp_path):
    pkg, model = hil_test_package
    manifest = json.loads((pkg / "manifest.json").read_text())
    es = synthetic_eval_set(manifest, 24)
    assert es.binary_labels["p_k_gt_5_5"].any() and not es.binary_labels["p_k_gt_5_5"].all()
    out = run_bench(BenchConfig(model_dir=pkg, device_url="host", windows=24, report_dir=tmp_path, progress=False),
                    eval_set=es, float_fn=keras_float_fn(model))
    rep = json.loads((tmp_path / "hil_report.json").read_text())
    for k in REQUIRED_KEYS:
        assert k in rep, k
    assert rep["windows"] == 24 and rep["bit_exact_fraction"] == 1.0 and rep["gates_passed"] is True
    assert out.passed and rep["auroc_float"] is not None and rep["auroc_device"] is not None
    assert rep["k_bland_altman_device"]["n"] == 24
    assert rep["metrics_device"]["windows"] == 24 and "auroc_p_k_gt_5_5" in rep["metrics_float"]
    assert rep["notice"] == ecgedge.DEMO_NOTICE
    html = (tmp_path / "report.html").read_text()
    assert ecgedge.DEMO_NOTICE in html and html.count("data:image/png;base64") >= 3  # ROC, latency, Bland-Altman
    cases = ET.parse(tmp_path / "hil_junit.xml").getroot().find("testsuite").findall("testcase")
    assert {c.get("name") for c in cases} >= {"bit_exact", "agreement", "auroc", "latency_p99"}
    # device outputs recorded per window equal the INT8 reference
    w = json.loads((tmp_path / "windows.json").read_text())
    assert np.array_equal(w["device_q"], w["reference_q"]) and len(w["ids"]) == 24


def test_cli_host_run_passes_and_a_crossed_gate_exits_1_naming_it(hil_test_package, tmp_path, capsys):
    pkg, _ = hil_test_package
    with pytest.raises(SystemExit) as ok:
        edge_hil.main(["run", "--model", str(pkg), "--device", "host", "--windows", "8", "--no-progress",
                       "--report", str(tmp_path / "ok")]) or sys.exit(0)
    assert ok.value.code == 0
    rep = json.loads((tmp_path / "ok" / "hil_report.json").read_text())
    assert rep["gates_passed"] and rep["windows"] == 8 and rep["bit_exact_fraction"] == 1.0
    assert any("no float reference" in n for n in rep["notes"])  # not a zoo model: float gates skipped
    strict = tmp_path / "strict.toml"
    strict.write_text('[instant]\nmetric = "latency_ms_p99"\nop = "<="\nthreshold = 0.0\n'
                      'description = "impossible latency"\n')
    with pytest.raises(SystemExit) as bad:
        edge_hil.main(["run", "--model", str(pkg), "--device", "host", "--windows", "4", "--no-progress",
                       "--gates", str(strict), "--report", str(tmp_path / "bad")])
    assert bad.value.code == 1
    assert "gates crossed: instant" in capsys.readouterr().err
    junit = ET.parse(tmp_path / "bad" / "hil_junit.xml").getroot().find("testsuite")
    assert junit.get("failures") == "1" and junit.find("testcase").find("failure") is not None


def test_tampered_package_is_refused(hil_test_package, tmp_path, capsys):
    import shutil

    pkg, _ = hil_test_package
    bad = tmp_path / "tampered"
    shutil.copytree(pkg, bad)
    blob = bytearray((bad / "model_int8.tflite").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (bad / "model_int8.tflite").write_bytes(bytes(blob))
    with pytest.raises(SystemExit) as e:
        edge_hil.main(["run", "--model", str(bad), "--device", "host", "--windows", "2", "--no-progress",
                       "--report", str(tmp_path / "r")])
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "r" / "hil_report.json").exists()


def test_unknown_device_scheme_is_a_clear_error(hil_test_package, tmp_path, capsys):
    pkg, _ = hil_test_package
    with pytest.raises(SystemExit) as e:
        edge_hil.main(["run", "--model", str(pkg), "--device", "carrier-pigeon://x", "--windows", "2",
                       "--no-progress", "--report", str(tmp_path)])
    assert e.value.code == 2
    assert "carrier-pigeon" in capsys.readouterr().err
