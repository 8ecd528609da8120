"""Conformance by random models: 200 random small Keras models (device_sim/random_models.py: 1-D and 2-D
convolutions with random shapes, strides, dilations, padding, groups and channel counts, activations, branches,
concatenations, pooling, data movement, reductions over random axes, batch matmuls, unrolled GRUs/LSTMs and the
fused int8 LSTM, float edges), converted by TensorFlow's TFLiteConverter to full INT8, run by our engine on the
host build (optimised and reference kernels) and 20 of them in QEMU on cortex-m7, every output byte compared
with tflite-micro; our arena never larger than tflite-micro's smallest working arena.

Seeds are in every failure message. Replay one: `pytest tests/test_engine_conformance.py --engine-seed N`
(or ECGEDGE_ENGINE_SEED=N). A seed that ever failed goes into REGRESSION_SEEDS and is checked on every run.
Converted models are cached under $ECGEDGE_CACHE/random-models/ (keyed by the generator and TF versions)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ecgedge.device_sim.random_models import description, ensure_models
from ecgedge.firmware_bridge.verify import problems, verify_many

pytestmark = pytest.mark.backend

HOST_SEEDS = list(range(1000, 1200))     # 200 models on the host build
QEMU_SEEDS = HOST_SEEDS[:20]             # 20 of them in QEMU on cortex-m7
# Seeds that failed during development, kept as regressions (checked on host and cortex-m7 on every run):
# 1003 merged a tensor with itself (SUB(x, x): a zero-range output tflite-micro aborts on), 1051 was rejected by
# TensorFlow's converter (the seed now takes its next architecture), 1014 calibrated a dead ReLU to a collapsed
# range (tflite-micro aborts; the seed now takes its next architecture)
REGRESSION_SEEDS = [1003, 1014, 1051]
WORKERS = 2


def _run(jobs: list[tuple]) -> list[dict]:
    return verify_many([(seed, path, core, seed) for seed, path, core in jobs], workers=WORKERS)


def _problems(results: list[dict], paths: dict) -> list[str]:
    return [f"seed {line} -- model: {description(paths[r['key']])} -- replay: pytest tests/test_engine_conformance.py "
            f"--engine-seed {r['key']}" for r, line in ((r, p) for r in results for p in problems([r]))]


@pytest.fixture(scope="module")
def models():
    return ensure_models(HOST_SEEDS + REGRESSION_SEEDS, workers=WORKERS)


def test_random_models_bit_exact_on_host(models, tmp_path_factory):
    results = _run([(s, models[s], "host") for s in HOST_SEEDS])
    problems = _problems(results, models)
    assert not problems, "\n".join(problems)
    ok = [r for r in results if r["error"] is None]
    ratios = np.array([r["arena_bytes"] / r["arena_bytes_tflm"] for r in ok])
    ops = sorted({o for r in ok for o in r["ops"]})
    summary = {"models": len(ok), "arena_ratio_max": float(ratios.max()), "arena_ratio_median": float(np.median(ratios)),
               "ops": ops, "with_distinct_outputs": int(sum(r["distinct_outputs"] > 1 for r in ok))}
    (tmp_path_factory.mktemp("conformance") / "host.json").write_text(json.dumps({"summary": summary,
                                                                                  "results": results}, indent=1))
    print(f"\nrandom models on host: {summary}")
    # the suite covers the engine's op set (ops it cannot produce are covered by tests/test_engine_ops.py)
    assert len(ops) >= 28, ops
    assert summary["with_distinct_outputs"] >= 0.9 * len(ok)


def test_random_models_bit_exact_on_cortex_m7_in_qemu(models):
    results = _run([(s, models[s], "cortex-m7") for s in QEMU_SEEDS])
    problems = _problems(results, models)
    assert not problems, "\n".join(problems)
    assert all(r["instructions_per_inference"] and r["flash_bytes"] for r in results)


@pytest.mark.parametrize("seed", REGRESSION_SEEDS)
def test_regression_seed(models, seed):
    results = _run([(seed, models[seed], "host"), (seed, models[seed], "cortex-m7")])
    problems = _problems(results, models)
    assert not problems, "\n".join(problems)


def _replay_seeds(config) -> list[int]:
    seeds = list(config.getoption("--engine-seed") or [])
    env = os.environ.get("ECGEDGE_ENGINE_SEED", "")
    seeds += [int(s) for s in env.split(",") if s.strip()]
    return seeds


def test_replay_seed(request):
    """`--engine-seed N` / ECGEDGE_ENGINE_SEED=N: that seed on the host and on cortex-m7."""
    seeds = _replay_seeds(request.config)
    if not seeds:
        pytest.skip("no --engine-seed given")
    paths = ensure_models(seeds, workers=1)
    results = _run([(s, paths[s], core) for s in seeds for core in ("host", "cortex-m7")])
    problems = _problems(results, paths)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["image", "audio", "gru", "lstm", "float_io"])
def test_acceptance_model_bit_exact_on_cortex_m7_in_qemu(name):
    """2-D image and audio models with softmax heads, an unrolled GRU, the fused int8 LSTM, float edges: the
    optimised (DSP) kernels in QEMU, every output byte vs tflite-micro, exact instruction counts."""
    from ecgedge.firmware_bridge.verify import verify

    path = ensure_models([name])[name]
    rep = verify(path, core="cortex-m7", n_inputs=8, seed=11, arena_tflm=False)
    assert rep["bit_exact_fraction"] == 1.0, rep["mismatched_inputs"]
    assert rep["instructions_per_inference"] > 0 and all("instructions" in row for row in rep["layers"])
