"""The virtual Pocket-K speaks the wire protocol: INFO, START/STOP, STATUS, ERROR, LOAD_INPUT/INFER, drops,
lead-off, clock drift, resampling on the host side."""

import asyncio
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ecgedge.device_sim.device import SimConfig, VirtualDevice
from ecgedge.device_sim.transport import SimTransport
from ecgedge.contract.runners import open_int8_runner
from ecgedge.firmware_bridge.link import DeviceLink
from ecgedge.contract.package import load_package
from ecgedge.edge_runtime.session import Session, SessionOptions
from ecgedge.errors import ConfigError, ProtocolError
from ecgedge.firmware_bridge import protocol as P

_spec = importlib.util.spec_from_file_location("runtime_support", Path(__file__).with_name("runtime_support.py"))
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def _link(url):
    link = DeviceLink(SimTransport(url))
    await link.open()
    return link


def test_bad_parameters_named():
    with pytest.raises(ConfigError, match="drop=1.5"):
        SimConfig.from_query("pocket_k", {"drop": "1.5"})
    with pytest.raises(ConfigError, match="not a float"):
        SimConfig.from_query("pocket_k", {"k": "high"})


def test_errors_for_wrong_messages():
    async def go():
        link = await _link("sim://pocket_k?speed=10")
        out = []
        for t, payload in [(P.MsgType.INFER, P.pack_infer(P.Infer(1, 0))), (P.MsgType.STATUS, bytes(14)),
                           (P.MsgType.GET_STATUS, b"xx")]:
            with pytest.raises(ProtocolError) as e:
                await link.request(t, payload, expect=P.MsgType.ACK, timeout=2)
            out.append(str(e.value))
        # a frame with a broken CRC gets ERR_CRC, an unknown type ERR_TYPE
        bad_crc = bytearray(P.frame_bytes(P.MsgType.HELLO, 3))
        bad_crc[-1] ^= 0xFF
        await link.transport.write(P.cobs.encode(bytes(bad_crc)) + b"\x00")
        await link.transport.write(P.encode_frame(0x55, 4))
        errs = [P.unpack_error((await link.recv(2)).payload).code for _ in range(2)]
        await link.close()
        return out, errs

    out, errs = run(go())
    assert "error 6" in out[0] and "error 2" in out[1] and "error 3" in out[2]
    assert sorted(errs) == [P.ErrorCode.ERR_TYPE, P.ErrorCode.ERR_CRC]


def test_status_reports_lead_off_drops_and_battery():
    async def go():
        link = await _link("sim://pocket_k?speed=20&lead_off=2:8&drop=0.2&seed=4&battery=80")
        await link.request(P.MsgType.HELLO, expect=P.MsgType.INFO)
        await link.request(P.MsgType.START, expect=P.MsgType.ACK)
        seen_off, n, railed = False, 0, 0
        while n < 3000:
            f = await link.recv(5)
            if f.type == P.MsgType.SAMPLES:
                s = P.unpack_samples(f.payload)
                n = s.first_index + s.samples.size
                railed += int(np.sum(s.samples == 32767))
                st = P.unpack_status((await link.request(P.MsgType.GET_STATUS, expect=P.MsgType.STATUS)).payload)
                seen_off |= bool(st.lead_off)
        await link.request(P.MsgType.STOP, expect=P.MsgType.ACK)
        dev = link.transport.device
        await link.close()
        return seen_off, railed, st, dev

    seen_off, railed, st, dev = run(go())
    assert seen_off and railed > 0
    assert st.dropped == sum(n for _, n in dev.dropped) > 0 and st.overruns > 0 and st.battery_pct == 80


def test_clock_drift_stamps_device_time():
    dev = VirtualDevice(SimConfig(speed=1, drift_ppm=100))
    assert dev._due_samples() >= 0  # paced by a clock running 100 ppm fast
    dev._t0 = dev._t0 - 10.0
    assert dev._due_samples() == pytest.approx(5000 * 1.0001, abs=60)


@pytest.fixture(scope="module")
def pkg_dir():
    return support.build_test_package()


# The simulator infers through our C engine (built with the host's gcc) and is checked against tflite-micro:
# the arm64 tier's runtime-only install has neither, so these two run on the development/CI host only.
needs_engine_build = pytest.mark.skipif(
    shutil.which("gcc") is None or importlib.util.find_spec("tflite_micro") is None,
    reason="runtime-only install: no gcc for the simulator's C engine, no tflite-micro to compare with")


