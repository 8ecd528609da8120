"""arm64 tier (scripts/arm64_tier.sh): the INT8 inference on fixed windows equals the x86 host's, bit for bit.

The script stages the package, the windows and the x86 outputs and sets ECGEDGE_INT8_REFERENCE; without it
(a plain x86 run) there is no second machine to compare with and the test is skipped.
"""

import importlib.util
import json
import os
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("handheld_golden", Path(__file__).with_name("handheld_golden.py"))
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)

REFERENCE = os.environ.get("ECGEDGE_INT8_REFERENCE")


@pytest.mark.skipif(not REFERENCE, reason="arm64 tier only: run scripts/arm64_tier.sh")
def test_int8_outputs_bit_identical_to_x86():
    ref_path = Path(REFERENCE)
    ref = json.loads(ref_path.read_text())
    here = golden.int8_outputs(ref_path.parent / "package", ref_path.parent / "windows.npz")
    print(f"\n{here['machine']} vs {ref['machine']}: {len(ref['from_stored_inputs'])} windows; full-chain INT8 "
          f"inputs differing: {here['full_chain_inputs_differing_values']}")
    assert here["model_sha256"] == ref["model_sha256"]
    assert here["from_stored_inputs"] == ref["from_stored_inputs"]  # the INT8 model itself
    assert here["full_chain_inputs_differing_values"] == 0  # filter + quantisation on this CPU
    assert here["full_chain"] == ref["full_chain"]
