"""pytest plugin for the bench's tiers.

Tiers are markers: `unit` (fast, the default for unmarked tests), `backend` (QEMU, the BLE stack,
full exports; run in CI) and `hardware` (a real board; opt-in with `--hil-url serial:///dev/ttyACM0`).
Unmarked tests get the `unit` marker, so `-m unit` selects the fast tier.
"""

import pytest

TIERS = ("unit", "backend", "hardware")


def pytest_addoption(parser):
    group = parser.getgroup("ecgedge-hil")
    group.addoption("--hil-url", default=None,
                    help="device URL for hardware-tier tests (serial:///dev/ttyACM0, ble://..., socket://...)")
    group.addoption("--hil-model", default=None,
                    help="model package (dist folder) the board under --hil-url was flashed with")
    group.addoption("--hil-windows", type=int, default=200,
                    help="windows the hardware-tier bench runs (default 200)")
    group.addoption("--hil-board", default=None,
                    help="board name (firmware_bridge/boards.toml) under --hil-url: edge-flash's banner check")


def pytest_collection_modifyitems(config, items):
    url = config.getoption("--hil-url")
    skip = pytest.mark.skip(reason="hardware tier: pass --hil-url to run against a real board")
    for item in items:
        if not any(t in item.keywords for t in TIERS):
            item.add_marker(pytest.mark.unit)
        if "hardware" in item.keywords and not url:
            item.add_marker(skip)


@pytest.fixture
def hil_url(request):
    """The device URL given with --hil-url (hardware tier only)."""
    url = request.config.getoption("--hil-url")
    if url is None:
        pytest.skip("no --hil-url given")
    return url


@pytest.fixture
def hil_model(request):
    """The package given with --hil-model (the model the board under --hil-url runs)."""
    path = request.config.getoption("--hil-model")
    if path is None:
        pytest.skip("no --hil-model given: the hardware tier needs the package the board was flashed with")
    return path


@pytest.fixture
def hil_windows(request):
    return request.config.getoption("--hil-windows")


@pytest.fixture
def hil_board(request):
    """The board name given with --hil-board (hardware tier: the board under --hil-url)."""
    name = request.config.getoption("--hil-board")
    if name is None:
        pytest.skip("no --hil-board given")
    return name
