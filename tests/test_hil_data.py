"""The bench on recorded data (--data DIR of records + labels CSV), on the host device: real loaders,
resampling, causal filtering, record-level task metrics for a multi-class model."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hil_helpers import keras_float_fn, make_test_package  # noqa: E402

from ecgedge.hil_tests.bench import BenchConfig, run_bench  # noqa: E402
from ecgedge.hil_tests.evalset import data_eval_set  # noqa: E402
from ecgedge.signals import ecg_simulate, save_record  # noqa: E402
from ecgedge.tools import edge_hil  # noqa: E402


@pytest.fixture(scope="session")
def data_package(tmp_path_factory):
    return make_test_package(tmp_path_factory.mktemp("hil_data") / "hil_testnet-cortex-m7")


def _records(folder: Path, labels: list[str], fmt: str, rate: int = 250, seconds: float = 2.5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, lab in enumerate(labels):
        k = float(lab) if lab.replace(".", "").isdigit() else 4.5
        x = ecg_simulate(duration=seconds, sampling_rate=rate, heart_rate=60 + 5 * i, k_mmol=k, seed=i)
        save_record(folder / f"R{i:03d}", x, rate, fmt=fmt)
        rows.append(f"R{i:03d},{lab}")
    (folder / "REFERENCE.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_data_dir_with_potassium_labels_runs_on_host(data_package, tmp_path):
    pkg, _ = data_package
    data = _records(tmp_path / "wfdb", ["4.0", "6.5", "5.0", "7.0"], "wfdb")
    with pytest.raises(SystemExit) as e:
        edge_hil.main(["run", "--model", str(pkg), "--device", "host", "--data", str(data), "--no-progress",
                       "--report", str(tmp_path / "r")]) or sys.exit(0)
    assert e.value.code == 0
    rep = json.loads((tmp_path / "r" / "hil_report.json").read_text())
    # 2.5 s at 250 Hz -> 2.5 s at 500 Hz -> two whole 1 s windows per record
    assert rep["windows"] == 8 and rep["bit_exact_fraction"] == 1.0
    assert "records from" in rep["windows_source"]
    w = json.loads((tmp_path / "r" / "windows.json").read_text())
    assert sorted(set(i.split("/")[0] for i in w["ids"])) == ["R000", "R001", "R002", "R003"]
    assert sorted(set(w["k_true"])) == [4.0, 5.0, 6.5, 7.0]
    assert w["labels"]["p_k_gt_5_5"].count(True) == 4


def test_multiclass_model_gets_record_level_task_metrics(data_package, tmp_path):
    pkg, keras_model = data_package
    mc = tmp_path / "af_like"
    shutil.copytree(pkg, mc)
    man = json.loads((mc / "manifest.json").read_text())
    man["task"] = "multiclass"
    for o, name in zip(man["outputs"], ["p_N", "p_A", "p_O"]):
        o.update(name=name, kind="logit", threshold=None)
    (mc / "manifest.json").write_text(json.dumps(man))
    data = _records(tmp_path / "csv", ["N", "A", "O", "N", "A", "O"], "csv", rate=300, seconds=2.2)
    es = data_eval_set(data, man, None)
    assert es.classes == ["N", "A", "O"] and len(es) == 12 and list(es.class_true[:2]) == [0, 0]
    with pytest.raises(Exception, match="not one of the model's classes"):
        bad = _records(tmp_path / "bad", ["N", "X"], "csv", rate=300, seconds=2.2)
        data_eval_set(bad, man, None)
    out = run_bench(BenchConfig(model_dir=mc, device_url="host", windows=None, data_dir=data,
                                report_dir=tmp_path / "r", progress=False), float_fn=keras_float_fn(keras_model))
    rep = out.report
    for key in ("metrics_float", "metrics_device"):
        m = rep[key]
        for k in ("f1_challenge", "f1_N", "f1_A", "f1_O", "auroc_A", "records"):
            assert k in m, (key, k)
        assert m["records"] == 6
        assert m["f1_challenge"] == pytest.approx(np.mean([m["f1_N"], m["f1_A"], m["f1_O"]]))
    assert rep["bit_exact_fraction"] == 1.0 and rep["agreement"] is not None


def test_missing_labels_is_a_data_error(data_package, tmp_path, capsys):
    pkg, _ = data_package
    data = _records(tmp_path / "d", ["4.0"], "wfdb")
    (data / "REFERENCE.csv").unlink()
    with pytest.raises(SystemExit) as e:
        edge_hil.main(["run", "--model", str(pkg), "--device", "host", "--data", str(data), "--no-progress",
                       "--report", str(tmp_path / "r")])
    assert e.value.code == 2 and "no labels" in capsys.readouterr().err
