"""Firmware for real boards: the table, every board's build and map, the NUCLEO-F446RE image in QEMU's
netduinoplus2 (an STM32F405: same USART block) answering windows bit-exact, and edge-flash without a probe."""

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ecgedge.errors import ConfigError, FirmwareError
from ecgedge.firmware_bridge import board_firmware as bf
from ecgedge.firmware_bridge import protocol as P
from ecgedge.firmware_bridge.client import FirmwareClient
from ecgedge.firmware_bridge.cores import get_core
from ecgedge.device_sim.testmodels import write_test_package
from ecgedge.device_sim.testmodels import int8_vectors as windows
from ecgedge.contract.runners import tflm_run_tensors as tflm_outputs
from ecgedge.targets import get_target

GOLDEN = Path(__file__).parent / "golden"
MODEL = GOLDEN / "firmware_opmix_int8.tflite"
BOARDS = ["nucleo-h743zi2", "nucleo-l4r5zi", "b-u585i-iot02a", "nrf52840-dk", "nucleo-f446re"]


def test_board_table_is_consistent():
    table = bf.boards()
    assert sorted(table) == sorted(BOARDS)
    for b in table.values():
        tgt = get_target(b.target)
        assert tgt.is_mcu and tgt.clock_hz == b.clock_hz, b.key      # the bench's cycles -> ms uses the target
        assert tgt.flash_bytes == b.flash[1], b.key
        get_core(b.core)
        assert (bf.BOARD_DIR / b.hal).is_file()
        ld = bf.linker_script(b, b.arena)
        assert f"ORIGIN = {b.flash[0]:#010x}" in ld and "KEEP(*(.vectors))" in ld
    with pytest.raises(ConfigError, match="unknown board 'nucleo-x'"):
        bf.get_board("nucleo-x")


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return write_test_package(tmp_path_factory.mktemp("boards-pkg"), MODEL.read_bytes())


@pytest.fixture(scope="module")
def builds(package, tmp_path_factory):
    d = tmp_path_factory.mktemp("boards-fw")
    return {b: bf.build_board_firmware(package, b, d / b) for b in BOARDS}


@pytest.mark.backend
@pytest.mark.parametrize("board", BOARDS)
def test_board_firmware_builds_and_map_checks(builds, board):
    r = builds[board]
    b = bf.get_board(board)
    assert r.problems == [], r.problems
    assert r.flash_bytes <= b.flash[1] and r.elf.is_file() and r.hex.is_file() and r.bin.is_file()
    syms = bf._addresses(r.elf)
    assert syms["ecg_board_vectors"] == b.flash[0]
    # the binary starts with the vector table: initial SP at the top of the stack, reset handler (Thumb) in flash
    words = np.frombuffer(r.bin.read_bytes()[:8], "<u4")
    assert words[0] == syms["_estack"] and words[1] == syms["Reset_Handler"] | 1
    lo, n = b.memory[r.arena_region]
    assert lo <= syms["ecg_arena"] < lo + n
    assert r.arena_region == b.arena          # the test model's arena fits the preferred region (H743: DTCM)
    attrs = subprocess.run(["arm-none-eabi-readelf", "-A", str(r.elf)], capture_output=True, text=True).stdout
    assert {"cortex-m4": "v7E-M", "cortex-m7": "v7E-M", "cortex-m33": "v8-M.mainline"}[b.core] in attrs


@pytest.mark.backend
def test_map_check_reports_what_does_not_fit(builds):
    r = builds["nucleo-h743zi2"]
    b = bf.get_board("nucleo-h743zi2")
    small = dataclasses.replace(b, memory={**b.memory, "flash": (b.flash[0], 64 * 1024)})
    moved = dataclasses.replace(b, memory={**b.memory, "flash": (0x08100000, b.flash[1])})
    assert any("outside the flash" in p for p in bf.check_map(r.elf, small, "dtcm"))
    probs = bf.check_map(r.elf, moved, "dtcm")
    assert any("not at the flash origin" in p for p in probs), probs
    assert any("arena at" in p for p in bf.check_map(r.elf, b, "axi_sram"))


@pytest.mark.backend
def test_firmware_that_does_not_fit_fails_with_the_sizes(package, tmp_path, monkeypatch):
    b = bf.get_board("nucleo-f446re")
    tiny = dataclasses.replace(b, memory={**b.memory, "flash": (b.flash[0], 32 * 1024)})
    monkeypatch.setattr(bf, "get_board", lambda name: tiny)
    with pytest.raises(FirmwareError, match=r"does not fit: FLASH overflowed by [0-9,]+ B \(model constants"):
        bf.build_board_firmware(package, "nucleo-f446re", tmp_path)


def _boot(elf, **kw):
    dev = bf.board_qemu(elf, "nucleo-f446re", **kw)
    dev.start()
    client = FirmwareClient(sock=dev.connect())
    return dev, client, bf.hello_until_booted(client, timeout=20)