@needs_engine_build
def test_load_input_and_infer_run_the_package_model(pkg_dir):
    pkg = load_package(pkg_dir)
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, 5000).astype(np.int8)
    expected = open_int8_runner(pkg.file("model_int8.tflite"), "tflm").run_one(q)  # golden: tflite-micro

    async def go():
        link = await _link(f"sim://pocket_k?package={pkg_dir}")
        info = P.unpack_info((await link.request(P.MsgType.HELLO, expect=P.MsgType.INFO)).payload)
        for off in range(0, 5000, 1000):
            a = P.unpack_ack((await link.request(P.MsgType.LOAD_INPUT, P.pack_load_input(
                P.LoadInput(off, q[off:off + 1000].tobytes())), expect=P.MsgType.ACK)).payload)
            assert a.ok and a.acked_type == P.MsgType.LOAD_INPUT
        r = P.unpack_result((await link.request(P.MsgType.INFER, P.pack_infer(P.Infer(2, 1)),
                                                expect=P.MsgType.RESULT)).payload)
        with pytest.raises(ProtocolError, match="error 5"):
            await link.request(P.MsgType.LOAD_INPUT, P.pack_load_input(P.LoadInput(4990, bytes(20))),
                               expect=P.MsgType.ACK)
        await link.close()
        return info, r

    info, r = run(go())
    assert info.has_model and info.demo and info.model_sha256_hex == pkg.model_sha256 and info.window_len == 5000
    assert list(r.outputs) == expected.tolist() and r.counter_kind == P.CounterKind.MICROSECONDS


@needs_engine_build
def test_runtime_refuses_device_with_other_model(pkg_dir, tmp_path):
    other = support.copy_package(tmp_path / "other")
    m = json.loads((other / "manifest.json").read_text())
    m["seed"] = 99  # a different manifest is fine; a different model hash is not
    tfl = bytearray((other / "model_int8.tflite").read_bytes())
    tfl[-1] ^= 1
    (other / "model_int8.tflite").write_bytes(bytes(tfl))
    from ecgedge.contract.package import write_manifest

    write_manifest(other, m)
    from ecgedge.errors import PackageError

    async def go():
        sess = Session(load_package(pkg_dir), SessionOptions(source=f"sim://pocket_k?package={other}",
                                                             out_dir=tmp_path / "s", duration_s=5))
        await sess.run()

    with pytest.raises(PackageError, match="refusing this device"):
        run(go())


def test_device_at_250_hz_is_resampled_to_the_model_rate(pkg_dir, tmp_path):
    async def go():
        sess = Session(load_package(pkg_dir), SessionOptions(source="sim://pocket_k?fs=250&speed=500&k=5",
                                                             out_dir=tmp_path / "s", duration_s=30))
        return await sess.run()

    s = run(go())
    res = [json.loads(x) for x in (tmp_path / "s" / "results.jsonl").read_text().splitlines()]
    assert s["samples_received"] == 7500 and s["sampling_rate_hz"] == 250 and len(res) == 3
    assert [r["window_start_sample"] for r in res] == [0, 5000, 10000]
    hr = [r["sqi"]["hr_bpm"] for r in res]
    assert all(abs(h - 72) < 6 for h in hr), hr  # beats keep their timing after 250 -> 500 Hz


def test_replay_of_a_wfdb_record_streams_its_samples(pkg_dir, tmp_path):
    """`--replay`: a 360 Hz WFDB record is loaded at the device rate and streamed sample for sample."""
    from ecgedge.edge_runtime.recorder import read_partial
    from ecgedge.signals import ecg_simulate, load_record, save_record

    x = ecg_simulate(duration=20.0, sampling_rate=360, heart_rate=65, k_mmol=5.0, seed=3)
    rec_path = save_record(tmp_path / "rec" / "subject1", x, 360, fmt="wfdb")
    want = np.clip(np.round(load_record(rec_path, sampling_rate=500).signal_uv), -32768, 32767).astype(np.int16)

    async def go():
        sess = Session(load_package(pkg_dir), SessionOptions(source=f"sim://pocket_k?replay={rec_path}&speed=200",
                                                             out_dir=tmp_path / "s", duration_s=30))
        return await sess.run()

    s = run(go())
    got = read_partial(tmp_path / "s").counts
    assert s["samples_received"] == 15000 and want.size == 10000
    np.testing.assert_array_equal(got[:10000], want)
    np.testing.assert_array_equal(got[10000:], want[:5000])  # the record loops


def test_clock_jump_is_reported_not_counted_as_loss(pkg_dir, tmp_path):
    async def go():
        sess = Session(load_package(pkg_dir), SessionOptions(source="sim://pocket_k?clock_jump=10:5&speed=500",
                                                             out_dir=tmp_path / "s", duration_s=20))
        return await sess.run()

    s = run(go())
    assert s["samples_lost"] == 0 and s["gaps"] == []
    assert s["clock_jumps"] == [{"at_sample": 5000, "jump_us": 5_000_000}]
