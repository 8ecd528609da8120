"""End-to-end sessions: edge-sim over a real pty / TCP / in-process, edge-run recording and inferring.

Checked against the simulator's ground truth (every ADC sample it produced) and against offline
inference over the recorded samples.
"""

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from ecgedge.device_sim.device import SimConfig, VirtualDevice, read_truth
from ecgedge.edge_runtime.inference import HostInference
from ecgedge.contract.package import load_package
from ecgedge.edge_runtime.processing import offline_results
from ecgedge.edge_runtime.recorder import read_partial
from ecgedge.edge_runtime.session import Session, SessionOptions

_spec = importlib.util.spec_from_file_location("runtime_support", Path(__file__).with_name("runtime_support.py"))
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)


@pytest.fixture(scope="module")
def pkg_dir():
    return support.build_test_package()


def start_sim_pty(tmp_path, *args):
    log = open(tmp_path / "sim.out", "w")
    p = subprocess.Popen([support.venv_bin("edge-sim"), "serve", "--pty", "--truth", str(tmp_path / "truth"), *args],
                         stdout=log, stderr=subprocess.DEVNULL)
    for _ in range(300):
        text = (tmp_path / "sim.out").read_text()
        if "/dev/pts/" in text:
            return p, text.split()[0]
        assert p.poll() is None, "edge-sim exited"
        time.sleep(0.1)
    p.kill()
    raise AssertionError("edge-sim printed no pty path")


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def edge_run(pkg, source, out, *extra, timeout=300):
    return subprocess.run([support.venv_bin("edge-run"), "--model", str(pkg), "--source", source, "--out", str(out),
                           "--quiet", *extra], capture_output=True, text=True, timeout=timeout)


def test_ten_minutes_over_pty_every_sample_equals_ground_truth(pkg_dir, tmp_path):
    sim, pty = start_sim_pty(tmp_path, "--model", "pocket_k", "--k", "6.5", "--speed", "200")
    try:
        r = edge_run(pkg_dir, f"serial://{pty}", tmp_path / "s", "--duration", "600")
    finally:
        stop(sim)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert (s["samples_received"], s["samples_lost"], s["gaps"], s["windows"]) == (300000, 0, [], 60)
    assert s["demo"] and "not for clinical use" in s["notice"] and s["link"]["crc_errors"] == 0
    rec = read_partial(tmp_path / "s")
    truth, meta = read_truth(tmp_path / "truth")
    assert meta["dropped"] == [] and rec.closed
    np.testing.assert_array_equal(rec.counts, truth[:300000])
    assert (tmp_path / "s" / "record.hea").exists()
    import wfdb

    w = wfdb.rdrecord(str(tmp_path / "s" / "record"))
    np.testing.assert_allclose(w.p_signal[:, 0], truth[:300000] * 1.0)


def test_injected_drops_reported_exactly_never_filled(pkg_dir, tmp_path):
    sim, pty = start_sim_pty(tmp_path, "--k", "4.0", "--speed", "100", "--drop", "0.02", "--burst", "3",
                             "--seed", "3")
    try:
        r = edge_run(pkg_dir, f"serial://{pty}", tmp_path / "s", "--duration", "120")
    finally:
        stop(sim)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    truth, meta = read_truth(tmp_path / "truth")
    expected = [{"start_sample": a, "length": n} for a, n in meta["dropped"] if a < 60000]
    assert expected, "the seed must inject drops"
    assert s["gaps"] == expected
    assert s["samples_lost"] == sum(g["length"] for g in expected)
    assert s["samples_received"] + s["samples_lost"] == 60000
    rec = read_partial(tmp_path / "s")
    received = np.ones(60000, bool)
    for g in expected:
        received[g["start_sample"]:g["start_sample"] + g["length"]] = False
    np.testing.assert_array_equal(rec.counts[received], truth[:60000][received])
    assert np.all(np.isnan(rec.signal_uv[~received]))  # marked as missing, not filled


