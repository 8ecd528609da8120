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
    # the bench on the same package: --data without --records takes the package's validation records
    from ecgedge.hil_tests.bench import BenchConfig, run_bench
    outcome = run_bench(BenchConfig(model_dir=out, device_url="host", windows=None, data_dir=CINC,
                                    report_dir=tmp_path / "hil", checkpoint=ckpt, integrity=False, progress=False))
    hil = json.loads((tmp_path / "hil" / "hil_report.json").read_text())
    assert hil["bit_exact_fraction"] == 1.0
    for key in ("metrics_float", "metrics_device"):
        m = hil[key]
        assert m["records"] == len(val_names) and set(m) >= {"f1_challenge", "f1_N", "f1_A", "f1_O", "auroc_A"}
    assert outcome.report is not None


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
