"""Record loaders and writers (WFDB, EDF, CSV, npy), resampling, bad inputs, a real CinC record."""

import json
from pathlib import Path

import numpy as np
import pytest

from ecgedge.errors import ConfigError, DataError
from ecgedge.signals import Record, ecg_peaks, ecg_simulate, load_record, resample, save_record

CINC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cinc2017"
if not CINC.exists():
    CINC = Path("/work/shared/data/cinc2017")

# Worst-case round-trip error per format (µV): 16-bit WFDB/EDF quantisation, CSV's 4 decimals.
TOLERANCE = {"wfdb": 0.05, "edf": 0.05, "csv": 1e-3, "npy": 0.0}


@pytest.fixture(scope="module")
def signal_250():
    return ecg_simulate(9.5, 250, heart_rate=70, noise=0.3, seed=1)


@pytest.mark.parametrize("fmt", ["wfdb", "edf", "csv", "npy"])
def test_round_trip(tmp_path, signal_250, fmt):
    path = save_record(tmp_path / "rec", signal_250, 250, fmt=fmt)
    rec = load_record(path)
    assert isinstance(rec, Record)
    assert rec.sampling_rate == 250.0
    assert rec.signal_uv.dtype == np.float64 and rec.signal_uv.shape == signal_250.shape
    assert np.max(np.abs(rec.signal_uv - signal_250)) <= TOLERANCE[fmt] + 1e-9
    assert rec.lead == "I"
    assert rec.source == str(path)


@pytest.mark.parametrize("fmt", ["wfdb", "edf", "csv", "npy"])
def test_round_trip_with_resampling_to_model_rate(tmp_path, signal_250, fmt):
    path = save_record(tmp_path / "rec", signal_250, 250, fmt=fmt)
    rec = load_record(path, sampling_rate=500)
    assert rec.sampling_rate == 500.0
    assert rec.signal_uv.size == 2 * signal_250.size
    assert rec.meta["native_sampling_rate"] == 250.0
    # Same beats, same heart rate after resampling.
    beats_native = ecg_peaks(signal_250, 250) / 250
    beats_500 = ecg_peaks(rec.signal_uv, 500) / 500
    assert len(beats_native) == len(beats_500)
    assert np.max(np.abs(beats_native - beats_500)) < 0.01


def test_wfdb_record_name_without_extension(tmp_path, signal_250):
    save_record(tmp_path / "abc", signal_250, 250, fmt="wfdb")
    assert load_record(tmp_path / "abc").signal_uv.size == signal_250.size
    assert load_record(tmp_path / "abc.hea").signal_uv.size == signal_250.size


def test_units_are_converted_to_microvolts(tmp_path):
    x_mv = np.sin(np.linspace(0, 20, 1000))  # ±1 mV
    (tmp_path / "mv.csv").write_text("time,ecg_mV\n" + "\n".join(f"{i / 100:.2f},{v:.6f}" for i, v in enumerate(x_mv)))
    rec = load_record(tmp_path / "mv.csv")
    assert rec.sampling_rate == pytest.approx(100.0)
    assert np.allclose(rec.signal_uv, 1000 * x_mv, atol=1e-3)
    np.save(tmp_path / "volts.npy", x_mv / 1000)
    (tmp_path / "volts.json").write_text(json.dumps({"sampling_rate": 100, "units": "V"}))
    assert np.allclose(load_record(tmp_path / "volts.npy").signal_uv, 1000 * x_mv)


def test_csv_single_column_needs_a_rate(tmp_path):
    (tmp_path / "one.csv").write_text("\n".join(str(v) for v in range(100)))
    with pytest.raises(DataError, match="sampling rate"):
        load_record(tmp_path / "one.csv")
    rec = load_record(tmp_path / "one.csv", sampling_rate=200)
    assert rec.sampling_rate == 200 and rec.meta["sampling_rate_assumed"]
    assert load_record(tmp_path / "one.csv", sampling_rate=200, source_rate=100).signal_uv.size == 200


def test_csv_time_column_without_header(tmp_path):
    rows = "\n".join(f"{i * 0.004:.3f},{np.sin(i / 10):.5f}" for i in range(500))
    (tmp_path / "t.csv").write_text(rows)
    rec = load_record(tmp_path / "t.csv")
    assert rec.sampling_rate == pytest.approx(250.0)
    assert rec.signal_uv.size == 500


def test_npy_without_sidecar_needs_a_rate(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(100))
    with pytest.raises(DataError, match="sampling"):
        load_record(tmp_path / "x.npy")


