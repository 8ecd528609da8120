"""The real pocket_k cortex-m7 package (edge-export) through our C engine: host and M7/QEMU bit-exact
with tflite-micro on 50 windows, arena vs tflite-micro. Uses the session's real export
(tests/conftest.py: pocket_k_m7_package; $ECGEDGE_POCKET_K_PACKAGE reuses one)."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ecgedge.firmware_bridge.build import build_firmware, build_host
from ecgedge.firmware_bridge.client import FirmwareClient
from ecgedge.firmware_bridge.codegen import generate
from ecgedge.firmware_bridge.qemu import QemuDevice
from ecgedge.contract.runners import open_int8_runner, smallest_arena
from ecgedge.device_sim.testmodels import int8_vectors

pytestmark = pytest.mark.backend
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def package(pocket_k_m7_package):
    return pocket_k_m7_package


@pytest.fixture(scope="module")
def vectors(package):
    tfl = package / "model_int8.tflite"
    q = int8_vectors(tfl, 50, seed=77)
    return q, open_int8_runner(tfl, "tflm").run(q)


def test_pocket_k_host_bit_exact(package, vectors, tmp_path):
    q, ref = vectors
    for optimized in (False, True):
        exe = build_host(package, tmp_path / str(optimized), "run", optimized=optimized)
        r = subprocess.run([str(exe)], input=q.tobytes(), capture_output=True, check=True, timeout=600)
        assert np.array_equal(np.frombuffer(r.stdout, np.int8).reshape(ref.shape), ref)


def test_pocket_k_m7_bit_exact_and_counts(package, vectors, tmp_path):
    q, ref = vectors
    b = build_firmware(package, "cortex-m7", tmp_path, optimized=True)
    assert b.flash_bytes <= b.target_flash_bytes and b.ram_bytes <= b.target_ram_bytes
    with QemuDevice(b.elf, plugin=True) as dev:
        c = FirmwareClient(sock=dev.connect())
        info = c.hello()
        assert info.model_sha256.hex() == json.loads((package / "manifest.json").read_text())["model_sha256"]
        got = np.array([c.infer(x, timeout=120).outputs for x in q], np.int8)
        c.close()
        dev.stop()
        recs = dev.plugin_records()
    assert np.array_equal(got, ref), np.argwhere(got != ref)[:10]
    totals = [r["total"] for r in recs]
    assert len(totals) == len(q) and max(totals) < 1.01 * min(totals)   # data-dependent only in clamps


def test_pocket_k_arena_not_larger_than_tflite_micro(package):
    assert generate(package / "model_int8.tflite").arena_bytes <= smallest_arena(package / "model_int8.tflite")
