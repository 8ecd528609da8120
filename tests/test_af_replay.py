"""A real PhysioNet/CinC 2017 record (Clifford et al. 2017) replayed by edge-sim over a real pty into edge-run:
the live per-window INT8 results equal offline inference on the record read from its WFDB files."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ecgedge.models.af_lead1 import CLASSES

sys.path.insert(0, str(Path(__file__).parent))
from af_helpers import CINC, SPEC, needs_data  # noqa: E402

BIN = Path(sys.executable).parent


def _record(label: str, seconds: int = 30) -> str:
    """The first validation record of the shipped card with this label and exactly `seconds` of signal."""
    import wfdb

    from ecgedge.models.train_af import read_labels

    card = json.loads(SPEC.weights_path().with_name("af_lead1.card.json").read_text())
    labels = read_labels(CINC, CLASSES)
    for name in card["validation_records"]:
        if labels[name] == CLASSES.index(label):
            h = wfdb.rdheader(str(CINC / name))
            if h.sig_len == seconds * h.fs:
                return name
    raise AssertionError(f"no {seconds} s validation record labelled {label}")


@pytest.fixture(scope="module")
def af_package(tmp_path_factory):
    """The shipped af_lead1 weights exported for cortex-m7 as they are (few calibration windows, no QAT epochs:
    a quick package whose float model is the shipped one)."""
    out = tmp_path_factory.mktemp("af_pkg") / "af_lead1-cortex-m7"
    r = subprocess.run([str(BIN / "edge-export"), "af_lead1", "--target", "cortex-m7", "--data", str(CINC),
                        "--out", str(out), "--calib-windows", "32", "--val-windows", "30", "--calibrator", "minmax",
                        "--qat-epochs", "0", "--no-progress"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def _offline_int8(package_dir: Path, record: str, adc_counts: bool) -> np.ndarray:
    """INT8 outputs per non-overlapping window computed from the record file. adc_counts: the record as the
    device digitises it (whole µV, 16-bit); else the float µV of the training/validation path."""
    from ecgedge.contract.quantization import window_int8
    from ecgedge.contract.runners import LiteRtRunner
    from ecgedge.contract.package import load_package
    from ecgedge.models.train_af import record_windows
    from ecgedge.signals import StreamingFilter, load_record

    pkg = load_package(package_dir)
    engine = LiteRtRunner(pkg.file("model_int8.tflite"))
    uv = load_record(CINC / f"{record}.hea", sampling_rate=SPEC.input.sampling_rate_hz).signal_uv
    if adc_counts:
        uv = np.clip(np.round(uv), -32768, 32767)
    filtered = StreamingFilter(SPEC.input.sampling_rate_hz, SPEC.input.preprocessing).process(uv)
    wins = record_windows(filtered, SPEC.input.window_samples)
    return np.array([engine.run_one(window_int8(w, pkg.input)) for w in wins], np.int64)


def _live_int8(package_dir: Path, record: str, tmp: Path, fs: int) -> list[dict]:
    sim_out = tmp / f"sim-{fs}.out"
    with open(sim_out, "w") as log:
        sim = subprocess.Popen([str(BIN / "edge-sim"), "serve", "--pty", "--model", "af_lead1", "--fs", str(fs),
                                "--replay", str(CINC / f"{record}.hea"), "--speed", "40"],
                               stdout=log, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if "/dev/pts/" in sim_out.read_text():
                break
            assert sim.poll() is None, "edge-sim exited"
            time.sleep(0.1)
        pty = sim_out.read_text().split()[0]
        out = tmp / f"run-{fs}"
        r = subprocess.run([str(BIN / "edge-run"), "--model", str(package_dir), "--source", f"serial://{pty}",
                            "--out", str(out), "--quiet", "--duration", "30", "--no-record"],
                           capture_output=True, text=True, timeout=300)
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.mark.backend
@needs_data
@pytest.mark.parametrize("label", ["N", "A"])
def test_replayed_record_over_pty_gives_offline_results(af_package, tmp_path, label):
    record = _record(label)
    device_view = _offline_int8(af_package, record, adc_counts=True)
    float_view = _offline_int8(af_package, record, adc_counts=False)
    assert device_view.shape == float_view.shape == (3, len(CLASSES))
    # the device samples at the contract's rate: the runtime then resamples nothing, like the offline path
    live = _live_int8(af_package, record, tmp_path, fs=SPEC.input.sampling_rate_hz)
    assert [r["window_start_sample"] for r in live[:3]] == [0, 1500, 3000]
    ran = [(i, r) for i, r in enumerate(live[:3]) if not r["skipped"]]
    assert ran, "the signal-quality gate skipped every window of a clean record"
    for i, r in ran:
        got = np.array(r["raw_int8"], np.int64)
        np.testing.assert_array_equal(got, device_view[i])        # bit-exact with the digitised record
        # the float-µV path of training differs by the ADC's whole-µV rounding only: a few steps, same class
        assert np.max(np.abs(got - float_view[i])) <= 8 and np.argmax(got) == np.argmax(float_view[i])
