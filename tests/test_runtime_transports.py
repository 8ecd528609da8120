"""Transports by URL and DeviceLink over real ptys, real TCP sockets and the in-process simulator."""

import asyncio
import os
import tty

import numpy as np
import pytest

from ecgedge.firmware_bridge.link import DeviceLink
from ecgedge.edge_runtime.transports import open_transport
from ecgedge.errors import ConfigError, DeviceTimeout, ProtocolError, TransportError
from ecgedge.firmware_bridge import protocol as P


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_unknown_scheme_and_bad_urls_are_config_errors():
    with pytest.raises(ConfigError, match="scheme 'foo'"):
        open_transport("foo://x")
    with pytest.raises(ConfigError, match="HOST:PORT"):
        open_transport("socket://localhost")
    with pytest.raises(ConfigError, match="unknown sim parameter 'kk'"):
        open_transport("sim://pocket_k?kk=3")
    with pytest.raises(ConfigError, match="package=DIR"):
        open_transport("qemu://cortex-m7")


def test_simulator_schemes_are_plug_ins_and_a_missing_one_says_what_is_missing(monkeypatch):
    """sim:// and fault:// come from the simulator's entry points (the runtime names it nowhere); a scheme
    whose plug-in is not registered, or cannot be imported, is refused in one line naming what is missing."""
    from ecgedge.edge_runtime.transports import base

    schemes = base.transport_schemes()
    assert schemes["sim"].startswith("ecgedge.device_sim.") and schemes["fault"].startswith("ecgedge.device_sim.")
    assert type(open_transport("sim://pocket_k")).__module__ == "ecgedge.device_sim.transport"
    try:
        import bumble  # noqa: F401  (the arm64 tier installs the runtime only: there the backend must say what is missing)
    except ImportError:
        with pytest.raises(ConfigError, match=r"BLE backend 'bumble' needs .*No module named 'bumble'.*ecgedge\[sim\]"):
            base.ble_backend("bumble")
    else:
        assert base.ble_backend("bumble").__module__ == "ecgedge.device_sim.bleak_bumble"
    monkeypatch.setattr(base, "plugins", lambda group: {})          # a runtime-only install without them
    with pytest.raises(ConfigError, match=r"scheme 'sim' comes from the device simulator .*install") as e:
        open_transport("sim://pocket_k")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="BLE backend 'bumble' comes from"):
        open_transport("ble://name=Pocket-K?backend=bumble")
    monkeypatch.setattr(base, "plugins", lambda group: {"sim": "ecgedge_missing_plugin.sim:SimTransport"})
    with pytest.raises(ConfigError, match="sim:// needs ecgedge_missing_plugin.sim:SimTransport.*No module named"):
        open_transport("sim://pocket_k")


def test_loop_link_round_trip_and_seq_loss_counting():
    async def go():
        link = DeviceLink(open_transport("loop://"))
        await link.open()
        for _ in range(3):
            await link.send(P.MsgType.HELLO)
        link._tx_seq = 10  # skip 7 sequence numbers: the receiver must count them as lost
        await link.send(P.MsgType.HELLO)
        frames = [await link.recv(1.0) for _ in range(4)]
        with pytest.raises(DeviceTimeout):
            await link.recv(0.2)
        await link.close()
        return frames, link.stats

    frames, stats = run(go())
    assert [f.seq for f in frames] == [0, 1, 2, 10] and stats["frames_lost"] == 7


def test_request_times_out_instead_of_hanging():
    async def go():
        link = DeviceLink(open_transport("loop://"))
        await link.open()
        # loop:// echoes the HELLO back, never an INFO
        with pytest.raises(DeviceTimeout, match="no INFO to HELLO"):
            await link.request(P.MsgType.HELLO, expect=P.MsgType.INFO, timeout=0.3)

    run(go())


def test_serial_over_real_pty_with_garbage_counted():
    master, slave = os.openpty()
    tty.setraw(master)
    path = os.ttyname(slave)

    async def go():
        t = open_transport(f"serial://{path}?baud=115200")
        link = DeviceLink(t)
        await link.open()
        good = P.encode_frame(P.MsgType.STATUS, 5, P.pack_status(P.Status(1, 50, 0, 0, 99)))
        bad = bytearray(good)
        bad[3] ^= 0x40
        os.write(master, b"\x13\x37garbage\x00" + bytes(bad) + good)
        f = await link.recv(5.0)
        await link.send(P.MsgType.GET_STATUS)
        await asyncio.sleep(0.1)
        echoed = os.read(master, 100)
        await link.close()
        return f, link.stats, echoed

    f, stats, echoed = run(go())
    os.close(master)
    os.close(slave)
    assert P.unpack_status(f.payload).lead_off == 1
    assert stats["frames"] == 1 and stats["crc_errors"] + stats["cobs_errors"] + stats["length_errors"] >= 2
    assert P.FrameDecoder().feed(echoed)[0].type == P.MsgType.GET_STATUS


def test_serial_open_failure_is_transport_error():
    with pytest.raises(TransportError, match="cannot open serial port /dev/nonexistent"):
        run(open_transport("serial:///dev/nonexistent").open())


def test_socket_transport_against_sim_tcp_server_and_spy_log(tmp_path):
    from ecgedge.device_sim.device import SimConfig, VirtualDevice
    from ecgedge.device_sim.server import serve_tcp

    async def go():
        dev = VirtualDevice(SimConfig(speed=50, seed=1))
        stop, addr = asyncio.Event(), {}
        task = asyncio.create_task(serve_tcp(dev, "127.0.0.1", 0, stop, lambda a: addr.update(a=a)))
        while "a" not in addr:
            await asyncio.sleep(0.01)
        log = tmp_path / "spy.log"
        link = DeviceLink(open_transport(f"spy://socket://127.0.0.1:{addr['a'][1]}?spy_log={log}"))
        await link.open()
        info = P.unpack_info((await link.request(P.MsgType.HELLO, expect=P.MsgType.INFO)).payload)
        await link.request(P.MsgType.START, expect=P.MsgType.ACK)
        got = []
        while sum(s.samples.size for s in got) < 2000:
            f = await link.recv(5.0)
            if f.type == P.MsgType.SAMPLES:
                got.append(P.unpack_samples(f.payload))
        st = P.unpack_status((await link.request(P.MsgType.GET_STATUS, expect=P.MsgType.STATUS)).payload)
        await link.close()
        stop.set()
        await task
        return info, got, st, dev.truth_counts(), log.read_text()

    info, got, st, truth, log = run(go())
    assert info.sample_rate_hz == 500 and info.name.startswith("ecgedge-sim")
    assert [s.first_index for s in got] == list(range(0, 50 * len(got), 50))
    np.testing.assert_array_equal(np.concatenate([s.samples for s in got]), truth[:50 * len(got)])
    assert st.total >= 2000 and st.battery_pct == 100
    assert " -> " in log and " <- " in log


def test_ble_scheme_maps_to_h6_transport():
    try:
        import ecgedge.edge_runtime.transports.ble  # noqa: F401  (H6's module)
    except ImportError:
        pytest.skip("BLE transport module not present yet")
    t = open_transport("ble://name=Pocket-K")
    assert type(t).__name__ == "BleTransport"
