"""The live runtime over BLE (bleak -> bumble virtual link -> the simulator's GATT peripheral).

The runtime's Session is used unchanged with a ``ble://`` source; every recording is compared sample
by sample with the simulator's ground truth. Simulated time runs faster than real time (``speed``).
"""

import asyncio
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ecgedge.device_sim.ble_peripheral import PMD_T0_NS, sim_peripheral
from ecgedge.firmware_bridge.link import DeviceLink
from ecgedge.contract.package import load_package
from ecgedge.edge_runtime.recorder import GAP_VALUE, read_partial
from ecgedge.edge_runtime.session import Session, SessionOptions
from ecgedge.edge_runtime.transports import open_transport
from ecgedge.errors import DeviceTimeout
from ecgedge.firmware_bridge import protocol as P

pytestmark = pytest.mark.backend

BLE_SOURCE = "ble://name=Pocket-K?backend=bumble"


def _runtime_support():
    spec = importlib.util.spec_from_file_location("runtime_support", Path(__file__).with_name("runtime_support.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def package():
    return load_package(_runtime_support().build_test_package())


def run(coro, timeout=120):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def expected_recording(truth: np.ndarray, dropped, n: int) -> np.ndarray:
    """What an honest recording of the first n samples holds: the truth, GAP_VALUE where dropped."""
    want = truth[:n].copy()
    for start, length in dropped:
        want[start:start + length] = GAP_VALUE
    return want


def gaps_within(dropped, n: int) -> list[dict]:
    return [{"start_sample": s, "length": min(length, n - s)} for s, length in dropped if s < n]


async def _session(package, tmp_path, sim_url, duration_s, source=BLE_SOURCE, services=("ecgedge",),
                   during=None, **peripheral_kw):
    per = await sim_peripheral(sim_url, services=services, **peripheral_kw).start()
    try:
        session = Session(package, SessionOptions(source=source, out_dir=tmp_path, duration_s=duration_s))
        helper = asyncio.create_task(during(per, session)) if during else None
        summary = await session.run()
        if helper is not None:
            await helper
        return per, summary, read_partial(tmp_path)
    finally:
        await per.stop()


def test_ten_minute_session_over_ble_loses_nothing(package, tmp_path):
    # 10 minutes at 500 Hz, simulated 40x faster than real time
    per, summary, rec = run(_session(
        package, tmp_path, "sim://pocket_k?k=6.2&speed=40&seed=3&samples_per_frame=250", 600.0))
    truth = per.device.device.truth_counts()
    assert summary["samples_received"] == 300_000
    assert summary["samples_lost"] == 0 and summary["gaps"] == []
    assert summary["windows"] == 60 and summary["reconnects"] == 0
    assert rec.closed and rec.counts.size == 300_000
    np.testing.assert_array_equal(rec.counts, truth[:300_000])
    # 1200 SAMPLES frames of 518 bytes (plus answers) rode in notifications of at most MTU - 3 bytes
    assert per.stats.tx_bytes > 1200 * 518 and per.stats.tx_notifications >= per.stats.tx_bytes / 244


def test_injected_drops_are_reported_exactly(package, tmp_path):
    per, summary, rec = run(_session(
        package, tmp_path, "sim://pocket_k?k=4.0&speed=30&seed=4&samples_per_frame=100&drop=0.03&burst=2", 60.0))
    n = 30_000
    device = per.device.device
    dropped = [(s, length) for s, length in device.dropped if s < n]
    assert len(dropped) >= 3  # the seed gives real drops
    assert summary["gaps"] == gaps_within(dropped, n)
    assert summary["samples_lost"] == sum(gap["length"] for gap in summary["gaps"])
    assert summary["samples_received"] + summary["samples_lost"] == n
    np.testing.assert_array_equal(rec.counts, expected_recording(device.truth_counts(), dropped, n))
    assert rec.gaps == [[gap["start_sample"], gap["length"]] for gap in summary["gaps"]]


def test_reconnect_after_peripheral_disconnect_resumes_without_loss_or_duplicates(package, tmp_path):
    async def drop_link_twice(per, session):
        for at in (20 * 500, 50 * 500):
            while session.expected < at:
                await asyncio.sleep(0.01)
            await per.disconnect()

    per, summary, rec = run(_session(
        package, tmp_path, "sim://pocket_k?k=6.5&speed=20&seed=5&samples_per_frame=100&rewind_s=5", 80.0,
        during=drop_link_twice))
    assert summary["reconnects"] == 2 and per.stats.connections == 3
    assert summary["samples_lost"] == 0 and summary["gaps"] == []
    assert summary["samples_received"] == 40_000
    np.testing.assert_array_equal(rec.counts, per.device.device.truth_counts()[:40_000])


def test_polar_pmd_stream_through_the_unchanged_runtime(package, tmp_path):
    # a Polar-H10-like strap: 130 Hz µV samples; two lost notifications must become two exact gaps
    lost_notifications = {10, 20, 21}
    per, summary, rec = run(_session(
        package, tmp_path, "sim://pocket_k?k=6.5&speed=20&seed=6", 40.0, services=("pmd", "hrs"),
        source="ble://name=Polar H10 sim?backend=bumble", name="Polar H10 sim",
        drop_pmd=lambda i: i in lost_notifications))
    n = 40 * 130
    sent = per.stats.pmd_sent  # (first index, µV) of every notification, sent or lost
    assert {session for session, _, _ in sent} == {0}
    dropped = [(sent[i][1], len(sent[i][2])) for i in sorted(lost_notifications)]
    merged = [list(dropped[0]), [dropped[1][0], dropped[1][1] + dropped[2][1]]]
    assert summary["sampling_rate_hz"] == 130.0
    assert summary["gaps"] == [{"start_sample": s, "length": length} for s, length in merged]
    truth_uv = per.pmd_device.device.truth_counts()  # 1 µV per LSB on the 130 Hz twin
    np.testing.assert_array_equal(rec.counts, expected_recording(truth_uv, merged, n))
    # resampled 130 -> 500 Hz for the model; windows restart after a gap: 28 s unbroken -> 2 windows
    assert summary["windows"] == 2


@pytest.mark.xfail(strict=False, reason="intermittent (seen 1 run in 3 on 2 cores): the strap's second stream can "
                   "start before the runtime notices the link loss, leaving no gap to report; to fix in the PMD path")
def test_pmd_strap_reconnect_reports_the_time_without_link_as_one_exact_gap(package, tmp_path):
    async def drop_link(per, session):
        while session.expected < 15 * 130:
            await asyncio.sleep(0.01)
        await per.disconnect()

    per, summary, rec = run(_session(
        package, tmp_path, "sim://pocket_k?k=5.5&speed=10&seed=8", 40.0, services=("pmd",),
        source="ble://name=Polar H10 sim?backend=bumble", name="Polar H10 sim", during=drop_link))
    assert summary["reconnects"] == 1 and per.stats.pmd_sessions == 2
    assert len(summary["gaps"]) == 1 and summary["duplicates_dropped"] == 0
    gap = summary["gaps"][0]
    assert gap["length"] > 0 and summary["samples_received"] + gap["length"] == 40 * 130
    # before the gap: what the strap's first stream sent; after it: its second stream, from its start
    streams = [np.concatenate([uv for session, _, uv in per.stats.pmd_sent if session == k]) for k in (0, 1)]
    (start0, before), (start1, after) = rec.segments()
    assert start0 == 0 and start1 == gap["start_sample"] + gap["length"]
    # ... placed on the timeline by the strap's clock: the gap is exactly the time without samples
    t0_first, t0_second = per.stats.pmd_session_t0_ns
    assert start1 == round((t0_second - t0_first) * 130 / 1e9)
    np.testing.assert_array_equal(before, streams[0][:before.size])
    np.testing.assert_array_equal(after, streams[1][:after.size])
    assert after.size == 40 * 130 - start1


def test_pmd_frames_decode_to_microvolts_timestamps_and_heart_rate():
    async def main():
        per = await sim_peripheral("sim://pocket_k?k=5.0&hr=66&speed=20&seed=7", services=("pmd", "hrs"),
                                   name="Polar H10 sim", drop_pmd=lambda i: i == 3).start()
        t = open_transport("ble://name=Polar H10 sim?backend=bumble")
        try:
            await t.open()
            assert t.active_profile == "pmd"
            link = DeviceLink(t)
            info = P.unpack_info((await link.request(P.MsgType.HELLO, expect=P.MsgType.INFO)).payload)
            assert (info.sample_rate_hz, info.uv_per_lsb) == (130, 1.0)
            await link.request(P.MsgType.START, expect=P.MsgType.ACK)
            got = []
            while len(got) < 12:
                try:
                    f = await link.recv(timeout=2.0)
                except DeviceTimeout:
                    continue
                if f.type == P.MsgType.SAMPLES:
                    got.append(P.unpack_samples(f.payload))
            await link.request(P.MsgType.STOP, expect=P.MsgType.ACK)
            st = P.unpack_status((await link.request(P.MsgType.GET_STATUS, expect=P.MsgType.STATUS)).payload)
        finally:
            await t.close()
            await per.stop()
        truth = per.pmd_device.device.truth_counts()
        # 73-sample frames (an H10's size), the 4th lost on the radio: indices say so exactly
        assert [s.first_index for s in got[:5]] == [0, 73, 146, 292, 365]
        assert t.stats["pmd_gaps"] >= 1 and t.stats["pmd_samples_missing"] >= 73 and st.dropped >= 73
        for s in got:
            np.testing.assert_array_equal(s.samples, truth[s.first_index:s.first_index + s.samples.size])
            # t_us: the device clock at the first sample, 130 Hz apart
            assert abs((s.t_us - got[0].t_us) - s.first_index * 1e6 / 130) <= 1
        # PMD time (ns since 2000) carried on: the simulated strap's clock starts at 2026-01-01
        assert PMD_T0_NS <= got[0].t_us * 1000 < PMD_T0_NS + 3600 * 10**9
        assert len(t.heart_rates) >= 2
        assert all(r.bpm == 66 and r.contact and abs(r.rr_s[0] - 60 / 66) < 1 / 1024 for r in t.heart_rates)

    run(main())


def test_edge_run_cli_over_ble_with_a_simulated_polar_strap(tmp_path):
    """The whole BLE path from the command line: edge-run starts the simulated strap itself (sim=)."""
    import json
    import subprocess
    import sys

    pkg = _runtime_support().build_test_package()
    source = "ble://name=Polar H10 sim?backend=bumble&sim=pocket_k&services=pmd,hrs&k=6.5&hr=1&speed=20"  # hr: HRS on
    out = tmp_path / "session"
    r = subprocess.run([str(Path(sys.executable).with_name("edge-run")), "--model", str(pkg), "--source", source,
                        "--duration", "30", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sampling_rate_hz"] == 130.0 and summary["samples_received"] == 30 * 130
    assert summary["samples_lost"] == 0 and summary["windows"] == 3
    rec = read_partial(out)
    assert rec.uv_per_lsb == 1.0 and rec.counts.size == 3900 and np.ptp(rec.counts) > 500  # real ECG in µV



def test_heart_rate_only_strap():
    async def main():
        per = await sim_peripheral("sim://pocket_k?hr=120&speed=50", services=("hrs",), name="HR strap").start()
        t = open_transport("ble://name=HR strap?backend=bumble")
        try:
            await t.open()
            assert t.active_profile == "hrs"
            link = DeviceLink(t)
            info = P.unpack_info((await link.request(P.MsgType.HELLO, expect=P.MsgType.INFO)).payload)
            assert info.sample_rate_hz == 0 and "heart rate only" in info.name
            await link.request(P.MsgType.START, expect=P.MsgType.ACK)
            while len(t.heart_rates) < 3:
                await asyncio.sleep(0.02)
            with pytest.raises(DeviceTimeout):
                await link.recv(timeout=0.3)  # never any SAMPLES
            reply = await link.request(P.MsgType.LOAD_INPUT, P.pack_load_input(P.LoadInput(0, b"x")),
                                       expect=P.MsgType.ERROR)
            assert "not available on a PMD/HRS strap" in P.unpack_error(reply.payload).msg
        finally:
            await t.close()
            await per.stop()
        assert {r.bpm for r in t.heart_rates} == {120} and all(r.rr_s == (0.5,) for r in t.heart_rates)

    run(main())
