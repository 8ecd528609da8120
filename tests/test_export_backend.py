"""Full exports through `edge-export`'s own entry point (tiny random-weight pocket_k, few windows)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

pytestmark = pytest.mark.backend

PACKAGE_FILES = ["model_int8.tflite", "model.onnx", "model_data.cc", "model_data.h", "ops.txt", "manifest.json",
                 "report.json", "report.html"]
REPORT_KEYS = ["model", "target", "int8_only", "fits", "params_float", "params_pruned", "macs_float", "macs_pruned",
               "flash_bytes", "arena_bytes", "auroc_float", "auroc_pruned", "auroc_int8", "agreement_int8", "agreement_input_int8",
               "seconds", "calibrator", "sqnr", "sqnr_worst_layer", "latency_estimates_ms", "notice"]


def _cli(args):
    from ecgedge.tools.edge_export import main
    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code


def test_package_is_complete_and_hashes_verify(exported_package):
    d = exported_package
    for name in PACKAGE_FILES:
        assert (d / name).is_file(), name
    m = json.loads((d / "manifest.json").read_text())
    assert m["format"] == "ecgedge-package/1" and m["model"] == "pocket_k" and m["target"] == "cortex-m7"
    on_disk = {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()}   # c/ included (the C library)
    assert set(m["artifacts"]) == on_disk - {"manifest.json", "manifest.sig"}
    assert "c/ecgedge_model.h" in m["artifacts"]
    for name, digest in m["artifacts"].items():
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest, name
    assert m["model_sha256"] == m["artifacts"]["model_int8.tflite"]
    assert m["demo"] is True and "not for clinical use" in m["notice"]
    assert m["input"]["tflite_shape"] == [1, 1, 5000, 1] and m["input"]["sampling_rate_hz"] == 500
    assert [o["name"] for o in m["outputs"]] == ["p_k_gt_5_5", "p_k_ge_6_0", "k_mmol"]
    assert {"torch", "tensorflow", "ecgedge"} <= set(m["toolchain"])
    # the runtime's own loader accepts it
    from ecgedge.contract.package import load_package
    load_package(d)


def test_report_keys_and_int8_contract(exported_package):
    from ai_edge_litert.interpreter import Interpreter

    from ecgedge.quantize.tflite_export import ALLOWED_OPS, op_list
    from ecgedge.contract.quantization import quantize_input
    d = exported_package
    r = json.loads((d / "report.json").read_text())
    for key in REPORT_KEYS:
        assert key in r, key
    assert r["int8_only"] is True and r["fits"] is True
    assert 0.0 <= r["agreement_input_int8"] <= 1.0    # the float model on the INT8 input's grid
    assert r["arena_bytes"] <= r["budget"]["ram_bytes"] and r["flash_bytes"] == (d / "model_int8.tflite").stat().st_size
    tfl = (d / "model_int8.tflite").read_bytes()
    ops = op_list(tfl)
    assert set(ops) <= ALLOWED_OPS and "TRANSPOSE" not in ops
    assert (d / "ops.txt").read_text().split() == sorted({"Add" + "".join(
        p if p[0].isdigit() else p.capitalize() for p in o.split("_")) for o in ops})
    # the manifest's input contract quantises exactly as the interpreter expects
    m = json.loads((d / "manifest.json").read_text())
    it = Interpreter(model_content=tfl)
    it.allocate_tensors()
    det = it.get_input_details()[0]
    assert det["quantization"][0] == pytest.approx(m["input"]["tflite_scale"])
    assert det["quantization"][1] == m["input"]["tflite_zero_point"]
    it.set_tensor(det["index"], quantize_input(np.zeros(5000), *det["quantization"]).reshape(1, 1, 5000, 1))
    it.invoke()
    html = (d / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "not for clinical use" in html


def test_same_command_twice_gives_identical_tflite_and_signing_works(exported_package, tiny_pocket_k_checkpoint,
                                                                     tiny_export_args, tmp_path):
    """A second run (signed this time) gives the byte-identical model; the signature verifies."""
    from ecgedge.contract.package import generate_keypair, load_package
    from ecgedge.errors import PackageError
    key, pub = generate_keypair(tmp_path / "keys" / "export.key")
    out = tmp_path / "again"
    assert _cli(["pocket_k", "--target", "cortex-m7", "--checkpoint", str(tiny_pocket_k_checkpoint),
                 "--out", str(out), "--sign-key", str(key), *tiny_export_args]) == 0
    assert (out / "model_int8.tflite").read_bytes() == (exported_package / "model_int8.tflite").read_bytes()
    assert load_package(out, trust=pub).signed
    with pytest.raises(PackageError):  # the unsigned package is refused when a signature is required
        load_package(exported_package, trust=pub, allow_unsigned=False)


def test_rpi4_export_has_onnx_int8_that_runs(tiny_pocket_k_checkpoint, tmp_path):
    import onnxruntime as ort
    out = tmp_path / "pi"
    assert _cli(["pocket_k", "--target", "rpi4", "--checkpoint", str(tiny_pocket_k_checkpoint), "--out", str(out),
                 "--calib-windows", "24", "--val-windows", "40", "--calibrator", "percentile", "--no-progress"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["latency_ms_onnx_float"] > 0 and r["latency_ms_onnx_int8"] > 0 and r["calibrator"] == "percentile"
    sess = ort.InferenceSession(str(out / "model_int8.onnx"), providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in __import__("onnx").load(str(out / "model_int8.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    y = sess.run(None, {"ecg": np.zeros((1, 1, 5000), np.float32)})[0]
    assert y.shape == (1, 3) and np.all(np.isfinite(y))
    assert "model_int8.onnx" in json.loads((out / "manifest.json").read_text())["artifacts"]


def _no_leftovers(folder, name):
    return not any(p.name == name or p.name.startswith(f".{name}.") for p in folder.iterdir())


@pytest.mark.parametrize("case", ["unknown_model", "unknown_target", "garbage_checkpoint", "mismatched_checkpoint",
                                  "wrong_rate_data", "cannot_fit"])
def test_bad_input_exits_2_without_package(case, tmp_path, tiny_pocket_k_checkpoint, capsys):
    import torch
    out = tmp_path / "pkg"
    args = ["pocket_k", "--target", "cortex-m7", "--checkpoint", str(tiny_pocket_k_checkpoint),
            "--calib-windows", "8", "--val-windows", "10", "--calibrator", "minmax", "--no-progress"]
    expect = ""
    if case == "unknown_model":
        args[0], expect = "no_such_model", "pocket_k"
    elif case == "unknown_target":
        args[2], expect = "cortex-m99", "cortex-m7"
    elif case == "garbage_checkpoint":
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"not a checkpoint")
        args[4] = str(bad)
    elif case == "mismatched_checkpoint":
        ckpt = torch.load(tiny_pocket_k_checkpoint, weights_only=False)
        ckpt["state_dict"]["first_conv.conv.weight"] = torch.zeros(3, 1, 9)
        bad = tmp_path / "mismatch.pt"
        torch.save(ckpt, bad)
        args[4], expect = str(bad), "first_conv.conv.weight"
    elif case == "wrong_rate_data":
        from ecgedge.signals import save_record
        data = tmp_path / "records"
        data.mkdir()
        save_record(data / "r1", np.zeros(3600 * 3), 360, fmt="wfdb")
        args += ["--data", str(data)]
        expect = "360"
    elif case == "cannot_fit":
        args += ["--ram-budget", "4096"]
        expect = "over by"
    assert _cli(args + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") or "\nerror:" in err
    assert expect in err
    assert _no_leftovers(tmp_path, "pkg")


def test_pruned_and_quant_aware_export_is_byte_identical_twice(tiny_pocket_k_checkpoint, tiny_export_args, tmp_path):
    """The whole road with pruning, distillation and the quantisation-aware epochs (forced by a latency
    budget below the tiny model's MACs) gives the same .tflite twice: fixed seeds, no wall-clock stops."""
    from ecgedge.models.zoo import count_macs, load_model
    from ecgedge.targets import get_target
    model, spec, _ = load_model("pocket_k", str(tiny_pocket_k_checkpoint))
    target = get_target("cortex-m7")
    latency_ms = 0.6 * count_macs(model, spec.input.window_samples) * target.cycles_per_mac / target.clock_hz * 1e3
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert _cli(["pocket_k", "--target", "cortex-m7", "--checkpoint", str(tiny_pocket_k_checkpoint),
                     "--out", str(out), "--latency-ms", f"{latency_ms:.6f}", "--finetune-epochs", "1",
                     "--qat-epochs", "1", *tiny_export_args]) == 0
        outs.append(out)
    report = json.loads((outs[0] / "report.json").read_text())
    assert report["pruning"]["pruned"] and report["macs_pruned"] <= 0.6 * report["macs_float"]
    history = report["pruning"]["distillation"]["history"]
    assert history["quant_aware"]["epochs"] == 1 and history["epochs"][-1]["phase"] == "qat"
    assert (outs[0] / "model_int8.tflite").read_bytes() == (outs[1] / "model_int8.tflite").read_bytes()