@pytest.mark.backend
def test_f446_firmware_in_qemu_netduinoplus2_bit_exact(builds):
    """Startup, clock-tree fallbacks and the USART2 driver of the NUCLEO-F446RE image on QEMU's STM32F405."""
    r = builds["nucleo-f446re"]
    q = windows(MODEL, 20, seed=17)
    ref = tflm_outputs(MODEL, q)
    dev, c, info = _boot(r.elf, plugin=True)
    try:
        # the banner: this board, the package's model, the constants' hash check passed; QEMU models neither
        # RCC nor PWR (the PLL never locks: the HSI fallback) nor the DWT (no cycle counter: kind 0)
        assert "nucleo-f446re" in info.name and "HSI (HSE and PLL did not start)" in info.name, info.name
        assert info.name.startswith("ecgedge-fw") and " 16 MHz " in info.name and "no DWT" in info.name
        assert info.has_model and info.model_sha256_hex == r.model_sha256 and info.counter_kind == 0
        results = [c.infer(x) for x in q]
        got = np.array([x.outputs for x in results], np.int8)
        assert np.array_equal(got, ref), np.argwhere(got != ref)[:10]
        assert all(x.counter_kind == 0 and x.infer_us > 0 for x in results)
        # host-fed samples into the device ring, then WINDOW_INFER quantises on the device: same answer as
        # LOAD_INPUT of the window quantised on the host
        n = q.shape[1]
        rng = np.random.default_rng(3)
        counts = (rng.normal(0, 300, 3 * n)).astype(np.int16)
        c.send_samples(0, counts)
        w = c.window_infer(2 * n)
        x = counts[2 * n:3 * n].astype(np.float64) * info.uv_per_lsb / 1000.0
        qh = np.clip(np.round(x / info.input_scale) + info.input_zero_point, -128, 127).astype(np.int8)
        assert list(w.outputs) == tflm_outputs(MODEL, qh[None])[0].tolist()
        # streaming, status and an error answer over the same UART
        c.request(P.MsgType.START, b"", P.MsgType.ACK)
        s = P.unpack_samples(c.recv(30).payload)
        assert s.first_index == 0 and len(s.samples) == 25
        c.request(P.MsgType.STOP, b"", P.MsgType.ACK)
        c.pending.clear()
        st = c.status()
        assert st.dropped == 0 and st.total >= 3 * n
        err = c.request(P.MsgType.RESULT, b"", P.MsgType.ERROR)
        assert P.unpack_error(err.payload).code == P.ErrorCode.ERR_TYPE
    finally:
        c.close()
        dev.stop()
    recs = dev.plugin_records()
    totals = [rec["total"] for rec in recs[:20]]
    # exact counts; the same work per window up to data-dependent branches and the SysTick interrupt
    assert len(recs) >= 20 and max(totals) - min(totals) < 0.001 * min(totals), totals
    print(f"F446 image in QEMU: {recs[0]['total']:,} instructions per inference")


@pytest.mark.backend
def test_f446_firmware_refuses_a_corrupted_model(package, tmp_path):
    r = bf.build_board_firmware(package, "nucleo-f446re", tmp_path, defines={"ECG_FAULT_MODEL_HASH": 1})
    dev, c, info = _boot(r.elf)
    try:
        assert not info.has_model
        err = c.request(P.MsgType.INFER, P.pack_infer(P.Infer(1, 0)), P.MsgType.ERROR)
        assert P.unpack_error(err.payload).code == P.ErrorCode.ERR_MODEL
    finally:
        c.close()
        dev.stop()


def test_edge_flash_without_probe_says_what_to_connect(package, capsys):
    from ecgedge.tools import edge_flash

    with pytest.raises(SystemExit) as e:
        edge_flash.main([str(package), "--board", "nucleo-h743zi2"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "no debug probe found: connect the NUCLEO-H743ZI2's STLINK-V3E USB port" in line[0]


@pytest.mark.parametrize("argv, words", [
    (["--board", "nucleo-h743zi2"], "expected a package folder"),
    (["{pkg}", "--board", "nucleo-x"], "unknown board 'nucleo-x'"),
    (["{pkg}", "--board", "nucleo-f446re"], "exported for target 'cortex-m7'"),
    (["/nonexistent/pkg", "--board", "nucleo-h743zi2"], "does not exist"),
])
def test_edge_flash_bad_input_exit_2(package, capsys, argv, words):
    from ecgedge.tools import edge_flash

    with pytest.raises(SystemExit) as e:
        edge_flash.main([a.format(pkg=package) for a in argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and words in err and "Traceback" not in err


@pytest.mark.backend
def test_edge_flash_build_only_writes_the_images(package, tmp_path):
    from ecgedge.tools import edge_flash

    with pytest.raises(SystemExit) as e:
        edge_flash.main([str(package), "--board", "nucleo-h743zi2", "--build-only", "--out", str(tmp_path)])
    assert e.value.code == 0
    assert {p.suffix for p in tmp_path.iterdir()} >= {".elf", ".hex", ".bin", ".map"}


@pytest.mark.backend
def test_banner_check_over_a_serial_port(builds, tmp_path):
    """edge-flash's banner check, over a real pty bridged to the F446 image's UART in QEMU."""
    import os
    import pty
    import threading

    from ecgedge.tools.edge_flash import check_banner, read_banner

    r = builds["nucleo-f446re"]
    dev = bf.board_qemu(r.elf, "nucleo-f446re")
    dev.start()
    sock = dev.connect()
    master, slave = pty.openpty()
    port = os.ttyname(slave)
    stop = threading.Event()

    def pump(src_read, dst_write):
        while not stop.is_set():
            try:
                data = src_read()
            except (OSError, TimeoutError):
                continue
            if data:
                dst_write(data)

    sock.settimeout(0.2)
    threads = [threading.Thread(target=pump, args=(lambda: os.read(master, 4096), sock.sendall), daemon=True),
               threading.Thread(target=pump, args=(lambda: sock.recv(4096), lambda d: os.write(master, d)),
                                daemon=True)]
    for t in threads:
        t.start()
    try:
        info = read_banner(port, 115200, timeout=20)
        board = bf.get_board("nucleo-f446re")
        assert check_banner(info, board, {"demo": True}, r.model_sha256) == []
        bad = check_banner(info, bf.get_board("nucleo-h743zi2"), {"demo": False}, "00" * 32)
        assert len(bad) == 3, bad
    finally:
        stop.set()
        dev.stop()
        os.close(master)
        os.close(slave)
