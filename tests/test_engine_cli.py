"""edge-engine's command line: ops per core, generate (self-contained sources that compile alone), verify's
report and exit codes (0 bit-exact, 1 not bit-exact, 2 bad input with a one-line error and nothing written)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ecgedge.device_sim.random_models import ensure_models
from ecgedge.firmware_bridge.tflite_model import load_model
from ecgedge.contract.runners import tflm_run_tensors

ISSUE_OPS = {"SOFTMAX", "CONCATENATION", "TANH", "HARD_SWISH", "RELU", "RELU6", "LEAKY_RELU", "PRELU", "SUB",
             "MAXIMUM", "MINIMUM", "TRANSPOSE", "STRIDED_SLICE", "SPLIT", "SPLIT_V", "SUM", "MEAN", "BATCH_MATMUL",
             "DEQUANTIZE", "QUANTIZE", "UNIDIRECTIONAL_SEQUENCE_LSTM"}


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "ecgedge.tools.edge_engine", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


# TensorFlow conversions (cached under $ECGEDGE_CACHE) and tflite-micro: the backend tier
pytestmark = pytest.mark.backend

@pytest.fixture(scope="module")
def models():
    return ensure_models(["prelu", "float_io"])


def test_ops_lists_every_op_and_optimised_kernels_per_core():
    r = cli("ops", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["op"]: row for row in json.loads(r.stdout)}
    assert ISSUE_OPS <= set(rows)
    assert rows["CONV_2D"]["cores"]["cortex-m7"] == "optimised" and rows["SOFTMAX"]["cores"]["cortex-m7"] == "reference"
    assert set(rows["CONV_2D"]["cores"]) == {"host", "cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33",
                                             "cortex-m55"}
    r = cli("ops", "--core", "cortex-m4")
    assert r.returncode == 0 and "UNIDIRECTIONAL_SEQUENCE_LSTM" in r.stdout and "cortex-m4" in r.stdout
    r = cli("ops", "--core", "cortex-z9")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "unknown core 'cortex-z9'" in r.stderr


def test_verify_host_report_and_exit_code(models, tmp_path):
    out = tmp_path / "v.json"
    r = cli("verify", models["prelu"], "--core", "host", "--inputs", "7", "--json", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["bit_exact_fraction"] == 1.0 and rep["inputs"] == 7 and rep["core"] == "host"
    for key in ("instructions_per_inference", "instructions_per_mac", "layers", "arena_bytes", "arena_bytes_tflm",
                "flash_bytes", "macs"):
        assert key in rep
    assert rep["arena_bytes"] <= rep["arena_bytes_tflm"] and rep["macs"] > 0
    assert [row["op"] for row in rep["layers"]] == ["CONV_2D", "PRELU"]


def test_verify_given_inputs_float_model(models, tmp_path):
    m = load_model(models["float_io"])
    x = np.random.default_rng(3).normal(0, 2, (5, *m.tensors[m.inputs[0]].shape)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = cli("verify", models["float_io"], "--core", "host", "--data", tmp_path / "x.npy", "--json", tmp_path / "v.json")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "v.json").read_text())
    assert rep["inputs"] == 5 and rep["input_type"] == rep["output_type"] == "float32"


def test_verify_not_bit_exact_exits_1(models, tmp_path):
    r = cli("verify", models["prelu"], "--core", "host", "--fault", "ECG_FAULT_REQUANT_SHIFT", "--json",
            tmp_path / "v.json")
    assert r.returncode == 1, r.stdout + r.stderr
    assert json.loads((tmp_path / "v.json").read_text())["bit_exact_fraction"] < 1.0
    assert "NOT bit-exact" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--core", "cortex-m85"], "unknown core 'cortex-m85'; supported: host, cortex-m0"),
    (["--core", "host", "--data", "{bad_npy}"], "--data: 7 values are not a whole number of inputs"),
    (["--core", "host", "--inputs", "0"], "argument --inputs: expected a whole number >= 1, got '0'"),
    (["--core", "host", "--fault", "ECG_FAULT_NOPE"], "--fault ECG_FAULT_NOPE: expected one of"),
])
def test_verify_bad_input_exits_2_with_one_line_and_writes_nothing(models, tmp_path, args, message):
    np.save(tmp_path / "bad.npy", np.zeros(7, np.int8))
    args = [a.format(bad_npy=tmp_path / "bad.npy") for a in args]
    r = cli("verify", models["prelu"], *args, "--json", tmp_path / "v.json")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("error: ") and message in r.stderr and r.stderr.strip().count("\n") == 0
    assert "Traceback" not in r.stderr and not (tmp_path / "v.json").exists()


def test_verify_refuses_a_file_that_is_not_a_model(tmp_path):
    (tmp_path / "x.tflite").write_bytes(b"not a model at all")
    r = cli("verify", tmp_path / "x.tflite", "--core", "host")
    assert r.returncode == 2 and "not a TFLite flatbuffer" in r.stderr


def test_generate_writes_sources_that_compile_alone(models, tmp_path):
    out = tmp_path / "engine"
    r = cli("generate", models["prelu"], "--core", "host", "--out", out)
    assert r.returncode == 0, r.stderr
    assert {"model.c", "model.h", "layers.json", "BUILD.txt", "kernels"} <= {p.name for p in out.iterdir()}
    main = tmp_path / "main.c"
    main.write_text('#include <stdio.h>\n#include "model.h"\nint main(void){static ECG_INPUT_T in[ECG_INPUT_SIZE];'
                    'static ECG_OUTPUT_T o[ECG_OUTPUT_SIZE];fread(in,1,ECG_INPUT_BYTES,stdin);ecg_model_invoke(in,o);'
                    'fwrite(o,1,ECG_OUTPUT_BYTES,stdout);return 0;}\n')
    exe = tmp_path / "a.out"
    subprocess.run(["gcc", "-O2", "-std=c11", "-DECG_OPTIMIZED", f"-I{out}", f"-I{out / 'kernels'}", str(main),
                    str(out / "model.c"), *map(str, sorted((out / "kernels").glob("*.c"))), "-lm", "-o", str(exe)],
                   check=True, capture_output=True, timeout=300)
    m = load_model(models["prelu"])
    x = np.random.default_rng(1).integers(-128, 128, m.tensors[m.inputs[0]].shape).astype(np.int8)
    got = np.frombuffer(subprocess.run([str(exe)], input=x.tobytes(), capture_output=True, check=True).stdout, np.int8)
    assert np.array_equal(got, tflm_run_tensors(models["prelu"], x[None])[0])
    r = cli("generate", models["prelu"], "--core", "host", "--out", out)
    assert r.returncode == 2 and "not empty" in r.stderr
