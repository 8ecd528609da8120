"""verify() and the generator's pieces without TensorFlow (unit tier): the committed op-mix model through
`verify` on the host build, input loading errors, strided-copy parameters, the MEAN multiplier fold."""

from pathlib import Path

import numpy as np
import pytest

from ecgedge.errors import ConfigError, DataError, FirmwareError
from ecgedge.firmware_bridge.ops_general import copy_params, fold_mean_multiplier
from ecgedge.firmware_bridge.tflite_model import Operator, load_model
from ecgedge.firmware_bridge.verify import load_inputs, make_inputs, verify

MODEL = Path(__file__).parent / "golden" / "firmware_opmix_int8.tflite"


def test_verify_opmix_on_host_both_kernel_sets():
    rep = verify(MODEL, core="host", n_inputs=12, seed=4, also_reference=True)
    assert rep["bit_exact_fraction"] == 1.0 and rep["reference_bit_exact_fraction"] == 1.0
    assert rep["distinct_outputs"] > 1 and rep["inputs"] == 12
    assert rep["instructions_per_inference"] is None and rep["flash_bytes"] is None     # host build: not measured
    assert 0 < rep["arena_bytes"] <= rep["arena_bytes_tflm"] and rep["macs"] == sum(r["macs"] for r in rep["layers"])


def test_verify_refuses_unknown_core_and_missing_model():
    with pytest.raises(FirmwareError, match="unknown core 'cortex-m9'"):
        verify(MODEL, core="cortex-m9")
    with pytest.raises(ConfigError, match="no such file"):
        verify(MODEL.with_name("missing.tflite"))


def test_inputs_random_and_given():
    m = load_model(MODEL)
    x = make_inputs(m, 5, seed=1)
    assert x.shape == (5, 1, 1, 256, 1) and x.dtype == np.int8 and x.min() < -100 and x.max() > 100
    assert load_inputs(m, x.reshape(5, -1).astype(np.int16)).shape == x.shape
    with pytest.raises(DataError, match="not a whole number of inputs"):
        load_inputs(m, np.zeros(300, np.int8))
    with pytest.raises(DataError, match="expected int8 values"):
        load_inputs(m, np.full(256, 300, np.int16))
    with pytest.raises(DataError, match="expected int8 values"):
        load_inputs(m, np.zeros(256, np.float32))


def test_copy_params_derive_strides_and_merge_contiguous_dims():
    op = Operator(0, "TRANSPOSE", [], [])
    src = np.arange(24).reshape(2, 3, 4)
    p = copy_params(op, src.transpose(2, 0, 1), np.arange(24).reshape(4, 2, 3))
    assert p["ndim"] == 2 and p["dims"][:2] == [4, 6] and p["in_strides"][:2] == [1, 4] and p["out_strides"][:2] == [6, 1]
    p = copy_params(op, src[:, ::-1, 1:3], np.arange(12).reshape(2, 3, 2))       # a reversed, cropped slice
    assert p["in_base"] == 9 and p["in_strides"][:3] == [12, -4, 1]
    with pytest.raises(FirmwareError, match="not a strided copy"):
        copy_params(op, np.array([0, 2, 3]), np.arange(3))


def test_mean_fold_is_tflite_micros():
    """QuantizedMeanOrSum: s = min(floor(log2 n), 32, 31 + shift), multiplier (m << s) / n truncated, shift - s."""
    assert fold_mean_multiplier(1 << 30, 1, 10) == (858993459, -2)          # 2^33 / 10, s = 3
    assert fold_mean_multiplier(1 << 30, 1, 1) == (1 << 30, 1)
    assert fold_mean_multiplier(1 << 30, -30, 5000) == (429496, -31)         # s capped at 31 + shift = 1
    assert fold_mean_multiplier(2**31 - 1, 0, 2**40) == (4194303, -31)       # s capped at 31
