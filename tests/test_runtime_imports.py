"""The handheld runtime never pulls in the training/export stacks."""

import subprocess
import sys

HEAVY = ["torch", "tensorflow", "keras", "ecgedge.models", "ecgedge.quantize", "ecgedge.calibration"]


def test_runtime_and_sim_import_no_heavy_modules():
    code = (
        "import sys\n"
        "import ecgedge.edge_runtime, ecgedge.edge_runtime.session, ecgedge.contract.package\n"
        "import ecgedge.contract.quantization, ecgedge.contract.runners, ecgedge.contract.metrics\n"
        "import ecgedge.edge_runtime.transports.serial_port, ecgedge.edge_runtime.transports.tcp\n"
        "import ecgedge.edge_runtime.transports.spy, ecgedge.edge_runtime.transports.qemu\n"
        "import ecgedge.edge_runtime.inference, ecgedge.edge_runtime.processing, ecgedge.edge_runtime.recorder\n"
        "import ecgedge.device_sim, ecgedge.device_sim.device, ecgedge.device_sim.transport, ecgedge.device_sim.server\n"
        "import ecgedge.tools.edge_run, ecgedge.tools.edge_sim, ecgedge.tools.edge_keygen\n"
        "from ecgedge.edge_runtime.transports import open_transport\n"
        "open_transport('sim://pocket_k?k=5')\n"
        "import ai_edge_litert.interpreter\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"heavy modules imported: {r.stdout.strip()}"