@pytest.mark.parametrize("name,content,match", [
    ("missing.edf", None, "not found"),
    ("missing", None, "no such file"),
    ("rec.xyz", b"1,2,3", "unknown extension"),
    ("bad.csv", b"time,ecg\n0,1\n0.1,abc\n", "not numeric"),
    ("ragged.csv", b"1,2\n3\n", "columns"),
    ("empty.csv", b"# nothing\n", "no numeric rows"),
    ("garbage.edf", b"not an edf file at all" * 20, "EDF"),
    ("garbage.npy", b"nope", "npy"),
    ("nohea.dat", b"\x00\x01", "header"),
])
def test_bad_inputs_raise_data_error_naming_the_path(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        load_record(path, sampling_rate=500)
    assert name.split(".")[0] in str(info.value)


def test_npy_wrong_shape(tmp_path):
    np.save(tmp_path / "cube.npy", np.zeros((4, 5, 6)))
    with pytest.raises(DataError, match="shape"):
        load_record(tmp_path / "cube.npy", sampling_rate=500)


def test_save_record_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="format"):
        save_record(tmp_path / "x", np.zeros(10), 500, fmt="mat")
    with pytest.raises(DataError):
        save_record(tmp_path / "x", np.zeros((2, 10)), 500, fmt="npy")
    with pytest.raises(DataError):
        save_record(tmp_path / "x", np.array([1.0, np.nan]), 500, fmt="npy")


def test_resample_preserves_a_sine_and_length():
    t = np.arange(3000) / 300
    x = np.sin(2 * np.pi * 5 * t)
    y = resample(x, 300, 500)
    assert y.size == 5000
    t5 = np.arange(5000) / 500
    inner = slice(200, -200)
    assert np.max(np.abs(y[inner] - np.sin(2 * np.pi * 5 * t5)[inner])) < 1e-2
    assert np.array_equal(resample(x, 300, 300), x)
    with pytest.raises(ConfigError):
        resample(x, 0, 500)


@pytest.mark.skipif(not (CINC / "A00001.hea").exists(), reason="CinC 2017 data not present on this machine")
def test_real_cinc2017_record_loads_in_microvolts_at_model_rate():
    rec = load_record(CINC / "A00001", sampling_rate=500)
    assert rec.meta["native_sampling_rate"] == 300.0
    assert rec.meta["units"] == "mV"
    assert rec.sampling_rate == 500.0
    assert rec.signal_uv.size == 15000  # 30 s
    peaks = ecg_peaks(rec.signal_uv, 500)
    heart_rate = 60 * 500 / np.median(np.diff(peaks))
    assert 40 < heart_rate < 150
    # A handheld lead-I-like ECG: QRS amplitudes of hundreds of µV to a few mV.
    assert 200 < np.median(np.abs(rec.signal_uv[peaks])) < 5000


def test_multichannel_wfdb_picks_lead_i_and_converts_its_units(tmp_path):
    import wfdb

    n = 1000
    lead_ii_mv = np.sin(np.linspace(0, 30, n))
    lead_i_uv = 400.0 * np.cos(np.linspace(0, 30, n))
    wfdb.wrsamp("two", fs=250, units=["mV", "uV"], sig_name=["II", "I"],
                p_signal=np.column_stack([lead_ii_mv, lead_i_uv]), fmt=["16", "16"], write_dir=str(tmp_path))
    rec = load_record(tmp_path / "two.hea")
    assert rec.lead == "I" and rec.meta["channels"] == ["II", "I"]
    assert np.allclose(rec.signal_uv, lead_i_uv, atol=0.1)


def test_multichannel_edf_without_lead_i_takes_the_first_channel_in_microvolts(tmp_path):
    import pyedflib

    n = 2000
    first_mv = 0.8 * np.sin(np.linspace(0, 40, n))
    path = tmp_path / "two.edf"
    writer = pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_EDFPLUS)
    headers = [{"label": name, "dimension": "mV", "sample_frequency": 200, "physical_max": 2.0,
                "physical_min": -2.0, "digital_max": 32767, "digital_min": -32768, "transducer": "",
                "prefilter": ""} for name in ("ECG A", "ECG B")]
    writer.setSignalHeaders(headers)
    writer.writeSamples([first_mv, -first_mv])
    writer.close()
    rec = load_record(path)
    assert rec.lead == "ECG A" and rec.sampling_rate == 200.0
    assert np.allclose(rec.signal_uv, 1000 * first_mv, atol=0.2)


def test_unknown_physical_unit_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(100))
    (tmp_path / "x.json").write_text(json.dumps({"sampling_rate": 100, "units": "mmHg"}))
    with pytest.raises(DataError, match="mmHg"):
        load_record(tmp_path / "x.npy")


def test_a_rate_outside_what_a_waveform_has_is_refused_before_resampling(tmp_path):
    """Two CSV rows 300,009 s apart read as 3.3e-6 Hz; resampled to 500 Hz that asked for ~3e8 samples (the
    loader fuzzer's out-of-memory). Refused with the rate named, at once; the range's ends still load."""
    path = tmp_path / "far.csv"
    path.write_text("time_s,I\n0,0.1\n0300009,-0.3\n")
    with pytest.raises(DataError, match=r"sampling rate 3\.33\d* ?e-06 Hz is outside 10-100000 Hz"):
        load_record(path, sampling_rate=500)
    for rate, n in ((10.0, 50_000), (100_000.0, 5)):  # 1,000 samples at each end of the range
        path.write_text(f"# sampling_rate={rate}\n" + "\n".join(["1.0"] * 1000) + "\n")
        rec = load_record(path, sampling_rate=500)
        assert rec.meta["native_sampling_rate"] == rate and rec.sampling_rate == 500 and rec.signal_uv.size == n
