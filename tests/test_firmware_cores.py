"""The C engine on every Cortex-M core of firmware_bridge/cores.toml, in QEMU 7.2: bit-exact with tflite-micro
on the op-coverage models (1-D and 2-D) for each core's kernel path (c: M0/M3, dsp: M4/M7/M33, mve: M55), the
real pocket_k on M4, M33 and M55, alignment on the only QEMU board that traps unaligned accesses (microbit),
qemu://<core> device URLs, and the tables that drive it all."""

import asyncio
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ecgedge.contract.runners import open_int8_runner
from ecgedge.device_sim.testmodels import int8_vectors, write_test_package
from ecgedge.errors import ConfigError, DeviceTimeout, FirmwareError
from ecgedge.firmware_bridge.build import build_engine, build_firmware, machine_for
from ecgedge.firmware_bridge.client import FirmwareClient
from ecgedge.firmware_bridge.cores import cores, get_core, machines, mcu_cores, resolve_core
from ecgedge.firmware_bridge.qemu import QemuDevice
from ecgedge.targets import load_targets

GOLDEN = Path(__file__).parent / "golden"
OPMIX = GOLDEN / "firmware_opmix_int8.tflite"          # 1-D: grouped/strided convs, Swish, SE, pools, depthwise 1x5, FC
MODEL_2D = GOLDEN / "firmware_2d_int8.tflite"          # 3x3 convs, depthwise 3x3 (x2, dilated), 5x5, Dense
TINY = GOLDEN / "firmware_opmix64_int8.tflite"         # the op-coverage model on 64 samples: fits a micro:bit
CORES = ["cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"]


def run_windows(elf, q, timeout=120.0):
    with QemuDevice(elf, timeout=timeout + 60) as dev:
        c = FirmwareClient(sock=dev.connect())
        info = c.hello()
        got = np.array([c.infer(x, timeout=timeout).outputs for x in q], np.int8)
        c.close()
        return info, got


# ---------------------------------------------------------------------------------------- tables (unit)

def test_every_mcu_target_names_a_core_with_a_qemu_machine():
    targets = {n: t for n, t in load_targets().items() if t.is_mcu}
    assert targets
    for name, t in targets.items():
        core = get_core(t.engine_core)
        assert resolve_core(name) == core
        assert core.qemu_machine in machines()
    assert set(mcu_cores()) == set(CORES)
    for name in CORES:
        core = cores()[name]
        for m in core.machines:
            mach = machines()[m]
            assert mach.code.length > 0 and mach.ram.length > 0 and mach.uart_base and mach.systick_hz


def test_unknown_core_machine_or_goal_fail_before_building(tmp_path):
    with pytest.raises(ConfigError, match="unknown core or target 'cortex-m9'"):
        build_engine(OPMIX, "cortex-m9", tmp_path)
    with pytest.raises(FirmwareError, match="QEMU machine 'microbit' does not run cortex-m4 builds"):
        machine_for(get_core("cortex-m4"), "microbit")
    with pytest.raises(ConfigError, match="--optimize 'fast': expected one of speed, size"):
        build_engine(OPMIX, "cortex-m4", tmp_path, optimize="fast")
    with pytest.raises(FirmwareError, match="target 'rpi4' .*has no firmware build"):
        build_firmware(OPMIX, "rpi4", tmp_path)
    assert not list(tmp_path.iterdir())


def test_kernel_paths_get_their_own_constants():
    """dsp+speed: widened filters and the ADD pair table; size: int8 filters only; mve: int8 filters and the
    offset-folded bias; c: int8 filters, no widening."""
    from ecgedge.firmware_bridge.codegen import generate

    names = {}
    for kernels, goal in (("dsp", "speed"), ("dsp", "size"), ("mve", "speed"), ("c", "speed")):
        g = generate(OPMIX.read_bytes(), kernels=kernels, optimize=goal)
        names[kernels, goal] = {a.name.split("_", 1)[1] for l in g.layers for a in l.consts}
        names[kernels, goal, "bytes"] = g.const_bytes
    assert {"wide", "wide2", "pair"} & names["dsp", "speed"] >= {"pair"}
    assert any(n.startswith("wide") for n in names["dsp", "speed"])
    assert not any(n.startswith("wide") or n == "pair" for n in names["dsp", "size"])
    assert "beff" in names["mve", "speed"] and not any(n.startswith("wide") for n in names["mve", "speed"])
    assert not any(n.startswith("wide") for n in names["c", "speed"])
    assert names["dsp", "size", "bytes"] < names["dsp", "speed", "bytes"]


