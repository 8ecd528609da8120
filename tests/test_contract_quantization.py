"""The contract's quantisation: how a window in µV becomes int8, and how raw outputs become scores and
decisions (binary vs multiclass) — the one rule the runtime, export validation, bench and simulator use."""

import math

import numpy as np
import pytest

from ecgedge.contract.package import OutputInfo
from ecgedge.contract.quantization import (decisions, dequantize_outputs, int8_qparams, interpret_int8,
                                           interpret_values, model_units, probabilities, quantize_input,
                                           window_int8)


def _af_outputs():
    return [OutputInfo(f"logit_{c}", "logit", i, None, None, 0.1, -3) for i, c in enumerate("NAO~")]


def test_multiclass_logits_become_softmax_and_one_decision():
    raw = [17, 27, 5, -3]        # (q - zp) * 0.1 -> logits 2.0, 3.0, 0.8, 0.0
    out = interpret_int8(raw, _af_outputs(), "multiclass")
    z = [2.0, 3.0, 0.8, 0.0]
    expected = [math.exp(v) / sum(math.exp(w) for w in z) for v in z]
    assert [out["scores"][f"logit_{c}"] for c in "NAO~"] == pytest.approx(expected, rel=1e-9)
    assert sum(out["scores"].values()) == pytest.approx(1.0)
    assert out["decisions"] == {"logit_N": False, "logit_A": True, "logit_O": False, "logit_~": False}


def test_binary_logits_keep_their_own_sigmoid_and_threshold():
    outputs = [OutputInfo("p_k_gt_5_5", "logit", 0, 0.5), OutputInfo("p_k_ge_6_0", "logit", 1, 0.9),
               OutputInfo("k_mmol", "regression", 2)]
    out = interpret_values({"p_k_gt_5_5": 1.0, "p_k_ge_6_0": 1.0, "k_mmol": 5.9}, outputs, "binary+regression")
    p = 1 / (1 + math.exp(-1.0))
    assert out["scores"]["p_k_gt_5_5"] == pytest.approx(p) and out["scores"]["p_k_ge_6_0"] == pytest.approx(p)
    assert out["decisions"] == {"p_k_gt_5_5": True, "p_k_ge_6_0": False}
    assert out["scores"]["k_mmol"] == pytest.approx(5.9)
    # without a task (older manifests) multiclass-looking logits are still read one by one
    assert interpret_int8([17, 27, 5, -3], _af_outputs(), None)["decisions"] == {c: True for c in
                                                                               ("logit_N", "logit_A", "logit_O", "logit_~")}


def test_window_rule_is_microvolts_over_scale_uv_then_the_int8_rule():
    contract = {"scale_uv": 1000.0, "tflite_scale": 0.02, "tflite_zero_point": -5}
    uv = np.array([0.0, 10.0, 30.0, 1000.0, -1000.0, 1e6, -1e6])   # 10 and 30 uV: half steps, to even
    q = window_int8(uv, contract)
    assert q.dtype == np.int8
    assert q.tolist() == [-5, -5, -3, 45, -55, 127, -128]
    assert np.array_equal(q, quantize_input(model_units(uv, contract), 0.02, -5))
    # a contract without scale_uv means mV (1000 uV per model unit), the InputContract default
    assert np.array_equal(window_int8(uv, {"tflite_scale": 0.02, "tflite_zero_point": -5}), q)


def test_int8_qparams_hold_zero_and_span_the_range():
    scale, zp = int8_qparams(-1.7, 2.9)
    assert scale == pytest.approx(4.6 / 255) and zp == round(-128 + 1.7 / scale)
    assert quantize_input(0.0, scale, zp) == zp                     # 0 is exact
    assert quantize_input(-1.7, scale, zp) == -128 and quantize_input(2.9, scale, zp) == 127
    assert int8_qparams(0.5, 2.0)[1] == -128                       # widened down to 0


def test_outputs_dequantise_each_with_its_own_scale_and_index():
    outputs = [OutputInfo("b", "logit", 1, None, None, 0.5, 2), OutputInfo("a", "regression", 0, None, None, 0.1, 0)]
    q = np.array([[10, 4], [-10, 0]], np.int8)
    assert dequantize_outputs(q, outputs).tolist() == [[1.0, 1.0], [-1.0, -1.0]]


def test_array_and_record_interpretations_agree():
    """decisions/probabilities over arrays (export validation, bench) equal the per-window record (runtime)."""
    outputs = [OutputInfo("p1", "logit", 0, 0.3), OutputInfo("p2", "logit", 1, 0.8), OutputInfo("k", "regression", 2)]
    raw = np.random.default_rng(0).normal(0, 2, (50, 3))
    for task in ("binary+regression", "multiclass"):
        p, d = probabilities(outputs, raw, task), decisions(outputs, raw, task)
        for n in range(len(raw)):
            rec = interpret_values(raw[n], outputs, task)
            assert [rec["scores"]["p1"], rec["scores"]["p2"]] == p[n].tolist()
            assert [rec["decisions"]["p1"], rec["decisions"]["p2"]] == d[n].tolist()
            assert rec["scores"]["k"] == raw[n, 2]
    assert decisions(outputs, raw, "multiclass").sum(axis=1).tolist() == [1] * len(raw)
