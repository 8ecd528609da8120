"""Cortex-M7 firmware in QEMU mps2-an500: bit-exact with tflite-micro, instruction counts, faults."""

import time
from pathlib import Path

import numpy as np
import pytest

from ecgedge.errors import FirmwareError
from ecgedge.firmware_bridge import protocol as P
from ecgedge.firmware_bridge.build import build_firmware
from ecgedge.firmware_bridge.client import FirmwareClient
from ecgedge.firmware_bridge.qemu import QemuDevice
from ecgedge.device_sim.testmodels import write_test_package

from ecgedge.contract.runners import open_int8_runner
from ecgedge.device_sim.testmodels import int8_vectors as windows

pytestmark = pytest.mark.backend
GOLDEN = Path(__file__).parent / "golden"
MODEL = GOLDEN / "firmware_opmix_int8.tflite"


@pytest.fixture(scope="session")
def package(tmp_path_factory):
    return write_test_package(tmp_path_factory.mktemp("m7pkg"), MODEL.read_bytes())


@pytest.fixture(scope="session")
def builds(package, tmp_path_factory):
    d = tmp_path_factory.mktemp("m7fw")
    return {opt: build_firmware(package, "cortex-m7", d, optimized=opt) for opt in (True, False)}


def run_windows(elf, q, plugin=True):
    with QemuDevice(elf, plugin=plugin) as dev:
        c = FirmwareClient(sock=dev.connect())
        info = c.hello()
        results = [c.infer(x) for x in q]
        c.close()
        dev.stop()  # plugin log is complete once QEMU has exited
        return info, results, dev.plugin_records()


def test_m7_build_reports_sizes(builds):
    r = builds[True]
    assert r.text > r.const_bytes > 0 and r.bss >= r.arena_bytes > 0
    assert r.flash_bytes <= r.target_flash_bytes and r.ram_bytes <= r.target_ram_bytes
    assert "ecg_model_invoke" in r.symbols and r.layers


def test_m7_bit_exact_50_windows_one_boot(builds):
    q = windows(MODEL, 50, seed=21)
    ref = open_int8_runner(MODEL, "tflm").run(q)
    info, results, recs = run_windows(builds[True].elf, q)
    assert info.counter_kind == 1 and info.flags & 4
    got = np.array([r.outputs for r in results], np.int8)
    assert np.array_equal(got, ref), np.argwhere(got != ref)[:10]
    # RESULT.counter (icount timer, 40-instruction ticks) agrees with the plugin's exact count
    assert len(recs) == 50
    for r, rec in zip(results, recs):
        assert r.counter_kind == 1
        assert abs(r.counter - rec["total"]) <= 400, (r.counter, rec["total"])
        assert sum(rec["layers"].values()) <= rec["total"]


def test_m7_optimised_path_counts_fewer_instructions(builds):
    q = windows(MODEL, 2, seed=5)
    _, res_opt, rec_opt = run_windows(builds[True].elf, q)
    _, res_ref, rec_ref = run_windows(builds[False].elf, q)
    assert [r.outputs for r in res_opt] == [r.outputs for r in res_ref]
    ratio = rec_ref[-1]["total"] / rec_opt[-1]["total"]
    assert ratio >= 2.0, ratio


def test_m7_fault_requant_shift_changes_outputs(package, tmp_path):
    r = build_firmware(package, "cortex-m7", tmp_path, defines={"ECG_FAULT_REQUANT_SHIFT": 1})
    q = windows(MODEL, 8, seed=8)
    _, results, _ = run_windows(r.elf, q, plugin=False)
    got = np.array([x.outputs for x in results], np.int8)
    assert not np.array_equal(got, open_int8_runner(MODEL, "tflm").run(q))


def test_m7_model_hash_fault_reports_err_model(package, tmp_path):
    r = build_firmware(package, "cortex-m7", tmp_path, defines={"ECG_FAULT_MODEL_HASH": 1})
    with QemuDevice(r.elf) as dev:
        c = FirmwareClient(sock=dev.connect())
        info = P.unpack_info(c.request(P.MsgType.HELLO, b"", P.MsgType.INFO).payload)
        assert not info.flags & 2
        assert P.unpack_error(c.recv().payload).code == P.ErrorCode.ERR_MODEL
        c.load_input(np.zeros(info.window_len, np.int8))
        c.send(P.MsgType.INFER, P.pack_infer(P.Infer(1, 0)))
        assert P.unpack_error(c.recv().payload).code == P.ErrorCode.ERR_MODEL
        c.close()


def test_unknown_fault_define_and_missing_elf_are_readable_errors(package, tmp_path):
    with pytest.raises(FirmwareError, match="unknown fault define"):
        build_firmware(package, "cortex-m7", tmp_path, defines={"ECG_FAULT_NOPE": 1})
    with pytest.raises(FirmwareError, match="does not exist"):
        QemuDevice(tmp_path / "missing.elf")


def test_qemu_stop_is_clean(builds):
    dev = QemuDevice(builds[True].elf, timeout=60).start()
    c = FirmwareClient(sock=dev.connect())
    assert c.hello().proto_version == 1
    proc = dev.proc
    t0 = time.monotonic()
    dev.stop()
    assert proc.poll() is not None and time.monotonic() - t0 < 10
    c.close()