def test_export_refuses_firmware_for_a_linux_target_before_exporting(tmp_path):
    exe = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "edge-export"
    r = subprocess.run([str(exe), "pocket_k", "--target", "rpi4", "--firmware", "--out", str(tmp_path / "p")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "error: target 'rpi4'" in r.stderr and "has no firmware build" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "p").exists()


# ---------------------------------------------------------------------------------------- QEMU (backend)

@pytest.mark.backend
@pytest.mark.parametrize("core", CORES)
def test_core_bit_exact_in_qemu(core, tmp_path):
    """Each core's build (its kernel path) in its QEMU machine equals tflite-micro on both op-coverage models."""
    for model in (OPMIX, MODEL_2D):
        b = build_engine(model, core, tmp_path / model.stem, program="protocol")
        assert b.core == core and b.machine == get_core(core).qemu_machine
        q = int8_vectors(model, 2, seed=31)
        info, got = run_windows(b.elf, q)
        assert core in info.name and info.flags & 4
        ref = open_int8_runner(model, "tflm").run(q)
        assert np.array_equal(got, ref), (core, model.name, np.argwhere(got != ref)[:5])


@pytest.mark.backend
@pytest.mark.parametrize("core", ["cortex-m0", "cortex-m33", "cortex-m55"])
def test_edge_engine_verify_harness_per_machine(core, tmp_path):
    """build_engine's verify harness (semihosting file I/O, no UART) on the three memory maps (an385, an505's
    Secure aliases, an547's ITCM vectors + DDR), each core's kernel path: every output byte as tflite-micro,
    instructions counted by the plugin per inference and per layer."""
    from ecgedge.firmware_bridge.verify import verify

    rep = verify(OPMIX, core=core, n_inputs=3, seed=9, arena_tflm=False, out_dir=tmp_path)
    assert rep["bit_exact_fraction"] == 1.0 and rep["distinct_outputs"] > 1
    assert rep["kernels"] == get_core(core).kernels and rep["flash_bytes"] > 0
    assert rep["instructions_per_inference"] > rep["macs"] / 8
    assert sum(r["instructions"] for r in rep["layers"]) <= rep["instructions_per_inference"]


@pytest.mark.backend
def test_helium_build_avoids_the_two_lane_vmov(tmp_path):
    """QEMU 7.2 executes MVE's `vmov qN[2], qN[0], Rt, Rt2` with the two lanes swapped (against gcc's
    vcreateq and the Arm encoding): code using it would pass here and fail on silicon. Our kernels move
    lane pairs through the FPU's D registers instead; gcc must not emit the instruction either."""
    b = build_engine(OPMIX, "cortex-m55", tmp_path, program="protocol")
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", "-m", "armv8.1-m.main", str(b.elf)], capture_output=True,
                         text=True, check=True).stdout
    assert "vmlava.s8" in dis and "vldrb" in dis          # the Helium kernels are really in there
    assert not re.search(r"vmov\s+q\d\[\d\], q\d\[\d\]", dis)


@pytest.mark.backend
def test_cortex_m0_alignment_on_microbit(tmp_path):
    """microbit's nRF51 (Cortex-M0) traps unaligned accesses, the an385 stand-in does not: the tiny model
    runs bit-exact on the micro:bit, and a build with one deliberate unaligned load answers on an385 but
    never on the micro:bit (HardFault) - so the bit-exact run proves every access of the M0 build aligned."""
    pkg = write_test_package(tmp_path / "pkg", TINY.read_bytes(), name="opmix64")
    b = build_engine(pkg, "cortex-m0", tmp_path / "mb", machine="microbit", program="protocol")
    assert b.machine == "microbit" and b.ram_bytes <= 16384
    q = int8_vectors(TINY, 2, seed=3)
    _, got = run_windows(b.elf, q, timeout=60)
    assert np.array_equal(got, open_int8_runner(TINY, "tflm").run(q))
    for machine, answers in (("mps2-an385", True), ("microbit", False)):
        f = build_engine(pkg, "cortex-m0", tmp_path / f"fault-{machine}", machine=machine,
                         defines={"ECG_FAULT_UNALIGNED": 1}, program="protocol")
        with QemuDevice(f.elf, timeout=90) as dev:
            c = FirmwareClient(sock=dev.connect())
            c.hello()
            if answers:
                assert c.infer(q[0], timeout=30).outputs
            else:
                with pytest.raises(DeviceTimeout):
                    c.infer(q[0], timeout=8)
            c.close()


@pytest.mark.backend
@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m33", "cortex-m55"])
def test_pocket_k_bit_exact_on_core(core, pocket_k_m7_package, tmp_path):
    tfl = pocket_k_m7_package / "model_int8.tflite"
    b = build_engine(pocket_k_m7_package, core, tmp_path, program="protocol")
    q = int8_vectors(tfl, 3, seed=44)
    _, got = run_windows(b.elf, q, timeout=300)
    assert np.array_equal(got, open_int8_runner(tfl, "tflm").run(q))


