"""docs/first_ten_minutes.md, run as a script: every `sh` block, in order, in a scratch folder, with the
venv's commands first on PATH. The page cannot rot: a command that changed or broke fails this test.

Lean: the page's `edge-export pocket_k --target cortex-m7` is the exact command the session fixture
`pocket_k_m7_package` already ran through edge-export's entry point (tests/conftest.py, shared with the
QEMU bench tests), so the script's `edge-export` copies that package instead of exporting a second time;
any other edge-export line in the page fails the test (extend the shim with it)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "first_ten_minutes.md"
SHIM = """
edge-export() {
  if [ "$*" = "pocket_k --target cortex-m7" ]; then
    mkdir -p dist && rm -rf dist/pocket_k-cortex-m7 && cp -r "$ECGEDGE_FIRST10_PACKAGE" dist/pocket_k-cortex-m7
  else
    echo "first_ten_minutes: no shim for: edge-export $*" >&2; return 99
  fi
}
"""


def page_blocks(text: str) -> list[str]:
    """The ```sh blocks of a Markdown page, in order (```text blocks are for reading only)."""
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)


def test_page_has_the_five_steps():
    text = PAGE.read_text()
    blocks = page_blocks(text)
    joined = "\n".join(blocks)
    for cmd in ("edge-export pocket_k --target cortex-m7", "edge-run --model dist/pocket_k-cortex-m7",
                "report.json", "edge-sim serve --pty", "edge-hil run"):
        assert cmd in joined, cmd
    assert "MEASURED-FRESH-DEBIAN" not in text, "the fresh-Debian figures were never filled in"


@pytest.mark.backend
def test_first_ten_minutes_page_runs(pocket_k_m7_package, tmp_path):
    script = tmp_path / "first10.sh"
    script.write_text("set -euo pipefail\n" + SHIM + "\n".join(page_blocks(PAGE.read_text())))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               ECGEDGE_FIRST10_PACKAGE=str(pocket_k_m7_package), ECGEDGE_LOG_DIR=str(tmp_path / "logs"))
    r = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    out = r.stdout + r.stderr
    assert "DEMO WEIGHTS: trained on synthetic data, not for clinical use" in out
    assert "fits cortex-m7: True" in r.stdout
    for session in ("sessions/demo", "sessions/pty"):
        assert (tmp_path / session / "summary.json").is_file()
    assert (tmp_path / "hil_reports" / "first" / "hil_report.json").is_file()
    assert "Traceback" not in out
