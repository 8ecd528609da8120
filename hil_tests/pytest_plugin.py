"""pytest plugin for the bench's tiers.

Tiers are markers: `unit` (fast, the default for unmarked tests), `backend` (QEMU, the BLE stack,
full exports; run in CI) and `hardware` (a real board; opt-in with `--hil-url serial:///dev/ttyACM0`).
"""

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("ecgedge-hil")
    group.addoption("--hil-url", default=None,
                    help="device URL for hardware-tier tests (serial:///dev/ttyACM0, ble://..., socket://...)")


def pytest_collection_modifyitems(config, items):
    url = config.getoption("--hil-url")
    skip = pytest.mark.skip(reason="hardware tier: pass --hil-url to run against a real board")
    for item in items:
        if "hardware" in item.keywords and not url:
            item.add_marker(skip)


@pytest.fixture
def hil_url(request):
    """The device URL given with --hil-url (hardware tier only)."""
    url = request.config.getoption("--hil-url")
    if url is None:
        pytest.skip("no --hil-url given")
    return url
