"""Export pieces on small real models: Keras rebuild vs torch, the INT8 op-list check, calibrator
ranges reaching the TFLite scales, arena search, C hand-off files."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ecgedge.errors import BudgetError, ExportError


def _small_net1d(seed=0, prune_like=False):
    import torch

    from ecgedge.models.net1d import Net1D
    torch.manual_seed(seed)
    m = Net1D(in_channels=1, base_filters=8, ratio=1.0, filter_list=[8, 16, 24], m_blocks_list=[1, 2, 1],
              kernel_size=9, stride=2, groups_width=4, n_classes=3, dropout=0.1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.3, 0.3)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    if prune_like:  # narrower middle of one block, fewer groups: widths differ from the arch dict
        from ecgedge.quantize.prune import prune_to_budget
        from ecgedge.models.specs import get_spec
        from ecgedge.models.zoo import count_macs
        spec = get_spec("pocket_k")
        m, _ = prune_to_budget(m.eval(), spec, mac_budget=count_macs(m, 5000) * 0.7, flash_budget_bytes=1e9,
                               progress=False)
    return m.eval()


def _windows(n, seed=1):
    rng = np.random.default_rng(seed)
    t = np.arange(5000) / 500.0
    base = np.sin(2 * np.pi * 1.2 * t)[None, :]
    return (base * rng.uniform(0.5, 1.5, (n, 1)) + 0.1 * rng.normal(size=(n, 5000))).astype(np.float32)


@pytest.fixture(scope="module")
def small_models():
    from ecgedge.quantize.keras_rebuild import build_keras_model
    m = _small_net1d()
    return m, build_keras_model(m, 5000)


def test_keras_rebuild_matches_torch(small_models):
    from ecgedge.quantize.keras_rebuild import max_abs_difference
    m, k = small_models
    x = _windows(3)[:, None, :]
    assert max_abs_difference(m, k, x) < 1e-4


def test_keras_rebuild_reads_pruned_widths_from_weights():
    from ecgedge.quantize.keras_rebuild import build_keras_model, max_abs_difference
    m = _small_net1d(prune_like=True)
    groups = [b.conv2.conv.groups for s in m.stage_list for b in s.block_list]
    assert groups != [2, 4, 4, 6][:len(groups)]  # pruning changed at least one block's groups
    k = build_keras_model(m, 5000)
    assert max_abs_difference(m, k, _windows(2)[:, None, :]) < 1e-4


def test_int8_export_op_set_and_scales(small_models):
    from ecgedge.quantize import tflite_export as te
    _, k = small_models
    tfl = te.convert_int8(k, _windows(16))
    info = te.check_int8_only(tfl)
    assert set(info["ops"]) <= te.ALLOWED_OPS
    assert "TRANSPOSE" not in info["ops"] and {"CONV_2D", "MUL", "LOGISTIC", "ADD"} <= set(info["ops"])
    q = te.io_quant(tfl)
    assert q["input"]["dtype"] == "int8" and q["outputs"][0]["dtype"] == "int8"
    assert q["input"]["shape"] == [1, 1, 5000, 1]


def test_calibrator_ranges_reach_the_tflite_scales(small_models):
    """Replacing the recorded min/max changes the quantisation parameters as the ranges say."""
    from ecgedge.quantize import tflite_export as te
    _, k = small_models
    cal = te.calibrate_only(k, _windows(8))
    rec = te.calibrated_ranges(cal)
    in_name = next(n for n in rec if "ecg" in n)
    lo, hi = -1.0, 3.0
    tfl = te.quantize_calibrated(te.override_ranges(cal, {in_name: (lo, hi)}))
    q = te.io_quant(tfl)["input"]
    assert q["scale"] == pytest.approx((hi - lo) / 255, rel=1e-5)
    with pytest.raises(ExportError, match="no calibration statistics"):
        te.override_ranges(cal, {"no such tensor": (0.0, 1.0)})


def test_input_range_round_trip_is_the_tflite_input_quantisation(small_models):
    """int8_round_trip (the input range search's model of the input) equals what the INT8 model's input
    quantisation does, via the name input_tensor_name finds."""
    from ecgedge.quantize import tflite_export as te
    from ecgedge.quantize.pipeline import int8_round_trip
    _, k = small_models
    cal = te.calibrate_only(k, _windows(8))
    lo, hi = -1.7, 2.9
    tfl = te.quantize_calibrated(te.override_ranges(cal, {te.input_tensor_name(cal): (lo, hi)}))
    q = te.io_quant(tfl)["input"]
    x = _windows(2) * 2.0                                           # some samples beyond the range: clipped
    assert np.abs(x).max() > hi
    assert q["scale"] == pytest.approx((hi - lo) / 255, rel=1e-6) and q["zero_point"] == round(-128 - lo * 255 / (hi - lo))
    codes = np.clip(np.round(x / q["scale"]) + q["zero_point"], -128, 127)
    step = np.abs(int8_round_trip(x, lo, hi) - (codes - q["zero_point"]) * q["scale"]) / q["scale"]
    # the converter's float32 scale differs in the last bit: a sample exactly half-way may round apart
    assert step.max() < 1.001 and np.mean(step < 1e-3) > 0.999


def test_input_range_search_keeps_small_waves_rather_than_rare_spikes():
    """Small waves (0.05) under rare large spikes (8.0): min/max steps (0.06) erase the waves; the search
    picks a percentile range whose steps keep them, because the model's output depends on them."""
    import torch

    from ecgedge.quantize.pipeline import choose_input_range
    rng = np.random.default_rng(0)
    t = np.arange(2000)
    template = np.sin(2 * np.pi * t / 37.0).astype(np.float32)
    x = (0.05 * template[None, :] * rng.uniform(0.5, 1.5, (64, 1))).astype(np.float32)
    spikes = rng.random(x.shape) < 2e-4
    x[spikes] = rng.choice([-8.0, 8.0], int(spikes.sum()))

    class Correlator(torch.nn.Module):
        def forward(self, w):
            return (w[:, 0, :] * torch.from_numpy(template)).mean(dim=1, keepdim=True)

    chosen = choose_input_range(Correlator(), x[:, None, :])
    errors = {r["percentile"]: r["output_error"] for r in chosen["candidates"]}
    assert chosen["percentile"] < 100.0 and errors[chosen["percentile"]] == min(errors.values())
    assert errors[100.0] > 10 * errors[chosen["percentile"]]
    assert chosen["max"] < 1.0 < 8.0 == float(x.max())


def _keras_tiny(layers_fn):
    import keras
    inp = keras.Input(shape=(1, 64, 4), batch_size=1)
    return keras.Model(inp, layers_fn(keras, inp))


def test_op_check_rejects_float_model():
    from ecgedge.quantize import tflite_export as te
    k = _keras_tiny(lambda keras, x: keras.layers.Conv2D(4, (1, 3), padding="same")(x))
    tfl = te.convert_float(k)
    with pytest.raises(ExportError, match="not full INT8"):
        te.check_int8_only(tfl)


def test_op_check_rejects_transpose():
    from ecgedge.quantize import tflite_export as te
    k = _keras_tiny(lambda keras, x: keras.layers.Conv2D(4, (1, 3), padding="same")(keras.layers.Permute((3, 2, 1))(x)))
    rng = np.random.default_rng(0)

    def gen():
        for _ in range(4):
            yield [rng.normal(size=(1, 1, 64, 4)).astype(np.float32)]
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_keras_model(k)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    tfl = bytes(conv.convert())
    assert "TRANSPOSE" in te.op_list(tfl)
    with pytest.raises(ExportError, match="TRANSPOSE"):
        te.check_int8_only(tfl)


def test_smallest_arena_is_tight(small_models):
    from ecgedge.contract.runners import smallest_arena, tflm_allocates
    from ecgedge.quantize import tflite_export as te
    _, k = small_models
    tfl = te.convert_int8(k, _windows(4))
    arena = smallest_arena(tfl)
    assert arena % 16 == 0
    assert tflm_allocates(tfl, arena) and not tflm_allocates(tfl, arena - 16)


@pytest.mark.parametrize("recorded, needed, most_probes", [
    (5824, 5824, 2),           # feed-forward: tflite-micro's recorded total is the answer; one probe below settles it
    (126400, 175616, 16),      # unrolled GRU (the CRNN family): the planner's scratch is on top of the total
    (None, 3008, 16),          # no recorded total: from `start`, galloping down
    (20000, 18992, 14),        # a total above the answer (galloping down)
])
def test_smallest_arena_search_is_exact_in_few_probes(monkeypatch, recorded, needed, most_probes):
    """The search on a stand-in allocator (allocates iff arena >= needed): the exact 16-B threshold, and the
    number of interpreter builds it takes (each ~0.1-0.2 s on a many-op graph; the old walk took 80 on the CRNN)."""
    from ecgedge.contract import runners
    probes = []
    monkeypatch.setattr(runners, "tflm_recorded_arena", lambda data: recorded)
    monkeypatch.setattr(runners, "tflm_allocates", lambda data, n: probes.append(n) or n >= needed)
    assert runners.smallest_arena(b"model") == needed
    assert len(probes) <= most_probes and len(set(probes)) == len(probes)


def test_smallest_arena_says_when_nothing_fits(monkeypatch):
    from ecgedge.contract import runners
    monkeypatch.setattr(runners, "tflm_recorded_arena", lambda data: None)
    monkeypatch.setattr(runners, "tflm_allocates", lambda data, n: False)
    with pytest.raises(ExportError, match="cannot allocate the model even with a 1048576 B arena"):
        runners.smallest_arena(b"model", limit=1 << 20)


def _die():
    import os
    import signal
    os.kill(os.getpid(), signal.SIGSEGV)


def test_probe_server_forks_the_probes_and_survives_a_crash(small_models):
    """Inside probe_server() a module-level probe runs in a child of the helper process (not of this one), a
    crashing probe is a ModelError naming the signal and the helper goes on answering; a closure still forks
    from here; the arena found is the same either way."""
    import os
    import signal

    from ecgedge.contract import runners
    from ecgedge.errors import ModelError
    from ecgedge.quantize import tflite_export as te
    tfl = te.convert_int8(small_models[1], _windows(4))
    plain = runners.smallest_arena(tfl)
    assert runners.isolated(os.getppid) == os.getpid()
    with runners.probe_server():
        helper = runners.isolated(os.getppid)
        assert helper != os.getpid()
        with pytest.raises(ModelError, match="signal 11"):
            runners.isolated(_die)
        assert runners.isolated(os.getppid) == helper
        assert runners.isolated(lambda: os.getppid()) == os.getpid()
        assert runners.smallest_arena(tfl) == plain
    with pytest.raises(ChildProcessError):
        os.waitpid(helper, os.WNOHANG)      # the helper is gone once the block ends
    with runners.probe_server():            # a helper that died: the probes fork from here, as without one
        helper = runners.isolated(os.getppid)
        os.kill(helper, signal.SIGKILL)
        assert runners.isolated(os.getppid) == os.getpid()
        assert runners.smallest_arena(tfl) == plain


def test_budget_error_says_what_overflows_by_how_much():
    from ecgedge.quantize import footprint
    budget = {"flash_bytes": 1000, "ram_bytes": 500, "macs": 10}
    with pytest.raises(BudgetError) as e:
        footprint.require_fit("cortex-m4", 1500, 400, 5, budget)
    assert "over by 500 B" in str(e.value) and "flash" in str(e.value) and "RAM" not in str(e.value)
    footprint.require_fit("cortex-m4", 1000, 500, 10, budget)


def test_the_frozen_graph_route_converts_what_from_keras_model_converts(small_models):
    """tflite_export's converter (the Keras forward pass frozen to constants) gives the model TF's own
    from_keras_model route gives: the same ops (the order may differ: the export schedules them in the Keras
    layers' order either way), the same quantisation of every tensor both name, the same int8 outputs; only
    the I/O tensor names and the signature differ."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from ecgedge.quantize import tflite_export as te
    keras_model, x = small_models[1], _windows(8)
    conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = te._rep_gen(x)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    conv._experimental_calibrate_only = True
    theirs = te.quantize_calibrated(te._convert(conv))
    ours = te.quantize_calibrated(te.calibrate_only(keras_model, x))
    assert sorted(te.op_list(ours)) == sorted(te.op_list(theirs))
    its = [Interpreter(model_content=m) for m in (ours, theirs)]
    for it in its:
        it.allocate_tensors()
    q = [{d["name"]: (tuple(d["shape"]), d["quantization"]) for d in it.get_tensor_details()} for it in its]
    both = set(q[0]) & set(q[1])
    assert len(both) >= len(q[0]) - 4 and all(q[0][n] == q[1][n] for n in both)
    rng = np.random.default_rng(0)
    for _ in range(5):
        xi = rng.integers(-128, 128, its[0].get_input_details()[0]["shape"]).astype(np.int8)
        outs = []
        for it in its:
            it.set_tensor(it.get_input_details()[0]["index"], xi)
            it.invoke()
            outs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
        assert np.array_equal(*outs)


def test_the_ram_check_uses_the_arena_of_the_runtime_the_target_runs(small_models, monkeypatch):
    """An ecgedge-c target reserves our engine's arena for its core's kernels (the firmware's figure), not
    tflite-micro's; a Pi target runs another runtime and is checked with tflite-micro's; an op our engine
    cannot lower falls back to tflite-micro's with the reason in the basis."""
    from ecgedge.contract.runners import smallest_arena
    from ecgedge.errors import FirmwareError
    from ecgedge.firmware_bridge import codegen
    from ecgedge.firmware_bridge.codegen import generate, planned_arena
    from ecgedge.quantize import footprint
    from ecgedge.quantize import tflite_export as te
    from ecgedge.targets import get_target
    tfl = te.convert_int8(small_models[1], _windows(4))
    tflm = smallest_arena(tfl)
    m4 = get_target("cortex-m4")
    engine, check = footprint.runtime_arena(m4, tfl, tflm, "speed")
    assert engine == generate(tfl, kernels="dsp", optimize="speed").arena_bytes == check["arena_bytes"]
    assert engine < tflm and "ecgedge C engine (cortex-m4, dsp kernels" in check["basis"]
    assert footprint.runtime_arena(get_target("cortex-m55"), tfl, tflm)[0] == planned_arena(tfl, "mve")
    engine_pi, check_pi = footprint.runtime_arena(get_target("rpi4"), tfl, tflm)
    assert engine_pi is None and check_pi == {"arena_bytes": tflm, "basis": "tflite-micro (the target runs onnxruntime)"}
    budget = {"flash_bytes": 1 << 30, "ram_bytes": engine, "macs": 1 << 40}   # fits our engine, not tflite-micro
    assert footprint.overflows(len(tfl), check["arena_bytes"], 0, budget) == []
    assert footprint.overflows(len(tfl), tflm, 0, budget)

    def unsupported(*a, **k):   # every op of the suite's models is supported: stand in for one that is not
        raise FirmwareError("op FOO is not supported")
    monkeypatch.setattr(codegen, "planned_arena", unsupported)
    engine_bad, check_bad = footprint.runtime_arena(m4, tfl, tflm)
    assert engine_bad is None and check_bad == {"arena_bytes": tflm, "basis": "tflite-micro (our engine cannot run "
                                                                             "it: op FOO is not supported)"}


def test_tflm_array_files():
    from ecgedge.quantize import tflm_array
    assert tflm_array.resolver_name("CONV_2D") == "AddConv2D"
    assert tflm_array.resolver_name("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert tflm_array.resolver_name("FULLY_CONNECTED") == "AddFullyConnected"
    assert tflm_array.ops_txt(["MUL", "ADD", "MUL"]) == "AddAdd\nAddMul\n"
    blob = bytes(range(256)) * 3 + b"\x07"
    cc = tflm_array.model_data_cc(blob, "ab" * 32)
    assert "generated by ecgedge — do not edit" in cc and "alignas(16) const unsigned char g_model[]" in cc
    body = cc[cc.index("{") + 1:cc.index("};")]
    assert bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body)) == blob
    assert f"g_model_len = {len(blob)};" in cc
    assert "extern const unsigned int g_model_len;" in tflm_array.model_data_h("ab" * 32)
