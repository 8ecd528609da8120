"""How the runtime turns a package's raw outputs into scores and decisions (binary vs multiclass)."""

import math

import pytest

from ecgedge.edge_runtime.inference import interpret_outputs, interpret_values
from ecgedge.edge_runtime.package import OutputInfo


def _af_outputs():
    return [OutputInfo(f"logit_{c}", "logit", i, None, None, 0.1, -3) for i, c in enumerate("NAO~")]


def test_multiclass_logits_become_softmax_and_one_decision():
    raw = [17, 27, 5, -3]        # (q - zp) * 0.1 -> logits 2.0, 3.0, 0.8, 0.0
    out = interpret_outputs(raw, _af_outputs(), task="multiclass")
    z = [2.0, 3.0, 0.8, 0.0]
    expected = [math.exp(v) / sum(math.exp(w) for w in z) for v in z]
    assert [out["scores"][f"logit_{c}"] for c in "NAO~"] == pytest.approx(expected, rel=1e-9)
    assert sum(out["scores"].values()) == pytest.approx(1.0)
    assert out["decisions"] == {"logit_N": False, "logit_A": True, "logit_O": False, "logit_~": False}


def test_binary_logits_keep_their_own_sigmoid_and_threshold():
    outputs = [OutputInfo("p_k_gt_5_5", "logit", 0, 0.5), OutputInfo("p_k_ge_6_0", "logit", 1, 0.9),
               OutputInfo("k_mmol", "regression", 2)]
    out = interpret_values({"p_k_gt_5_5": 1.0, "p_k_ge_6_0": 1.0, "k_mmol": 5.9}, outputs, task="binary+regression")
    p = 1 / (1 + math.exp(-1.0))
    assert out["scores"]["p_k_gt_5_5"] == pytest.approx(p) and out["scores"]["p_k_ge_6_0"] == pytest.approx(p)
    assert out["decisions"] == {"p_k_gt_5_5": True, "p_k_ge_6_0": False}
    assert out["scores"]["k_mmol"] == pytest.approx(5.9)
    # without a task (older manifests) multiclass-looking logits are still read one by one
    assert interpret_outputs([17, 27, 5, -3], _af_outputs())["decisions"] == {c: True for c in
                                                                            ("logit_N", "logit_A", "logit_O", "logit_~")}
