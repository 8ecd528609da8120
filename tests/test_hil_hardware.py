"""Hardware tier (opt-in): the bench against a real board flashed with our firmware.

    pytest -m hardware --hil-url serial:///dev/ttyACM0 --hil-model dist/pocket_k-cortex-m7
"""

import json

import pytest

from ecgedge.tools import edge_hil


@pytest.mark.hardware
def test_real_board_passes_every_gate(hil_url, hil_model, hil_windows, tmp_path):
    with pytest.raises(SystemExit) as e:
        edge_hil.main(["run", "--model", hil_model, "--device", hil_url, "--windows", str(hil_windows),
                       "--no-progress", "--report", str(tmp_path)])
    rep = json.loads((tmp_path / "hil_report.json").read_text())
    assert e.value.code == 0, (rep["gates_failed"], rep["error"])
    assert rep["gates_passed"] and rep["bit_exact_fraction"] == 1.0 and rep["windows"] == hil_windows
