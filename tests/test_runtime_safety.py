"""Nothing lost, ever: edge-run never overwrites or truncates a session (a new folder per session, an --out that
holds one refused byte for byte, --resume appends after a marker), creates nothing before its source connects,
and refuses bad numbers at once (exit 2, one line naming the flag, no traceback). edge-sim prints its pty path
only once the device is ready, and replays only the channel it streams."""

import asyncio
import hashlib
import importlib.util
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ecgedge.device_sim.device import SimConfig, ground_truth
from ecgedge.edge_runtime.inference import HostInference
from ecgedge.contract.package import load_package
from ecgedge.edge_runtime.processing import offline_results
from ecgedge.edge_runtime.recorder import read_partial
from ecgedge.edge_runtime.session import Session, SessionOptions
from ecgedge.errors import ConfigError

_spec = importlib.util.spec_from_file_location("runtime_support", Path(__file__).with_name("runtime_support.py"))
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

SIM = "sim://pocket_k?speed=100&seed=4"


@pytest.fixture(scope="module")
def pkg_dir():
    return support.build_test_package()


def edge_run(pkg, *args, cwd=None, timeout=120):
    return subprocess.run([support.venv_bin("edge-run"), "--model", str(pkg), "--quiet", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def tree_hashes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: a connect is refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_out_that_holds_a_session_is_refused_and_kept_byte_for_byte(pkg_dir, tmp_path):
    out = tmp_path / "s"
    r = edge_run(pkg_dir, "--source", SIM, "--duration", "12", "--out", out)
    assert r.returncode == 0, r.stderr
    first = tree_hashes(out)
    assert {"results.jsonl", "summary.json", "raw.i16", "raw.json", "record.hea", "record.dat"} <= set(first)
    for source in (f"socket://127.0.0.1:{closed_port()}", SIM):  # a failing and a working source
        r = edge_run(pkg_dir, "--source", source, "--duration", "6", "--out", out)
        assert r.returncode == 2, r.stdout + r.stderr
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --out") and "already holds a session" in err[0]
        assert "--resume" in err[0] and "Traceback" not in r.stderr
        assert tree_hashes(out) == first


def test_library_session_refuses_an_existing_session_too(pkg_dir, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "raw.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a session"):
        Session(load_package(pkg_dir), SessionOptions(source=SIM, out_dir=tmp_path / "s"))
    assert (tmp_path / "s" / "raw.json").read_text() == "{}"


def test_failed_connect_creates_nothing(pkg_dir, tmp_path):
    r = edge_run(pkg_dir, "--source", f"socket://127.0.0.1:{closed_port()}", "--duration", "5",
                 "--out", tmp_path / "new" / "s", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = edge_run(pkg_dir, "--source", f"socket://127.0.0.1:{closed_port()}", "--duration", "5", cwd=tmp_path)
    assert r.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder, no sessions/, no file


def test_default_out_is_a_new_folder_per_session(pkg_dir, tmp_path):
    for _ in range(2):
        r = edge_run(pkg_dir, "--source", SIM, "--duration", "3", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    folders = sorted((tmp_path / "sessions").iterdir())
    assert len(folders) == 2 and all(f.name.endswith("-pocket_k") for f in folders)
    for f in folders:
        s = json.loads((f / "summary.json").read_text())
        assert s["out"] == f"sessions/{f.name}" and s["samples_received"] == 1500
    assert "session folder: sessions/" in r.stdout


def test_resume_appends_after_a_marker_and_keeps_everything(pkg_dir, tmp_path):
    """A session resumed twice: the earlier samples are byte-identical, each run's samples are the device's, the
    resume markers say where; results and summaries of the earlier runs are all kept; offline inference over
    the recording (split at the markers) gives the live windows."""
    out = tmp_path / "s"
    assert edge_run(pkg_dir, "--source", SIM, "--duration", "12", "--out", out).returncode == 0
    raw1 = (out / "raw.i16").read_bytes()
    results1 = (out / "results.jsonl").read_text()
    for _ in range(2):
        r = edge_run(pkg_dir, "--source", SIM, "--duration", "10", "--out", out, "--resume")
        assert r.returncode == 0, r.stderr
    assert (out / "raw.i16").read_bytes()[:len(raw1)] == raw1
    assert (out / "results.jsonl").read_text().startswith(results1)
    rec = read_partial(out)
    assert rec.counts.size == 6000 + 5000 + 5000 and rec.closed
    assert [r["at_sample"] for r in rec.resumes] == [6000, 11000] and all(r["after_s"] >= 0 for r in rec.resumes)
    truth = ground_truth(SimConfig.from_query("pocket_k", {"speed": "100", "seed": "4"}), 6000)
    for a, b in ((0, 6000), (6000, 11000), (11000, 16000)):
        np.testing.assert_array_equal(rec.counts[a:b], truth[:b - a])
    s = json.loads((out / "summary.json").read_text())
    assert s["resumed"] and (s["start_sample"], s["end_sample"]) == (11000, 16000)
    assert [(e["start_sample"], e["end_sample"]) for e in s["earlier_runs"]] == [(0, 6000), (6000, 11000)]
    live = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    pkg = load_package(pkg_dir)
    engine = HostInference(pkg)
    off = offline_results(rec, pkg, lambda w: engine.infer(w.filtered))
    assert [w["window_start_sample"] for w in live] == [w["window_start_sample"] for w in off] == [0, 6000, 11000]
    assert [w["raw_int8"] for w in live] == [w.get("raw_int8") for w in off]


def test_resume_after_a_kill_trims_the_unflushed_tail_and_the_torn_line(pkg_dir, tmp_path):
    out = tmp_path / "s"
    assert edge_run(pkg_dir, "--source", SIM, "--duration", "12", "--out", out).returncode == 0
    # what a SIGKILL between flushes leaves: samples after the last flush, half a results line, no new summary
    with open(out / "raw.i16", "ab") as f:
        f.write(np.arange(300, dtype="<i2").tobytes())
    with open(out / "results.jsonl", "a") as f:
        f.write('{"window_start_sample": 6000, "sco')
    flushed = (out / "raw.i16").read_bytes()[:12000]
    r = edge_run(pkg_dir, "--source", SIM, "--duration", "10", "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert (out / "raw.i16").read_bytes()[:12000] == flushed
    rec = read_partial(out)
    assert rec.counts.size == 11000 and [m["at_sample"] for m in rec.resumes] == [6000]
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["window_start_sample"] for x in lines] == [0, 6000]


BAD = [("--hop", "-3"), ("--hop", "0"), ("--duration", "-5"), ("--duration", "0"), ("--duration", "nan"),
       ("--flush-interval", "-1"), ("--stall-timeout", "-1"), ("--max-record-mb", "0"), ("--min-free-mb", "-1"),
       ("--ui", "127.0.0.1:70000")]


@pytest.mark.parametrize("flag,value", BAD, ids=[f"{f}{v}" for f, v in BAD])
def test_bad_numbers_are_refused_at_once(pkg_dir, tmp_path, flag, value):
    """Before: --hop -3 never returned (3.7 GB, MemoryError), --duration -5 exited 0 with an empty session."""
    t0 = time.monotonic()
    r = edge_run(pkg_dir, "--source", SIM, flag, value, cwd=tmp_path, timeout=60)
    assert time.monotonic() - t0 < 30  # refused before any work (well under a second on an idle machine)
    err = r.stderr.strip().splitlines()
    # one line naming the flag (tools/_cli's form: "error: argument --hop: expected ..., got '-3' (see ...)")
    assert r.returncode == 2 and len(err) == 1 and err[0].startswith("error: ") and flag in err[0], r.stderr
    assert "Traceback" not in r.stderr and list(tmp_path.iterdir()) == []


def test_bad_numbers_are_refused_before_any_heavy_import(pkg_dir):
    """The refusal is fast by construction, not by luck: numpy, scipy and the transports are not even imported."""
    code = ("import sys\nfrom ecgedge.tools.edge_run import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit as e:\n    assert e.code == 2, e.code\n"
            "heavy = sorted(m for m in ('numpy', 'scipy', 'ecgedge.signals', 'ecgedge.edge_runtime.session') "
            "if m in sys.modules)\nprint(heavy)")
    r = subprocess.run([sys.executable, "-c", code, "--model", str(pkg_dir), "--source", SIM, "--hop", "-3"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: argument --hop: expected a whole number >= 1, got '-3'"), err


def test_a_config_file_with_a_word_for_a_number_is_refused(pkg_dir, tmp_path):
    (tmp_path / "h.toml").write_text(f'[edge-run]\nmodel = "{pkg_dir}"\nsource = "{SIM}"\nhop = "lots"\n')
    r = subprocess.run([support.venv_bin("edge-run"), "--config", str(tmp_path / "h.toml")], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and "--hop" in err[0] and "'lots'" in err[0], r.stderr


def test_runtime_refuses_a_hop_below_one_without_looping():
    from ecgedge.edge_runtime.processing import Processor

    for hop in (-3, 0):
        with pytest.raises(ConfigError, match="hop"):
            Processor(500, 1.0, 500, 5000, hop, None)


# -- edge-sim ---------------------------------------------------------------------------------------------------
def _ptb_like_record(folder: Path) -> tuple[Path, np.ndarray]:
    """A PTB-style WFDB record: leads i, ii in NAME.dat and Frank leads vx, vy, vz in NAME.xyz, whose .xyz file
    is absent (as in a partial copy). Only lead I is needed to replay it."""
    import wfdb

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(0, 300, (4000, 2))).astype(np.int16)
    wfdb.wrsamp("s0001_re", fs=1000, units=["mV", "mV"], sig_name=["i", "ii"], d_signal=x, fmt=["16", "16"],
                adc_gain=[2000.0, 2000.0], baseline=[0, 0], write_dir=str(folder))
    hea = (folder / "s0001_re.hea").read_text().splitlines()
    head = hea[0].split()
    head[1] = "5"
    frank = [f"s0001_re.xyz 16 2000/mV 16 0 0 0 0 {n}" for n in ("vx", "vy", "vz")]
    (folder / "s0001_re.hea").write_text("\n".join([" ".join(head), *hea[1:3], *frank]) + "\n")
    return folder / "s0001_re.hea", x[:, 0].astype(np.float64) / 2000.0 * 1000.0


def test_a_ptb_record_without_its_xyz_file_still_replays_lead_i(tmp_path):
    from ecgedge.signals import load_record

    hea, lead_i_uv = _ptb_like_record(tmp_path / "ptb")
    assert not hea.with_suffix(".xyz").exists()
    rec = load_record(hea)
    assert rec.lead == "i" and rec.sampling_rate == 1000 and rec.meta["channels"] == ["i", "ii", "vx", "vy", "vz"]
    np.testing.assert_allclose(rec.signal_uv, lead_i_uv)


def _sim(*args, timeout=60):
    p = subprocess.Popen([support.venv_bin("edge-sim"), "serve", *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    return p


def test_edge_sim_replays_the_ptb_record_over_a_pty(pkg_dir, tmp_path):
    hea, _ = _ptb_like_record(tmp_path / "ptb")
    sim = _sim("--pty", "--replay", hea, "--speed", "100", "--fs", "500")
    try:
        path = sim.stdout.readline().strip()
        assert path.startswith("/dev/pts/"), sim.stderr.read() if sim.poll() is not None else path
        r = edge_run(pkg_dir, "--source", f"serial://{path}", "--duration", "4", "--out", tmp_path / "s")
        assert r.returncode == 0, r.stderr
    finally:
        sim.terminate()
        sim.wait(10)
    from ecgedge.signals import load_record

    want = np.clip(np.round(load_record(hea, sampling_rate=500).signal_uv), -32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(read_partial(tmp_path / "s").counts[:want.size], want)


@pytest.mark.parametrize("args,flag", [(["--replay", "missing.hea"], "--replay"), (["--speed", "0"], "--speed"),
                                       (["--fs", "0"], "--fs"), (["--drop", "1.5"], "--drop"),
                                       (["--duration", "-1"], "--duration"), (["--hr", "-60"], "--hr")])
def test_edge_sim_refuses_before_printing_a_path(tmp_path, args, flag):
    sim = _sim("--pty", *args)
    out, err = sim.communicate(timeout=60)
    assert sim.returncode == 2 and out == "", out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0] and "Traceback" not in err


def test_edge_sim_with_an_unreadable_record_prints_no_path(tmp_path):
    hea, _ = _ptb_like_record(tmp_path / "ptb")
    (tmp_path / "ptb" / "s0001_re.dat").unlink()  # the lead it needs is gone: refused, no path
    sim = _sim("--pty", "--replay", hea)
    out, err = sim.communicate(timeout=60)
    assert sim.returncode == 2 and out == "" and err.startswith("error: ") and "Traceback" not in err


def test_ground_truth_is_what_the_device_streams(pkg_dir, tmp_path):
    async def go():
        return await Session(load_package(pkg_dir), SessionOptions(source=SIM, out_dir=tmp_path / "s",
                                                                     duration_s=4)).run()
    asyncio.run(go())
    truth = ground_truth(SimConfig.from_query("pocket_k", {"speed": "100", "seed": "4"}), 2000)
    np.testing.assert_array_equal(read_partial(tmp_path / "s").counts, truth)


def test_a_sidecar_that_hits_a_full_disk_promises_nothing_and_the_session_closes(tmp_path, monkeypatch):
    """Found by the disk_full campaign (14 of 100 sessions crashed): the flush counted its samples before their
    sidecar was written; when that write hit ENOSPC the count ran ahead of every sidecar on disk, and the
    closing WFDB export raised IndexError on an empty recording."""
    import errno

    from ecgedge.edge_runtime import recorder as R

    rec = R.Recorder(tmp_path / "s", 500, 1.0, flush_interval_s=0)
    rec.write(0, np.arange(100, dtype=np.int16))  # flushed: 100 samples promised
    real = R._atomic_write

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(R, "_atomic_write", full)
    rec.write(100, np.arange(100, dtype=np.int16))
    monkeypatch.setattr(R, "_atomic_write", real)
    assert not rec.active and rec.stopped_reason == "disk full" and rec.samples_flushed == 100
    info = rec.close()  # must not raise
    part = R.read_partial(tmp_path / "s")
    assert info["samples"] == part.counts.size == 100 and "wfdb" in info
    np.testing.assert_array_equal(part.counts, np.arange(100))
