"""Unchanged bleak client code against the simulator's GATT peripheral, over bumble's virtual link.

Nothing is mocked: a bumble host + virtual controller on each side, real advertising, connection,
ATT MTU exchange, GATT discovery, CCCD writes, notifications and disconnects. Only the backend class
passed as ``backend=`` differs from what runs on a Pi with BlueZ.
"""

import asyncio

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDeviceNotFoundError

from ecgedge.device_sim.ble_peripheral import DEFAULT_ADDRESS, sim_peripheral
from ecgedge.firmware_bridge import ble_gatt as g
from ecgedge.device_sim.bleak_bumble import BumbleClient, BumbleScanner
from ecgedge.edge_runtime.transports import open_transport
from ecgedge.errors import TransportError
from ecgedge.firmware_bridge import protocol as P

pytestmark = pytest.mark.backend


def run(coro, timeout=60):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


async def _frames_until(decoder, chunks, want, timeout=10.0):
    """Feed notified chunks to the decoder until a frame of type `want` appears."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    seen = []
    while loop.time() < end:
        while chunks:
            seen += decoder.feed(chunks.pop(0))
        for f in seen:
            if f.type == want:
                return seen
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {P.MsgType(want).name} within {timeout} s; got {[P.MsgType(f.type).name for f in seen]}")


def test_bleak_scan_connect_notify_write_mtu_disconnect():
    async def main():
        per = await sim_peripheral("sim://pocket_k?k=6.2&hr=66&speed=20&seed=2").start()
        try:
            assert await BleakScanner.find_device_by_name("Nobody", timeout=0.3, backend=BumbleScanner) is None
            seen = await BleakScanner.discover(timeout=0.3, return_adv=True, backend=BumbleScanner)
            assert DEFAULT_ADDRESS in seen
            assert g.ECGEDGE_SERVICE_UUID in seen[DEFAULT_ADDRESS][1].service_uuids
            dev = await BleakScanner.find_device_by_name("Pocket-K", timeout=5, backend=BumbleScanner)
            assert dev is not None and dev.address == DEFAULT_ADDRESS

            lost = []
            client = BleakClient(dev, disconnected_callback=lost.append, backend=BumbleClient)
            await client.connect()
            assert client.is_connected and client.mtu_size == 247
            services = {s.uuid for s in client.services}
            assert {g.ECGEDGE_SERVICE_UUID, g.PMD_SERVICE_UUID, g.HRS_SERVICE_UUID} <= services
            tx = client.services.get_characteristic(g.ECGEDGE_TX_UUID)
            rx = client.services.get_characteristic(g.ECGEDGE_RX_UUID)
            assert "notify" in tx.properties and "write-without-response" in rx.properties
            assert rx.max_write_without_response_size == 244
            assert set(client.services.get_characteristic(g.PMD_CONTROL_UUID).properties) >= {"read", "write", "indicate"}
            assert await client.read_gatt_char(g.HRS_BODY_SENSOR_LOCATION_UUID) == bytes([g.HRS_BODY_SENSOR_CHEST])

            chunks, sizes = [], []

            def on_tx(char, data):
                assert char.uuid == g.ECGEDGE_TX_UUID
                chunks.append(bytes(data))
                sizes.append(len(data))

            await client.start_notify(g.ECGEDGE_TX_UUID, on_tx)
            dec = P.FrameDecoder()
            await client.write_gatt_char(rx, P.encode_frame(P.MsgType.HELLO, 0), response=False)
            frames = await _frames_until(dec, chunks, P.MsgType.INFO)
            info = P.unpack_info(frames[-1].payload)
            assert (info.sample_rate_hz, info.name) == (500, "ecgedge-sim 0.1.0 pocket_k")

            await client.write_gatt_char(rx, P.encode_frame(P.MsgType.START, 1), response=False)
            frames = await _frames_until(dec, chunks, P.MsgType.ACK)  # SAMPLES may ride along
            samples = [P.unpack_samples(f.payload) for f in frames if f.type == P.MsgType.SAMPLES]
            while len(samples) < 20:
                samples += [P.unpack_samples(f.payload) for f in
                            await _frames_until(dec, chunks, P.MsgType.SAMPLES) if f.type == P.MsgType.SAMPLES]
            # frames ride in notifications cut at MTU - 3 = 244 bytes; how many bytes are queued at each
            # notification depends on scheduling, so only the bound is deterministic
            assert max(sizes) <= 244 and min(sizes) >= 1
            assert [s.first_index for s in samples] == [50 * i for i in range(len(samples))]
            assert dec.stats["crc_errors"] == dec.stats["cobs_errors"] == 0
            truth = per.device.device.truth_counts()
            for s in samples:
                assert (s.samples == truth[s.first_index:s.first_index + 50]).all()

            # the peripheral drops the link: bleak's disconnected_callback fires, once
            await per.disconnect()
            for _ in range(200):
                if lost:
                    break
                await asyncio.sleep(0.01)
            assert lost == [client] and not client.is_connected

            # it advertises again, and the same client reconnects; a local disconnect is no "loss"
            await client.connect()
            assert client.is_connected and client.mtu_size == 247
            await client.disconnect()
            assert not client.is_connected and lost == [client]
        finally:
            await per.stop()

    run(main())


def test_absent_devices_fail_clearly():
    async def main():
        per = await sim_peripheral("sim://pocket_k?speed=5", services=("hrs",), name="HR-Only").start()
        try:
            with pytest.raises(BleakDeviceNotFoundError):
                await BleakClient("F0:00:00:00:00:99", backend=BumbleClient).connect()
            t = open_transport("ble://name=Nobody?backend=bumble&timeout=0.3")
            with pytest.raises(TransportError, match="no BLE device with name 'Nobody'"):
                await t.open()
            t = open_transport("ble://name=HR-Only?backend=bumble&profile=ecgedge&timeout=3")
            with pytest.raises(TransportError, match="no ecgedge service"):
                await t.open()
            for _ in range(100):  # the failed transport lets go of the link
                if not per.connected.is_set():
                    break
                await asyncio.sleep(0.01)
            assert not per.connected.is_set() and per.stats.disconnections == per.stats.connections == 1
        finally:
            await per.stop()

    run(main())
