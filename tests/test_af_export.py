"""af_lead1 through edge-export on real records (PhysioNet/CinC 2017, Clifford et al. 2017): calibration on
training records only, validation on the model card's validation records, record-level metrics."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ecgedge.models.af_lead1 import CLASSES

sys.path.insert(0, str(Path(__file__).parent))
from af_helpers import CINC, SPEC, needs_data  # noqa: E402


def _validation_names(per_class: int = 3) -> list[str]:
    from ecgedge.models.train_af import read_labels, stratified_split
    labels = read_labels(CINC, CLASSES)
    names = sorted(labels)
    _, va = stratified_split(np.array([labels[n] for n in names]), 0.2, 0)
    val = [names[i] for i in va]
    return [n for c in range(len(CLASSES)) for n in [v for v in val if labels[v] == c][:per_class]]


@needs_data
def test_export_datasets_keep_validation_records_apart():
    from ecgedge.models.train_af import export_datasets

    val_names = _validation_names()
    d = export_datasets(SPEC, CINC, calib_windows=20, val_windows=1000, card={"validation_records": val_names},
                        select_windows=10, finetune_windows=60)
    assert not set(d["calibration_records"]) & set(val_names)
    ft = d["finetune"]
    assert ft["x"].shape == (60, 1500) and ft["y"].shape == (60, len(CLASSES))
    np.testing.assert_array_equal(ft["x"][:20], d["calibration"]["x"])        # the calibration windows first
    assert len(d["finetune_records"]) == 60 and set(d["calibration_records"]) <= set(d["finetune_records"])
    assert not set(d["finetune_records"]) & (set(val_names) | set(d["selection_records"]))
    assert not set(d["selection_records"]) & set(val_names)
    assert not set(d["selection_records"]) & set(d["calibration_records"])
    assert d["calibration"]["x"].shape == (20, 1500) and d["selection"]["x"].shape == (10, 1500)
    assert d["validation_records"] == val_names                   # all of them: 1000 windows is more than 12 records
    v = d["validation"]
    assert v["x"].shape[0] == len(v["groups"]) == len(v["class"]) >= len(val_names)
    for i, c in enumerate(CLASSES):
        np.testing.assert_array_equal(d["truth"][f"logit_{c}"], v["class"] == i)
    perfect = np.eye(len(CLASSES))[v["class"]] * 10.0             # logits that name the true class
    m = d["record_metrics"](perfect)
    assert m["f1_challenge"] == 1.0 and m["records"] == len(val_names)
    assert float(np.abs(v["x"]).max()) < 40.0                     # model units are mV


@pytest.mark.backend
@needs_data
def test_edge_export_af_lead1_on_real_records(tmp_path):
    import torch

    from ecgedge.models.zoo import build_model
    from ecgedge.tools.edge_export import main

    torch.manual_seed(0)
    model = build_model("af_lead1", "tiny")
    ckpt = tmp_path / "af_tiny.pt"
    val_names = _validation_names()
    torch.save({"model": "af_lead1", "preset": "tiny", "arch": model.ecgedge_arch, "state_dict": model.state_dict(),
                "demo": False, "card": {"validation_records": val_names}}, ckpt)
    out = tmp_path / "af_lead1-cortex-m7"
    with pytest.raises(SystemExit) as ex:
        main(["af_lead1", "--target", "cortex-m7", "--checkpoint", str(ckpt), "--data", str(CINC), "--out", str(out),
              "--calib-windows", "16", "--val-windows", "300", "--calibrator", "minmax", "--finetune-windows", "48",
              "--qat-epochs", "1", "--no-progress"])
    assert ex.value.code == 0
    rep = json.loads((out / "report.json").read_text())
    man = json.loads((out / "manifest.json").read_text())
    assert rep["int8_only"] and rep["fits"]
    assert man["task"] == "multiclass" == SPEC.task
    assert rep["budget"]["flash_bytes"] == 256 * 1024 and rep["budget"]["ram_bytes"] == 128 * 1024  # the spec's cap
    assert "training records" in rep["calibration"]["source"] and rep["validation"]["records"] == len(val_names)
    # the QAT epochs ran on windows of real training records (none of them validation records)
    distil = rep["pruning"]["distillation"]
    assert distil["train_windows"] == 48 and "32 windows at seeded positions of 32 training records" in distil["train_source"]
    assert [e["phase"] for e in distil["history"]["epochs"]] == ["float", "qat", "qat"]
    lo, hi = rep["input_range"]["min"], rep["input_range"]["max"]            # the chosen input range is the model's
    assert man["input"]["tflite_scale"] == pytest.approx((max(hi, 0) - min(lo, 0)) / 255, rel=1e-5)
    for stage in ("float", "int8", "int8_tflm"):
        m = rep["classification"][stage]
        assert m["records"] == len(val_names) and set(m) >= {"f1_challenge", "f1_N", "f1_A", "f1_O", "auroc_A"}
    assert (out / "validation_records.txt").read_text().split() == val_names
    assert man["validation_records"] == "validation_records.txt" and "validation_records.txt" in man["artifacts"]
    # the bench on the same package with the package's own record list (--records validation_records.txt)
    from ecgedge.hil_tests.bench import BenchConfig, run_bench
    records = (out / "validation_records.txt").read_text().split()
    outcome = run_bench(BenchConfig(model_dir=out, device_url="host", windows=None, data_dir=CINC, records=records,
                                    report_dir=tmp_path / "hil", checkpoint=ckpt, integrity=False, progress=False))
    hil = json.loads((tmp_path / "hil" / "hil_report.json").read_text())
    assert hil["bit_exact_fraction"] == 1.0
    for key in ("metrics_float", "metrics_device"):
        m = hil[key]
        assert m["records"] == len(val_names) and set(m) >= {"f1_challenge", "f1_N", "f1_A", "f1_O", "auroc_A"}
    assert outcome.report is not None
    # another folder of the same format (none of its records is in the package's list): --data without
    # --records takes every labelled record there
    other = tmp_path / "other"
    other.mkdir()
    labels = (CINC / "REFERENCE.csv").read_text().splitlines()
    picked = [row for row in labels if row.split(",")[0] not in set(val_names)][:5]
    for row in picked:
        for ext in (".hea", ".mat"):
            (other / (row.split(",")[0] + ext)).symlink_to(CINC / (row.split(",")[0] + ext))
    (other / "REFERENCE.csv").write_text("\n".join(picked) + "\n")
    run_bench(BenchConfig(model_dir=out, device_url="host", windows=None, data_dir=other, report_dir=tmp_path / "hil2",
                          checkpoint=ckpt, integrity=False, progress=False))
    hil2 = json.loads((tmp_path / "hil2" / "hil_report.json").read_text())
    assert hil2["metrics_device"]["records"] == 5 and hil2["bit_exact_fraction"] == 1.0


@pytest.mark.backend
@needs_data
def test_cortex_m4_gets_a_smaller_channel_pruned_variant_of_the_shipped_model(tmp_path):
    """The shipped (ungrouped) af_lead1 is inside the cortex-m7 cap as it is; for cortex-m4 the spec's cap
    (half the MACs, 160 KB) makes the export prune single channels and distil on real training records."""
    from ecgedge.models.af_lead1 import TARGET_CAPS
    from ecgedge.tools.edge_export import main

    out = tmp_path / "af_lead1-cortex-m4"
    with pytest.raises(SystemExit) as ex:
        main(["af_lead1", "--target", "cortex-m4", "--data", str(CINC), "--out", str(out), "--calib-windows", "64",
              "--val-windows", "200", "--finetune-windows", "256", "--finetune-epochs", "1", "--qat-epochs", "0",
              "--no-progress"])
    assert ex.value.code == 0
    rep = json.loads((out / "report.json").read_text())
    cap = TARGET_CAPS["cortex-m4"]
    assert rep["int8_only"] and rep["fits"] and rep["pruning"]["pruned"]
    assert rep["macs_pruned"] <= cap["macs"] < rep["macs_float"] and rep["params_pruned"] < rep["params_float"]
    assert rep["flash_bytes"] <= cap["flash_bytes"] and rep["arena_bytes"] <= cap["ram_bytes"]
    widths = rep["pruning"]["widths_after"].values()
    assert all(w["groups"] == 1 for w in widths)                     # still ungrouped: channels went, not groups
    before = rep["pruning"]["widths_before"]
    assert any(w["middle"] < before[k]["middle"] for k, w in rep["pruning"]["widths_after"].items())
    assert rep["classification"]["int8"]["records"] >= 10


def test_real_data_checkpoint_without_windows_or_data_is_refused(tmp_path, capsys):
    """A checkpoint whose card says real data, with no calibration windows beside it and no --data: one
    line naming what is missing, exit 2, no package (never generated ECG)."""
    import torch

    from ecgedge.models.zoo import build_model
    from ecgedge.tools.edge_export import main

    model = build_model("af_lead1", "tiny")
    ckpt = tmp_path / "af_real.pt"
    torch.save({"model": "af_lead1", "preset": "tiny", "arch": model.ecgedge_arch, "state_dict": model.state_dict(),
                "demo": False, "card": {"demo": False, "validation_records": ["A00001"]}}, ckpt)
    out = tmp_path / "pkg"
    with pytest.raises(SystemExit) as ex:
        main(["af_lead1", "--target", "cortex-m7", "--checkpoint", str(ckpt), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert ex.value.code == 2 and len(err.splitlines()) == 1
    assert "af_real.calibration.npz" in err and "--data" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".pkg*"))


def test_shipped_weights_carry_real_calibration_windows():
    """The shipped real-data weights come with int16 windows of their own training records, the data's
    licence and citations next to them; the export reads them as calibration and selection windows."""
    from ecgedge.models.af_data import published_split
    from ecgedge.models.af_export import calibration_path, shipped_datasets

    ckpt = SPEC.weights_path()
    path = calibration_path(ckpt)
    assert path.name == "af_lead1.calibration.npz" and path.stat().st_size < 1_500_000
    z = np.load(path)
    assert z["x_uv"].dtype == np.int16 and z["x_uv"].shape[1] == SPEC.input.window_samples
    assert 200 <= len(z["x_uv"]) <= 1000
    card = json.loads(ckpt.with_name("af_lead1.card.json").read_text())
    lists = published_split()
    names = set(z["records"].tolist())
    assert not names & set(card["validation_records"]) and names <= set(lists["training"])
    assert sorted(names) == lists["calibration"] == sorted(card["calibration_windows"]["records"])
    assert np.bincount(z["labels"], minlength=4).min() > 0                 # every class is represented
    readme = path.with_name("af_lead1.calibration.README.md").read_text()
    assert "ODC-By 1.0" in readme and "Clifford" in readme and "Goldberger" in readme
    d = shipped_datasets(SPEC, ckpt)
    n_sel = len(d["selection"]["x"])
    assert len(d["calibration"]["x"]) + n_sel == len(z["x_uv"]) and 50 <= n_sel <= 200
    np.testing.assert_allclose(d["calibration"]["x"][0], z["x_uv"][0] / 1000.0)    # model units are mV
    assert not set(d["calibration_records"]) & set(d["selection_records"])


@needs_data
def test_shipped_calibration_windows_are_the_records_as_the_contract_filters_them():
    from ecgedge.models.af_data import load_records
    from ecgedge.models.af_export import calibration_path

    z = np.load(calibration_path(SPEC.weights_path()))
    pick = [0, 1, len(z["records"]) - 1]
    rs = load_records(CINC, SPEC, names=[str(z["records"][i]) for i in pick], use_cache=False, progress=False)
    for j, i in enumerate(pick):
        rec = np.pad(rs.record(j), (0, max(0, 1500 - len(rs.record(j)))))
        s = int(z["starts"][i])
        np.testing.assert_allclose(z["x_uv"][i], rec[s:s + 1500], atol=0.51)
        assert CLASSES[int(z["labels"][i])] == CLASSES[int(rs.labels[j])]
