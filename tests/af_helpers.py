"""Shared by the af_lead1 tests: where the PhysioNet/CinC 2017 records are, and the skip when absent."""

import os
from pathlib import Path

import pytest

from ecgedge.models.specs import get_spec

CINC = Path(os.environ.get("ECGEDGE_CINC2017", Path(__file__).resolve().parents[2] / "shared" / "data" / "cinc2017"))
needs_data = pytest.mark.skipif(not (CINC / "REFERENCE.csv").is_file(),
                                reason=f"PhysioNet/CinC 2017 records not found at {CINC} (CI has them there; "
                                       "set ECGEDGE_CINC2017 to point elsewhere)")
SPEC = get_spec("af_lead1")