def test_sigkill_leaves_recording_readable_up_to_last_flush(pkg_dir, tmp_path):
    sim, pty = start_sim_pty(tmp_path, "--speed", "1")
    out = tmp_path / "s"
    run = subprocess.Popen([support.venv_bin("edge-run"), "--model", str(pkg_dir), "--source", f"serial://{pty}",
                            "--out", str(out), "--quiet", "--flush-interval", "0.5"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            side = out / "raw.json"
            if side.exists() and json.loads(side.read_text())["samples"] >= 2000:
                break
            time.sleep(0.2)
        time.sleep(1.3)
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        time.sleep(0.3)
        rec = read_partial(out)
        # the sim flushes its truth twice a second and keeps streaming: wait until it covers the recording
        truth_deadline = time.monotonic() + 10
        while True:
            truth, _ = read_truth(tmp_path / "truth")
            if truth.size >= rec.counts.size or time.monotonic() > truth_deadline:
                break
            time.sleep(0.2)
    finally:
        stop(sim)
    assert not rec.closed and rec.counts.size >= 2000
    np.testing.assert_array_equal(rec.counts, truth[:rec.counts.size])
    raw_bytes = (out / "raw.i16").stat().st_size
    # at most one flush interval (0.5 s here, 1 s by default) of signal beyond the last flush
    assert raw_bytes // 2 - rec.counts.size <= 500 * 1.0


def _live_and_offline(pkg_dir, k, tmp_path):
    async def go():
        pkg = load_package(pkg_dir)
        opts = SessionOptions(source=f"sim://pocket_k?k={k}&speed=500&seed=5", out_dir=tmp_path / f"k{k}",
                              duration_s=60, hop=2500)
        sess = Session(pkg, opts)
        return await sess.run()

    summary = asyncio.run(go())
    live = [json.loads(x) for x in (tmp_path / f"k{k}" / "results.jsonl").read_text().splitlines()]
    pkg = load_package(pkg_dir)
    engine = HostInference(pkg)
    off = offline_results(read_partial(tmp_path / f"k{k}"), pkg, lambda w: engine.infer(w.filtered), hop=2500)
    return summary, live, off


@pytest.mark.parametrize("k", [4.0, 6.5])
def test_live_decisions_equal_offline_inference(pkg_dir, tmp_path, k):
    summary, live, off = _live_and_offline(pkg_dir, k, tmp_path)
    assert summary["samples_lost"] == 0 and len(live) == len(off) == 11
    for a, b in zip(live, off):
        assert a["window_start_sample"] == b["window_start_sample"]
        assert a["skipped"] == b["skipped"] is False
        assert a["raw_int8"] == b["raw_int8"] and a["decisions"] == b["decisions"]
        assert a["model_sha256"] == load_package(pkg_dir).model_sha256


def test_device_inference_matches_tflite_micro(pkg_dir, tmp_path):
    """--infer device: the simulator runs the package's INT8 model (our C engine, its own input quantisation) on
    its own window (WINDOW_INFER): the outputs are tflite-micro's on the host-built windows."""
    from ecgedge.contract.quantization import interpret_int8, window_int8
    from ecgedge.contract.runners import open_int8_runner

    r = edge_run(pkg_dir, f"sim://pocket_k?k=6.5&speed=500&package={pkg_dir}", tmp_path / "d",
                 "--duration", "40", "--infer", "device")
    assert r.returncode == 0, r.stderr[-2000:]
    dev = [json.loads(x) for x in (tmp_path / "d" / "results.jsonl").read_text().splitlines()]
    pkg = load_package(pkg_dir)
    tflm = open_int8_runner(pkg.file("model_int8.tflite"), "tflm")
    host = offline_results(read_partial(tmp_path / "d"), pkg, lambda w: interpret_int8(
        tflm.run_one(window_int8(w.filtered, pkg.input)), pkg.outputs, pkg.task))
    assert len(dev) == len(host) == 4
    assert [d["raw_int8"] for d in dev] == [h["raw_int8"] for h in host]
    assert all(d["device_counter"]["kind"] == 3 for d in dev)


def test_reconnect_over_tcp_resumes_without_loss_or_duplicates(pkg_dir, tmp_path):
    """The device drops the TCP link mid-stream; edge-run reconnects and resumes by sample index."""
    from ecgedge.device_sim.server import serve_tcp

    async def go():
        dev = VirtualDevice(SimConfig(k=5.0, speed=20, seed=2))
        dev.disconnect_after_frames = 150
        stop_ev = asyncio.Event()
        addr = {}
        task = asyncio.create_task(serve_tcp(dev, "127.0.0.1", 0, stop_ev, lambda a: addr.update(a=a)))
        while "a" not in addr:
            await asyncio.sleep(0.01)
        pkg = load_package(pkg_dir)
        opts = SessionOptions(source=f"socket://127.0.0.1:{addr['a'][1]}", out_dir=tmp_path / "s", duration_s=60,
                              stall_timeout_s=2.0)
        summary = await Session(pkg, opts).run()
        stop_ev.set()
        await task
        return summary, dev.truth_counts()

    summary, truth = asyncio.run(go())
    assert summary["reconnects"] >= 1 and summary["duplicates_dropped"] > 0
    assert summary["samples_lost"] == 0 and summary["samples_received"] == 30000
    np.testing.assert_array_equal(read_partial(tmp_path / "s").counts, truth[:30000])


def test_storage_limit_stops_recording_cleanly(pkg_dir, tmp_path):
    r = edge_run(pkg_dir, "sim://pocket_k?speed=500", tmp_path / "s", "--duration", "30", "--max-record-mb", "0.02",
                 "--flush-interval", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert s["samples_received"] == 15000 and "storage limit" in s["recording"]["stopped_reason"]
    rec = read_partial(tmp_path / "s")
    assert 0 < rec.counts.size <= 10000 and (tmp_path / "s" / "raw.i16").stat().st_size == rec.counts.size * 2


def test_disk_full_mid_session_keeps_what_was_written(pkg_dir, tmp_path):
    """A real write failure (RLIMIT_FSIZE: the kernel refuses to grow the file, like a full disk)."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40000, 40000))

    r = subprocess.run([support.venv_bin("edge-run"), "--model", str(pkg_dir), "--source", "sim://pocket_k?speed=500",
                        "--out", str(tmp_path / "s"), "--quiet", "--duration", "60", "--flush-interval", "0"],
                       capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert s["samples_received"] == 30000 and s["recording"]["stopped_reason"]
    assert "recording stopped" in r.stderr
    rec = read_partial(tmp_path / "s")
    assert 0 < rec.counts.size <= 20000


def test_corrupted_frames_counted_skipped_and_reported_as_gaps(pkg_dir, tmp_path):
    sim, pty = start_sim_pty(tmp_path, "--speed", "100", "--corrupt", "0.02", "--seed", "11")
    try:
        r = edge_run(pkg_dir, f"serial://{pty}", tmp_path / "s", "--duration", "120")
    finally:
        stop(sim)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    _, meta = read_truth(tmp_path / "truth")
    expected = [{"start_sample": a, "length": n} for a, n in meta["lost"] if a < 60000]
    assert expected and s["gaps"] == expected
    link = s["link"]
    defects = link["crc_errors"] + link["cobs_errors"] + link["length_errors"] + link["unknown_type"] + link["version_errors"]
    assert defects >= len([c for c in meta["corrupted"] if c[0] < 60000])
    assert "CRC" in r.stderr or "COBS" in r.stderr or "len" in r.stderr  # defects are logged


def test_config_file_supplies_options_and_flags_override(pkg_dir, tmp_path):
    cfg = tmp_path / "handheld.toml"
    cfg.write_text(f'model = "{pkg_dir}"\nsource = "sim://pocket_k?speed=500"\nduration = 30\n'
                   f'out = "{tmp_path / "s"}"\nhop = 2500\n')
    r = subprocess.run([support.venv_bin("edge-run"), "--config", str(cfg), "--duration", "15", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert s["seconds"] == 15.0 and s["windows"] == 2  # 15 s with a 10 s window and 5 s hop
    cfg.write_text('sorce = "x"\n')
    r = subprocess.run([support.venv_bin("edge-run"), "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option 'sorce'" in r.stderr
