"""The export road's stages (ecgedge.quantize.stages), each run alone on a small state: a stage reads
what the stages before it left in the ExportState and adds its own part, so it can be checked without
running the whole road. The tiny pocket_k checkpoint (tests/conftest.py) keeps each stage to seconds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest


@pytest.fixture(scope="module")
def loaded(tiny_pocket_k_checkpoint, tmp_path_factory):
    """A state after the load stage alone: the tiny pocket_k, 16 calibration and 24 validation windows."""
    from ecgedge.quantize import stages as st
    from ecgedge.quantize.pipeline import ExportOptions, _resolve, set_seeds
    opts = ExportOptions("pocket_k", "cortex-m7", checkpoint=str(tiny_pocket_k_checkpoint), calib_windows=16,
                         val_windows=24, calibrator="minmax", progress=False)
    spec, target = _resolve(opts)
    s = st.ExportState(opts, spec, target, tmp_path_factory.mktemp("stages"))
    set_seeds(opts.seed)
    st.load(s)
    return s


def _fresh(s):
    """A copy of the state whose per-stage records start empty (the module's state stays as loaded)."""
    return replace(s, timings={}, raw={}, onnx_info={})


def test_load_alone_gives_windows_truth_and_budget(loaded):
    from ecgedge.quantize.pipeline import CALIB_SEED_OFFSET
    s = loaded
    assert s.x_cal.shape == (16, 5000) and s.x_val.shape == (24, 5000)
    assert s.cal_source == f"generated (seed {CALIB_SEED_OFFSET})" and s.real is None
    assert set(s.truth) == {o.name for o in s.spec.outputs}
    assert s.truth["p_k_gt_5_5"].shape == (24,) and s.truth["k_mmol"].shape == (24,)
    assert s.demo and s.notice and s.budget["macs"] > 0 and s.budget["flash_bytes"] > 0
    assert list(s.timings) == ["load_and_data"]


def test_convert_and_calibrate_alone_carry_the_input_range(loaded):
    """convert and calibrate on a state given a pruned model and an input range by hand: the range the
    state carries (not the calibration windows' own min/max) becomes the INT8 model's input scale."""
    from ecgedge.contract.quantization import int8_qparams
    from ecgedge.quantize import stages as st
    from ecgedge.quantize.pipeline import KERAS_TOLERANCE
    s = _fresh(loaded)
    s.pruned = s.model          # the tiny width is inside cortex-m7's budget: nothing to prune
    lo, hi = 0.5 * float(s.x_cal.min()), 0.5 * float(s.x_cal.max())
    s.input_range = {"min": lo, "max": hi}
    st.convert(s)
    assert s.keras_diff <= KERAS_TOLERANCE
    st.calibrate(s)
    assert s.chosen == "minmax" and s.selection is None
    assert s.quant["input"]["dtype"] == "int8" and s.quant["outputs"][0]["dtype"] == "int8"
    scale, zero_point = int8_qparams(lo, hi)
    assert s.quant["input"]["scale"] == pytest.approx(scale, rel=1e-3)
    assert abs(s.quant["input"]["zero_point"] - zero_point) <= 1
    assert s.tflite[4:8] == b"TFL3" and s.arena > 0 and s.problems == []
    # cortex-m7 runs our engine: its RAM budget is checked with the arena the engine plans for the M7's kernels
    from ecgedge.firmware_bridge.codegen import planned_arena
    assert s.arena_engine == planned_arena(s.tflite, "dsp", "speed") == s.ram_check["arena_bytes"]
    assert s.ram_check["basis"].startswith("ecgedge C engine (cortex-m7, dsp kernels")
    assert s.macs_pruned == s.macs_float > 0
    assert list(s.timings) == ["keras_rebuild", "calibrate_quantize"]


def test_score_alone_counts_flipped_decisions_and_lsb(loaded):
    """score on outputs given by hand: one window's decision flipped, one tflite-micro value one step off."""
    from ecgedge.quantize import stages as st
    s = _fresh(loaded)
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(24, 3)).astype(np.float32)
    ref[:, 0] += np.sign(ref[:, 0]) * 0.5          # no logit near the decision boundary
    int8 = ref.copy()
    int8[5, 0] = -int8[5, 0]
    q_lite = rng.integers(-128, 128, size=(24, 3)).astype(np.int8)
    q_tflm = q_lite[:12].copy()
    q_tflm[2, 1] = q_tflm[2, 1] + 1 if q_tflm[2, 1] < 127 else 126
    on_grid = ref.copy()
    on_grid[[1, 9], 0] = -on_grid[[1, 9], 0]        # the float model on the INT8 input's grid: two flipped
    s.raw = {"float": ref, "pruned": ref, "int8": int8, "tflm": int8[:12], "input_int8": on_grid}
    s.q_lite, s.q_tflm, s.n_tflm = q_lite, q_tflm, 12
    st.score(s)
    assert s.compare["int8"]["agreement"] == pytest.approx(23 / 24)
    assert s.compare["float"]["agreement"] == pytest.approx(23 / 24)
    assert s.compare["tflm"]["agreement"] == pytest.approx(11 / 12)
    assert s.compare["input"]["agreement"] == pytest.approx(22 / 24)
    assert s.metrics["float"] == s.metrics["pruned"] and set(s.metrics) == {"float", "pruned", "int8", "int8_tflm"}
    assert s.lsb.shape == (12, 3) and int(s.lsb.sum()) == 1
