"""Bring your own model, end to end with real components: six architecture families a user might bring
(tests/byom_models.py), trained briefly on real PhysioNet/CinC 2017 windows, saved with torch.export.save,
through `edge-analyze` and `edge-export --target cortex-m7` and `--target rpi4`; two of them as .onnx; a
full-INT8 .tflite made by TensorFlow's own converter from a Keras model; pruning + distillation to a
tight budget; bad input; the Python API. CI cost is kept down by tiny models and few windows shared through
session fixtures (the full acceptance run, >= 1,000 held-out windows per family, is
benchmarks/byom_bench.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from af_helpers import CINC, needs_data  # noqa: E402
from byom_models import CONTRACT, FAMILIES  # noqa: E402

pytestmark = [pytest.mark.backend, needs_data]

CLASSES = ("N", "A", "O", "~")
WINDOW = 3000
TRAIN_RECORDS = 300
EXPORT_ARGS = ["--calib-windows", "48", "--val-windows", "80", "--tflm-windows", "24", "--calibrator", "percentile",
               "--qat-epochs", "0", "--no-progress"]


def _cli(main, args) -> int:
    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code


@pytest.fixture(scope="session")
def cinc_train():
    """Windows [N, 3000] (model units, filtered as the runtime filters) and labels of the first records in
    name order (the exports split their own records by seeded order; overlap with these is harmless for
    fidelity tests)."""
    from ecgedge.models.specs import load_contract
    from ecgedge.quantize.byom import load_signal, signal_windows
    spec = load_contract(_contract_data("t"))
    labels = dict(line.strip().split(",") for line in (CINC / "REFERENCE.csv").read_text().splitlines() if line.strip())
    xs, ys = [], []
    for name in sorted(labels)[:TRAIN_RECORDS]:
        signal, _ = load_signal(CINC / f"{name}.hea", spec)
        if len(signal) >= WINDOW:
            w, _ = signal_windows(signal, spec)
            xs.append(w)
            ys += [CLASSES.index(labels[name])] * len(w)
    return np.concatenate(xs), np.array(ys)


def _contract_data(name):
    import tomllib
    return tomllib.loads(CONTRACT.format(name=name))


def _train(model, x, y, epochs=2, seed=0):
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    xt, yt = torch.from_numpy(x[:, None, :]), torch.from_numpy(y)
    weights = torch.tensor(1.0 / np.maximum(np.bincount(y, minlength=4), 1), dtype=torch.float32)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx], weight=weights / weights.sum()).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def family_files(tmp_path_factory, cinc_train):
    """{family: (model, .pt2 path, contract path)}, each trained two epochs on real windows."""
    folder = tmp_path_factory.mktemp("byom")
    x, y = cinc_train
    out = {}
    for name, cls in FAMILIES.items():
        model = _train(cls(), x, y)
        pt2 = folder / f"{name}.pt2"
        torch.export.save(torch.export.export(model, (torch.zeros(1, 1, WINDOW),)), pt2)
        contract = folder / f"{name}.toml"
        contract.write_text(CONTRACT.format(name=name))
        out[name] = (model, pt2, contract)
    return out


@pytest.fixture(scope="session")
def exports(tmp_path_factory, family_files):
    """Packages made on first use, shared by the tests that read them: {(family, target): folder}."""
    from ecgedge.tools.edge_export import main
    made = {}
    root = tmp_path_factory.mktemp("byom-dist")

    def get(name, target, source=None):
        key = (name, target, source)
        if key not in made:
            _, pt2, contract = family_files[name]
            out = root / f"{name}-{target}-{source or 'pt2'}"
            assert _cli(main, [str(source_file(name, source, pt2)), "--contract", str(contract), "--target", target,
                               "--data", str(CINC), "--out", str(out), *EXPORT_ARGS]) == 0
            made[key] = out
        return made[key]

    def source_file(name, source, pt2):
        if source != "onnx":
            return pt2
        from ecgedge.quantize import onnx_export
        path = root / f"{name}.onnx"
        onnx_export.export_float(family_files[name][0], WINDOW, path)
        return path

    return get


@pytest.mark.parametrize("family", list(FAMILIES))
def test_analyze_each_family(family, family_files, tmp_path):
    from ecgedge.tools.edge_analyze import main
    _, pt2, contract = family_files[family]
    out = tmp_path / "a.json"
    assert _cli(main, [str(pt2), "--contract", str(contract), "--target", "cortex-m7", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["model"] == family and rep["macs"] > 0 and rep["params"] > 0 and rep["full_int8"] is True
    for row in rep["layers"]:
        assert {"op", "output_shape", "macs", "param_bytes", "activation_bytes", "backends"} <= set(row)
        assert row["backends"]["tflite_micro"] is True and row["backends"]["onnxruntime"] is True
    assert sum(r["macs"] for r in rep["layers"]) > 0
    t = rep["targets"]["cortex-m7"]
    assert {"fits", "flash_bytes", "arena_bytes", "arena_bytes_tflm", "latency_ms_estimate", "unsupported_ops"} <= set(t)
    assert t["fits"] is True and t["arena_bytes_tflm"] > 0 and t["latency_ms_estimate"] > 0
    if t["unsupported_ops"]:       # our engine lacks an op: the analysis names it and the layer using it
        assert t["arena_bytes"] is None and all(u["op"] and u["layer"] for u in t["unsupported_ops"])
    else:
        assert 0 < t["arena_bytes"] <= t["arena_bytes_tflm"]


def _engine_bit_exact(pkg, n=8) -> float:
    """Our C engine (host build of the package's model) vs tflite-micro on real windows' int8 inputs."""
    from ecgedge.firmware_bridge.build import build_host
    from ecgedge.contract.quantization import quantize_input
    from ecgedge.contract.runners import open_int8_runner
    from ecgedge.quantize.byom import load_signal, signal_windows
    from ecgedge.models.specs import load_contract
    m = json.loads((pkg / "manifest.json").read_text())
    spec = load_contract(_contract_data("t"))
    x = np.concatenate([signal_windows(load_signal(CINC / f"A0{i:04d}.hea", spec)[0], spec)[0] for i in (2, 3, 5)])[:n]
    q = np.stack([quantize_input(w, m["input"]["tflite_scale"], m["input"]["tflite_zero_point"]) for w in x])
    exe = build_host(pkg / "model_int8.tflite", pkg.parent / f"{pkg.name}-host", "run")
    r = subprocess.run([str(exe)], input=q.tobytes(), capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-500:]
    got = np.frombuffer(r.stdout, np.int8).reshape(len(q), -1)
    return float(np.mean(np.all(got == open_int8_runner(pkg / "model_int8.tflite", "tflm").run(q), axis=1)))


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("target", ["cortex-m7", "rpi4"])
def test_export_each_family(family, target, exports):
    from ecgedge.contract.package import load_package
    from ecgedge.quantize.tflite_export import op_list
    pkg = exports(family, target)
    rep = json.loads((pkg / "report.json").read_text())
    assert rep["int8_only"] is True and rep["fits"] is True and rep["model"] == family
    assert "TRANSPOSE" not in op_list((pkg / "model_int8.tflite").read_bytes())
    # 80 windows, 48 calibration windows, models trained two epochs (close logits): the full-size run with
    # >= 1,000 windows is benchmarks/byom_bench.py; LiteRT and tflite-micro differ by a few LSB, not decisions
    assert rep["agreement_int8"] >= 0.85 and rep["agreement_tflm"] >= 0.85
    assert rep["validation"]["records"] > 0 and rep["labels"]["classes"] == list(CLASSES)
    cls = rep["classification"]["int8"]
    assert {"f1_N", "f1_A", "f1_O", "f1_~", "f1_challenge", "auroc_N"} <= set(cls)
    assert rep["label"] == "user" and "no clinical accuracy" in rep["notice"]
    load_package(pkg)
    if target == "rpi4":
        assert (pkg / "model_int8.onnx").is_file() and rep["agreement_onnx_int8"] >= 0.85
    elif rep["engine"]["runs_all_ops"]:
        assert _engine_bit_exact(pkg) == 1.0
    else:                          # our engine lacks an op: the report says which and where
        assert all(u["op"] and u["layer"] for u in rep["engine"]["unsupported_ops"])


@pytest.mark.parametrize("family", ["resnet1d", "inception"])
def test_export_from_onnx(family, exports):
    pkg = exports(family, "cortex-m7", "onnx")
    rep = json.loads((pkg / "report.json").read_text())
    assert rep["int8_only"] is True and rep["source"]["format"] == "onnx" and rep["agreement_int8"] >= 0.85
    # the ONNX road and the .pt2 road give the same INT8 model's decisions on the same windows
    twin = json.loads((exports(family, "cortex-m7") / "report.json").read_text())
    assert abs(twin["agreement_int8"] - rep["agreement_int8"]) <= 0.05


@pytest.mark.parametrize("family", ["tcn"])
def test_hil_bench_runs_a_user_model_on_qemu_against_its_own_float_model(family, exports, family_files, tmp_path):
    """A model the zoo does not have, from its .pt2, through `edge-hil run --device qemu://cortex-m7` on its
    package's validation records: the records' labels are read through the contract's classes ('~' stands
    for the output 'noisy'), the float reference is the user's own .pt2 (--checkpoint), no gate is skipped
    and the device is bit-exact with tflite-micro. (The 1,001-window run with every gate passing is in
    docs/byom.md; these models are trained two epochs, so the decision gates are checked for being measured.)"""
    from ecgedge.tools import edge_hil
    pkg = exports(family, "cortex-m7")
    _, pt2, _ = family_files[family]
    assert json.loads((pkg / "manifest.json").read_text())["class_labels"] == list(CLASSES)
    code = _cli(edge_hil.main, ["run", "--model", str(pkg), "--device", "qemu://cortex-m7", "--data", str(CINC),
                                "--records", str(pkg / "validation_records.txt"), "--windows", "24",
                                "--checkpoint", str(pt2), "--no-progress", "--report", str(tmp_path)])
    rep = json.loads((tmp_path / "hil_report.json").read_text())
    assert rep["float_reference"]["source"] == f"the user's float model {str(pt2)!r}" and rep["task"] == "multiclass"
    assert rep["windows"] >= 24 and rep["bit_exact_fraction"] == 1.0 and rep["sample_integrity_ok"] is True
    assert not [g["name"] for g in rep["gates"] if g["skipped"]]
    assert rep["agreement"] is not None and rep["f1_challenge_float"] is not None
    failed = {g["name"] for g in rep["gates"] if not g["passed"]}
    assert failed <= {"agreement", "auroc", "f1_challenge"} and (code == 0) == (not failed)


def test_pruning_and_distillation_to_a_tight_budget(family_files, tmp_path):
    """A MAC budget below the model's: torch-pruning cuts channels, the student is distilled from the
    user's float model on their windows (no labels), and the package fits."""
    from ecgedge.tools.edge_export import main
    model, pt2, contract = family_files["dsse"]
    from ecgedge.quantize.convert_graph import canonical, macs
    full = macs(canonical(model, WINDOW), WINDOW)
    latency = 0.6 * full * 2.5 / 480e6 * 1e3          # 60 % of its MACs on the cortex-m7 profile
    out = tmp_path / "pruned"
    assert _cli(main, [str(pt2), "--contract", str(contract), "--target", "cortex-m7", "--data", str(CINC),
                       "--out", str(out), "--latency-ms", f"{latency:.6f}", "--finetune-epochs", "2",
                       *EXPORT_ARGS]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["pruning"]["pruned"] is True and rep["macs_pruned"] <= rep["budget"]["macs"] < rep["macs_float"]
    assert rep["params_pruned"] < rep["params_float"] and rep["int8_only"] is True
    hist = rep["pruning"]["distillation"]["history"]
    assert hist["epochs"] and hist["best"]["val_loss"] <= hist["epochs"][0]["val_loss"]


def test_tflite_from_tensorflows_converter_is_packaged_as_it_is(tmp_path):
    """A Keras model (not from torch) converted to full INT8 by TensorFlow's own converter: no
    re-quantisation; validated, engine-checked, packaged; edge-analyze's arena is tflite-micro's smallest
    working arena and our planner's agrees with it (never larger)."""
    import keras
    import tensorflow as tf

    from ecgedge.quantize.analyze import analyze
    from ecgedge.contract.runners import smallest_arena, tflm_allocates
    from ecgedge.tools.edge_export import main
    inp = keras.Input(shape=(1, WINDOW, 1), batch_size=1)
    y = keras.layers.Conv2D(8, (1, 9), strides=(1, 4), padding="same", activation="relu")(inp)
    y = keras.layers.DepthwiseConv2D((1, 5), strides=(1, 2), padding="same", activation="relu")(y)
    y = keras.layers.Conv2D(12, (1, 1), activation="relu")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    out = keras.layers.Dense(4)(y)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)

    def rep_data():
        for _ in range(16):
            yield [rng.normal(size=(1, 1, WINDOW, 1)).astype(np.float32)]
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep_data
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    path = tmp_path / "keras_int8.tflite"
    path.write_bytes(conv.convert())
    contract = tmp_path / "k.toml"
    contract.write_text(CONTRACT.format(name="keras_net"))

    a = analyze(str(path), target="cortex-m7", contract=str(contract))
    t = a["targets"]["cortex-m7"]
    tfl = path.read_bytes()
    assert t["arena_bytes_tflm"] == smallest_arena(tfl) and tflm_allocates(tfl, t["arena_bytes_tflm"])
    assert not tflm_allocates(tfl, t["arena_bytes_tflm"] - 16)
    assert t["arena_bytes"] > 0 and not t["unsupported_ops"]
    # our planner over the reference lowering never needs more than tflite-micro; the optimised (dsp) lowering
    # adds im2col scratch, which on a model this small can exceed it (15,168 vs 11,136 B): reported as is
    from ecgedge.firmware_bridge.ops import lower
    from ecgedge.firmware_bridge.planner import plan_arena
    from ecgedge.firmware_bridge.tflite_model import load_model
    m = load_model(tfl)
    assert 0 < plan_arena(m, lower(m, fuse=False)).arena_bytes <= t["arena_bytes_tflm"]
    # per target, our arena is the one the target core's kernel path plans (what its firmware reserves and
    # what the export's RAM check reads): dsp on M4/M7/M33, Helium on M55
    from ecgedge.firmware_bridge.codegen import planned_arena
    every = analyze(str(path), all_targets=True, contract=str(contract))["targets"]
    assert every["cortex-m7"]["arena_bytes"] == planned_arena(tfl, "dsp") == t["arena_bytes"]
    assert every["cortex-m55"]["arena_bytes"] == planned_arena(tfl, "mve")
    assert every["rpi4"]["arena_bytes"] == t["arena_bytes"]     # not an MCU: the engine's figure, for reference

    out = tmp_path / "pkg"
    assert _cli(main, [str(path), "--contract", str(contract), "--target", "cortex-m7", "--data", str(CINC),
                       "--out", str(out), *EXPORT_ARGS]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert (out / "model_int8.tflite").read_bytes() == tfl                      # no re-quantisation
    assert not (out / "model.onnx").exists() and rep["calibrator"] is None
    assert rep["engine"]["host_check"]["bit_exact_fraction"] == 1.0
    assert rep["agreement_tflm"] >= 0.9 and "f1_challenge" in rep["classification"]["int8"]


# ------------------------------------------------------------------------------------------ bad input

def _bad(args, tmp_path, capsys, expect):
    from ecgedge.tools.edge_export import main
    out = tmp_path / "dist" / "pkg"
    capsys.readouterr()                      # only this command's output
    code = _cli(main, [*args, "--target", "cortex-m7", "--out", str(out), *EXPORT_ARGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    leftovers = list((tmp_path / "dist").iterdir()) if (tmp_path / "dist").exists() else []
    assert leftovers == []                      # no package and no half-written temporary folder


def test_bad_input_not_a_model(tmp_path, capsys, family_files):
    _, _, contract = family_files["mlp"]
    junk = tmp_path / "weights.pt2"
    junk.write_bytes(b"not a zip archive at all")
    _bad([str(junk), "--contract", str(contract)], tmp_path, capsys, "not a torch.export archive")
    txt = tmp_path / "model.txt"
    txt.write_text("hello")
    _bad([str(txt), "--contract", str(contract)], tmp_path, capsys, "expected a .pt2")


def test_bad_input_unsupported_module(tmp_path, capsys, family_files):
    _, _, contract = family_files["mlp"]
    m = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 9, stride=8), torch.nn.ELU(), torch.nn.AdaptiveAvgPool1d(1),
                            torch.nn.Flatten(), torch.nn.Linear(4, 4)).eval()
    p = tmp_path / "elu.pt2"
    torch.export.save(torch.export.export(m, (torch.zeros(1, 1, WINDOW),)), p)
    _bad([str(p), "--contract", str(contract)], tmp_path, capsys, "module '1' (ELU) uses aten.elu")


def test_bad_input_contract_disagrees_with_the_model(tmp_path, capsys, family_files):
    _, pt2, _ = family_files["mlp"]
    three = tmp_path / "three.toml"
    three.write_text(CONTRACT.format(name="x").rsplit("[[outputs]]", 1)[0].replace(
        'classes = ["N", "A", "O", "~"]', 'classes = ["N", "A", "O"]'))
    _bad([str(pt2), "--contract", str(three)], tmp_path, capsys, "lists 3 outputs (expected [1, 3])")
    short = tmp_path / "short.toml"
    short.write_text(CONTRACT.format(name="x").replace("window_samples = 3000", "window_samples = 2000"))
    _bad([str(pt2), "--contract", str(short)], tmp_path, capsys, "[1, 1, 2000] window")


def test_records_at_another_rate_are_resampled_and_too_short_ones_refused(tmp_path, capsys, family_files):
    from ecgedge.signals import ecg_simulate, save_record
    from ecgedge.tools.edge_export import main
    _, pt2, _ = family_files["mlp"]
    contract = tmp_path / "c.toml"
    contract.write_text(CONTRACT.format(name="mlp").split("[labels]")[0] +
                        CONTRACT.format(name="mlp").split('classes = ["N", "A", "O", "~"]\n')[1])
    rec = tmp_path / "rec250"
    rec.mkdir()
    for i in range(4):
        save_record(rec / f"r{i}", ecg_simulate(duration=25, sampling_rate=250, heart_rate=60 + 8 * i, seed=i), 250)
    out = tmp_path / "pkg"
    assert _cli(main, [str(pt2), "--contract", str(contract), "--target", "cortex-m7", "--data", str(rec),
                       "--out", str(out), *EXPORT_ARGS]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert any("250 Hz were resampled to the contract's 300 Hz" in n for n in rep["data_notes"])
    capsys.readouterr()                         # the successful export's own output
    short = tmp_path / "short"
    short.mkdir()
    for i in range(3):
        save_record(short / f"s{i}", ecg_simulate(duration=4, sampling_rate=300, seed=i), 300)
    _bad([str(pt2), "--contract", str(contract), "--data", str(short)], tmp_path, capsys,
         "no record holds one 3000-sample window")


def test_python_api_exports_a_live_module_and_runs_its_int8_model(tmp_path, family_files, cinc_train):
    import ecgedge
    from ecgedge.quantize.validate import run_int8
    model, _, contract = family_files["mlp"]
    pkg = ecgedge.export(model, str(contract), "cortex-m7", data=str(CINC), out=tmp_path / "api",
                         calib_windows=48, val_windows=60, tflm_windows=10, calibrator="percentile", qat_epochs=0)
    assert pkg.path == tmp_path / "api" and pkg.report["int8_only"] is True
    x = cinc_train[0][:5]
    got = pkg.run(x)
    assert got.shape == (5, 4)
    assert np.array_equal(got, run_int8((pkg.path / "model_int8.tflite").read_bytes(), x, "litert")[1])
    with torch.no_grad():
        ref = model(torch.from_numpy(x[:, None, :])).numpy()
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.8
    a = ecgedge.analyze(model, target="cortex-m7", contract=str(contract))
    assert a["macs"] == pkg.report["macs_float"]
