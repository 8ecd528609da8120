"""HIL bench pieces that need no device: gates, JUnit, output-order detection (metrics: test_contract_metrics)."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ecgedge.errors import ConfigError
from ecgedge.hil_tests.scoring import latency_ms, output_permutation
from ecgedge.hil_tests.gates import Gate, evaluate_gates, failed, load_gates
from ecgedge.hil_tests.junit import write_junit


def test_shipped_gates_file_loads_and_names_the_issue_gates():
    names = {g.name for g in load_gates()}
    assert {"bit_exact", "agreement", "auroc", "latency_p99", "input_contract", "output_order",
            "sample_integrity", "model_hash"} <= names


def test_gates_threshold_expressions_and_skips():
    gates = [Gate("auroc", "auroc_device", ">=", "auroc_float - 0.02"),
             Gate("bit", "bit_exact_fraction", ">=", 1.0, required=True),
             Gate("lat", "latency_ms_p99", "<=", "latency_budget_ms")]
    res = evaluate_gates(gates, {"auroc_device": 0.90, "auroc_float": 0.93, "bit_exact_fraction": 0.99,
                                 "latency_ms_p99": None, "latency_budget_ms": 40})
    by = {r.name: r for r in res}
    assert by["auroc"].passed is False and by["auroc"].threshold == pytest.approx(0.91)
    assert by["bit"].passed is False and "expected >= 1" in by["bit"].message
    assert by["lat"].passed is None
    assert [r.name for r in failed(res)] == ["auroc", "bit"]
    # a required gate whose metric is missing fails instead of skipping
    res = evaluate_gates([Gate("bit", "bit_exact_fraction", ">=", 1.0, required=True)], {})
    assert res[0].passed is False and "not measured" in res[0].message


def test_bad_gates_file_is_a_config_error(tmp_path):
    p = tmp_path / "g.toml"
    p.write_text('[x]\nmetric = "a"\nop = "~="\nthreshold = 1\n')
    with pytest.raises(ConfigError, match="op '~='"):
        load_gates(p)
    p.write_text('[x]\nmetric = "a"\nop = ">="\nthreshold = "__import__(1)"\n')
    with pytest.raises(ConfigError, match="threshold"):
        load_gates(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_gates(tmp_path / "missing.toml")


def test_junit_one_testcase_per_gate(tmp_path):
    res = evaluate_gates([Gate("a", "x", ">=", 1), Gate("b", "y", "<=", 1), Gate("c", "z", "==", True)],
                         {"x": 2, "y": 3})
    p = write_junit(tmp_path / "j.xml", res, "suite", 1.5, error="device stopped at window 7")
    ts = ET.parse(p).getroot().find("testsuite")
    assert ts.get("tests") == "4" and ts.get("failures") == "1" and ts.get("skipped") == "1"
    cases = {tc.get("name"): tc for tc in ts.findall("testcase")}
    assert cases["b"].find("failure") is not None and cases["c"].find("skipped") is not None
    assert "window 7" in cases["run"].find("error").get("message")


def test_output_permutation_detects_swapped_outputs():
    rng = np.random.default_rng(1)
    ref = rng.integers(-128, 128, size=(20, 3)).astype(np.int8)
    perm, frac = output_permutation(ref[:, [1, 0, 2]], ref)
    assert perm == (1, 0, 2) and frac == 1.0
    perm, frac = output_permutation(ref, ref)
    assert perm == (0, 1, 2) and frac == 1.0


def test_latency_conversion_per_counter_kind():
    assert latency_ms(1, 480_000, 0, 480e6, 1.0) == pytest.approx(1.0)   # instructions, CPI 1
    assert latency_ms(1, 480_000, 0, 480e6, 1.5) == pytest.approx(1.5)
    assert latency_ms(2, 240_000, 0, 480e6, 1.0) == pytest.approx(0.5)   # cycles
    assert latency_ms(3, 2500, 0, None, 1.0) == pytest.approx(2.5)       # microseconds
    assert latency_ms(0, 0, 0, 480e6, 1.0) is None


def test_shipped_f1_challenge_gate_holds_a_multiclass_device_to_its_float_score():
    gate = [g for g in load_gates() if g.name == "f1_challenge"]
    assert len(gate) == 1
    verdict = lambda dev, fl: evaluate_gates(gate, {"f1_challenge_device": dev, "f1_challenge_float": fl})[0]  # noqa: E731
    assert verdict(0.834, 0.838).passed is True
    bad = verdict(0.830, 0.838)
    assert bad.passed is False and "f1_challenge_device = 0.83" in bad.message
    assert verdict(None, None).passed is None          # a model without classes (pocket_k): skipped
