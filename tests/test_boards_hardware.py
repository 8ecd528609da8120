"""Hardware tier (opt-in): edge-flash onto a real board, then its boot banner over the virtual COM port.

    pytest -m hardware --hil-url serial:///dev/ttyACM0 --hil-model dist/pocket_k-cortex-m7 --hil-board nucleo-h743zi2

The bench itself on the board is tests/test_hil_hardware.py (same options)."""

from urllib.parse import urlsplit

import pytest

from ecgedge.tools import edge_flash


@pytest.mark.hardware
def test_edge_flash_onto_the_board_and_check_its_banner(hil_url, hil_model, hil_board, capsys):
    u = urlsplit(hil_url)
    assert u.scheme == "serial", f"--hil-url {hil_url}: edge-flash talks to a serial:// board"
    with pytest.raises(SystemExit) as e:
        edge_flash.main([hil_model, "--board", hil_board, "--port", u.path])
    out = capsys.readouterr()
    assert e.value.code == 0, out.err
    assert "matches, constants pass their hash check" in out.out