@pytest.mark.backend
def test_qemu_url_per_core(tmp_path):
    """qemu://<core>?package=DIR boots that core's build (runtime transport) and answers HELLO/INFER."""
    from ecgedge.firmware_bridge.link import DeviceLink
    from ecgedge.edge_runtime.transports import open_transport
    from ecgedge.firmware_bridge import protocol as P

    pkg = write_test_package(tmp_path / "pkg", OPMIX.read_bytes())
    q = int8_vectors(OPMIX, 1, seed=8)

    async def go():
        link = DeviceLink(open_transport(f"qemu://cortex-m33?package={pkg}"))
        await link.open()
        try:
            info = P.unpack_info((await link.request(P.MsgType.HELLO, expect=P.MsgType.INFO, timeout=20)).payload)
            data = q[0].tobytes()
            for off in range(0, len(data), 1000):
                await link.request(P.MsgType.LOAD_INPUT, P.pack_load_input(P.LoadInput(off, data[off:off + 1000])),
                                   expect=P.MsgType.ACK, timeout=20)
            f = await link.request(P.MsgType.INFER, P.pack_infer(P.Infer(1, 0)), expect=P.MsgType.RESULT, timeout=120)
            return info, P.unpack_result(f.payload)
        finally:
            await link.close()

    info, res = asyncio.run(asyncio.wait_for(go(), 300))
    assert "cortex-m33" in info.name
    assert np.array_equal(np.asarray(res.outputs, np.int8), open_int8_runner(OPMIX, "tflm").run(q)[0])


@pytest.mark.backend
@pytest.mark.parametrize("target", sorted(n for n, t in load_targets().items() if t.is_mcu))
def test_export_firmware_step_builds_for_every_mcu_target(target, tmp_path):
    """edge-export --firmware's step (quantize.pipeline._firmware) on a package, for every MCU target."""
    from ecgedge.quantize.pipeline import _firmware
    from ecgedge.targets import get_target

    pkg = write_test_package(tmp_path / "pkg", OPMIX.read_bytes())
    rep = _firmware(pkg, get_target(target))
    core = get_core(get_target(target).engine_core)
    assert rep["core"] == core.name and rep["kernels"] == core.kernels and rep["qemu_machine"] == core.qemu_machine
    assert (pkg / rep["elf"]).is_file() and rep["fits"]


@pytest.mark.backend
@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m55"])
def test_size_builds_bit_exact_and_smaller(core, tmp_path):
    """--optimize size (int8 weights, no pair tables, one depthwise plane) is exact too, in less flash."""
    for model in (OPMIX, MODEL_2D):
        speed = build_engine(model, core, tmp_path / f"{model.stem}-speed", program="protocol")
        size = build_engine(model, core, tmp_path / f"{model.stem}-size", optimize="size",
                            program="protocol")
        assert size.optimize == "size" and size.flash_bytes <= speed.flash_bytes
        if model == OPMIX:    # its flat ADD's 64 KiB pair table (and on dsp the widened filters) are gone
            assert size.flash_bytes <= speed.flash_bytes - 65536
        q = int8_vectors(model, 2, seed=12)
        _, got = run_windows(size.elf, q)
        assert np.array_equal(got, open_int8_runner(model, "tflm").run(q))


@pytest.mark.backend
def test_export_refuses_a_firmware_that_does_not_fit_the_targets_flash(exported_package, tmp_path):
    """edge-export --firmware builds the firmware and refuses it (nothing packaged) when it is over the board's
    flash, saying by how much and that --optimize size keeps the weights int8; the same build fits the real
    profile."""
    import dataclasses
    import shutil

    from ecgedge.errors import BudgetError
    from ecgedge.quantize.pipeline import ExportOptions, _firmware
    from ecgedge.targets import get_target
    pkg = tmp_path / "pkg"
    shutil.copytree(exported_package, pkg)
    target = get_target("cortex-m4")
    fw = _firmware(pkg, target, ExportOptions(model="pocket_k", target="cortex-m4", firmware=True))
    assert fw["fits"] and fw["flash_bytes"] <= target.flash_bytes
    small = dataclasses.replace(target, flash_bytes=fw["flash_bytes"] - 1)
    with pytest.raises(BudgetError, match=rf"firmware does not fit: flash {fw['flash_bytes']:,} B > cortex-m4's "
                                          rf"{fw['flash_bytes'] - 1:,} B; --optimize size keeps the weights int8"):
        _firmware(pkg, small, ExportOptions(model="pocket_k", target="cortex-m4", firmware=True))
