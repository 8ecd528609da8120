"""qemu://cortex-m7?package=DIR: the runtime's transport boots H4's firmware and runs the package's model."""

import asyncio
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from ecgedge.contract.runners import LiteRtRunner
from ecgedge.firmware_bridge.link import DeviceLink
from ecgedge.contract.package import load_package
from ecgedge.edge_runtime.transports import open_transport
from ecgedge.firmware_bridge import protocol as P

_spec = importlib.util.spec_from_file_location("runtime_support", Path(__file__).with_name("runtime_support.py"))
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

pytestmark = [pytest.mark.backend,
              pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                                 reason="needs qemu-system-arm and arm-none-eabi-gcc")]


def test_qemu_transport_infers_like_litert():
    pkg_dir = support.build_test_package()
    pkg = load_package(pkg_dir)
    rng = np.random.default_rng(7)
    inputs = [rng.integers(-128, 128, 5000).astype(np.int8) for _ in range(2)]
    ref = LiteRtRunner(pkg.file("model_int8.tflite"))

    async def go():
        link = DeviceLink(open_transport(f"qemu://cortex-m7?package={pkg_dir}"))
        await link.open()
        try:
            info = P.unpack_info((await link.request(P.MsgType.HELLO, expect=P.MsgType.INFO, timeout=20)).payload)
            results = []
            for q in inputs:
                for off in range(0, 5000, 1000):
                    await link.request(P.MsgType.LOAD_INPUT, P.pack_load_input(P.LoadInput(off, q[off:off + 1000].tobytes())),
                                       expect=P.MsgType.ACK, timeout=20)
                f = await link.request(P.MsgType.INFER, P.pack_infer(P.Infer(1, 0)), expect=P.MsgType.RESULT, timeout=120)
                results.append(P.unpack_result(f.payload))
        finally:
            await link.close()
        return info, results

    info, results = asyncio.run(asyncio.wait_for(go(), 300))
    assert info.model_sha256_hex == pkg.model_sha256 and info.has_model and info.window_len == 5000
    for q, r in zip(inputs, results):
        # tflite-micro kernels and LiteRT may differ by one output step (TF issue 66358)
        assert np.max(np.abs(np.asarray(r.outputs, int) - ref.run_one(q).astype(int))) <= 1
        assert r.counter_kind == P.CounterKind.INSTRUCTIONS and r.counter > 0
