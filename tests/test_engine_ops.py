"""The engine's general ops, one TensorFlow-converted model per op family (device_sim/random_models.py NAMED:
softmax, tanh, hard swish, relu, relu6, leaky relu, prelu, sub, max/min, transpose, strided slice, slice,
split, split_v, pack, sum/mean over non-adjacent axes, batch matmul, float in/out, a 2-D image and a 2-D
audio model with softmax heads, an unrolled GRU, the fused int8 LSTM): host builds, optimised and reference
kernels, every output byte vs tflite-micro; our arena vs tflite-micro's smallest; the int16 sigmoid table."""

import numpy as np
import pytest

from ecgedge.device_sim.random_models import NAMED, ensure_models
from ecgedge.errors import FirmwareError
from ecgedge.firmware_bridge import quant
from ecgedge.firmware_bridge.ops import kernel_table, lower, supported_ops
from ecgedge.firmware_bridge.tflite_model import load_model
from ecgedge.firmware_bridge.verify import verify

# the ops issue 18 asks for (besides the 15 the engine had), by TFLite name
ISSUE_OPS = {"SOFTMAX", "CONCATENATION", "TANH", "HARD_SWISH", "RELU", "RELU6", "LEAKY_RELU", "PRELU", "SUB",
             "MAXIMUM", "MINIMUM", "TRANSPOSE", "STRIDED_SLICE", "SPLIT", "SPLIT_V", "SUM", "MEAN", "BATCH_MATMUL",
             "DEQUANTIZE", "QUANTIZE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "PACK", "UNPACK"}


# TensorFlow conversions (cached under $ECGEDGE_CACHE) and tflite-micro: the backend tier
pytestmark = pytest.mark.backend

@pytest.fixture(scope="module")
def named():
    return ensure_models(NAMED + ["tanh_int16"])


def test_registry_has_every_op_of_the_issue_and_a_valid_kernel_table():
    assert ISSUE_OPS <= set(supported_ops())
    table = kernel_table()
    assert {"CONV_2D", "FULLY_CONNECTED", "TANH"} <= set(table)
    assert all(set(row["paths"]) <= {"c", "dsp", "mve"} for row in table.values())


@pytest.mark.parametrize("name", NAMED)
def test_named_model_bit_exact_on_host(named, name):
    path = named[name]
    rep = verify(path, core="host", n_inputs=24, seed=5, also_reference=True)
    assert rep["bit_exact_fraction"] == 1.0, rep["mismatched_inputs"]
    assert rep["reference_bit_exact_fraction"] == 1.0
    assert rep["distinct_outputs"] > 1          # the outputs depend on the input: the comparison has teeth
    assert rep["arena_bytes"] <= rep["arena_bytes_tflm"], (rep["arena_bytes"], rep["arena_bytes_tflm"])


def test_named_models_use_the_ops_they_are_named_for(named):
    ops = {n: set(load_model(p).op_names()) for n, p in named.items()}
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops["lstm"]
    assert {"UNPACK", "SPLIT", "SUB", "TANH", "LOGISTIC"} <= ops["gru"]
    assert {"QUANTIZE", "DEQUANTIZE"} <= ops["float_io"]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX"} <= ops["image"] and {"SOFTMAX", "AVERAGE_POOL_2D"} <= ops["audio"]
    for name, op in (("sum_axes", "SUM"), ("mean_axes", "MEAN"), ("batch_matmul", "BATCH_MATMUL"),
                     ("slice", "SLICE"), ("split_v", "SPLIT_V"), ("pack", "PACK"), ("prelu", "PRELU")):
        assert op in ops[name], (name, ops[name])
    # 2-D: convolution, depthwise and pooling with H > 1
    m = load_model(named["audio"])
    convs = [op for op in m.operators if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D")]
    assert all(m.tensors[op.inputs[0]].shape[1] > 1 for op in convs)


def _tanh16(v: np.ndarray, mult: int, shift: int, table: np.ndarray) -> np.ndarray:
    """reference_integer_ops::Tanh (int16), the same steps as c/ecg_kernels_lstm.c tanh16."""
    x = (v.astype(np.int64) * mult + ((1 << (shift - 1)) if shift > 0 else 0)) >> shift
    ax = np.abs(x)
    uh = ax >> 8
    safe = np.minimum(uh, 254)
    r = np.where(uh >= 255, 0xFFFF << 8, (table[safe] << 8) + (ax & 0xFF) * (table[safe + 1] - table[safe]))
    r = np.where(x >= 0, r - (1 << 23) + (1 << 7), -r + (1 << 23) + (1 << 7) - 1)
    return (r >> 8).astype(np.int16)


def test_int16_sigmoid_table_is_tflite_micros(named):
    """The LSTM's int16 sigmoid/tanh table reproduces tflite-micro's int16 TANH on all 65536 inputs."""
    from ecgedge.contract.runners import tflm_interpreter

    path = named["tanh_int16"]
    m = load_model(path)
    scale = float(m.tensors[m.operators[0].inputs[0]].scale[0])
    mult, shift = scale * 4096.0 * 3.0, 0              # TanhPrepare, int16, scale not a power of two
    while mult <= 32767.0 / 2.0 and shift <= 30:
        shift, mult = shift + 1, mult * 2
    it = tflm_interpreter(path.read_bytes(), 100_000)
    v = np.arange(-32768, 32768, dtype=np.int16).reshape(-1, 256)
    got = []
    for row in v:
        it.set_input(row[None], 0)
        it.invoke()
        got.append(it.get_output(0).reshape(-1).copy())
    ours = _tanh16(v.reshape(-1), int(mult), shift, quant.sigmoid_table_uint16())
    assert np.array_equal(np.concatenate(got), ours)


def test_lstm_with_projection_fails_early_naming_the_op(named):
    m = load_model(named["lstm"])
    op = next(o for o in m.operators if o.name == "UNIDIRECTIONAL_SEQUENCE_LSTM")
    op.inputs = op.inputs + [-1] * (24 - len(op.inputs))
    op.inputs[16] = op.inputs[1]          # a projection weights tensor
    with pytest.raises(FirmwareError, match=rf"op {op.index} \(UNIDIRECTIONAL_SEQUENCE_LSTM\).*projection"):
        lower(m)


def test_float_tensor_inside_the_graph_is_refused(named):
    m = load_model(named["softmax"])
    fc = next(o for o in m.operators if o.name == "FULLY_CONNECTED")
    m.tensors[fc.outputs[0]].type_name = "float32"
    with pytest.raises(FirmwareError, match=r"float32 tensor .*supported: full-INT8"):
        lower(m)


def test_softmax_needs_the_int8_output_quantisation(named):
    m = load_model(named["softmax"])
    sm = next(o for o in m.operators if o.name == "SOFTMAX")
    m.tensors[sm.outputs[0]].zero_point = np.asarray([0])
    with pytest.raises(FirmwareError, match=rf"op {sm.index} \(SOFTMAX\).*1/256, -128"):
        lower(m)


def _with_output_quant_of_input(src, op_name, dst):
    """A copy of the model whose first `op_name` op's output has its input's scale and zero point."""
    import importlib

    import flatbuffers

    s = importlib.import_module("ai_edge_litert.schema_py_generated")
    m = s.ModelT.InitFromPackedBuf(src.read_bytes(), 0)
    sg = m.subgraphs[0]
    code = getattr(s.BuiltinOperator, op_name)
    op = next(o for o in sg.operators
              if max(m.operatorCodes[o.opcodeIndex].builtinCode, m.operatorCodes[o.opcodeIndex].deprecatedBuiltinCode)
              == code)
    qi, qo = sg.tensors[op.inputs[0]].quantization, sg.tensors[op.outputs[0]].quantization
    qo.scale, qo.zeroPoint = list(qi.scale), list(qi.zeroPoint)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    dst.write_bytes(b.Output())
    return dst


def test_mean_with_equal_input_and_output_quantisation_is_bit_exact(named, tmp_path):
    """tflite-micro folds 1/n into the multiplier also when MEAN keeps its input's quantisation (an older
    lowering divided plainly there and was off by one step on most outputs)."""
    path = _with_output_quant_of_input(named["image"], "MEAN", tmp_path / "mean_same.tflite")
    m = load_model(path)
    mean = next(op for op in m.operators if op.name == "MEAN")
    assert m.tensors[mean.inputs[0]].scale[0] == m.tensors[mean.outputs[0]].scale[0]
    rep = verify(path, core="host", n_inputs=24, seed=2, also_reference=True, arena_tflm=False)
    assert rep["bit_exact_fraction"] == 1.0 and rep["reference_bit_exact_fraction"] == 1.0
