"""The layers as a checked contract: import-linter (pyproject.toml [tool.importlinter]) over a regular
install of the project, where every folder lies under ecgedge/ as it will for a user; and each concept of
the contract defined once."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["ecgedge", "models", "quantize", "calibration", "firmware_bridge", "device_sim", "edge_runtime",
           "hil_tests", "tools"]


def _lint(cwd: Path, pkg: Path) -> subprocess.CompletedProcess:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(pkg)}
    # lint-imports puts its working directory first on sys.path: run it where `ecgedge` is the installed copy
    return subprocess.run([lint, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    pkg = tmp_path_factory.mktemp("regular-install")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(pkg), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (pkg / "ecgedge" / "edge_runtime" / "session.py").is_file()
    return pkg


@pytest.mark.backend
def test_import_linter_contracts_are_kept(installed):
    r = _lint(installed, installed)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    kept = re.findall(r"KEPT", r.stdout)
    assert len(kept) >= 5 and "BROKEN" not in r.stdout, r.stdout[-3000:]


@pytest.mark.backend
def test_import_linter_catches_a_runtime_that_imports_the_simulator(installed, tmp_path):
    """The contracts have teeth: one forbidden import in a copy of the install breaks two of them."""
    pkg = tmp_path / "pkg"
    shutil.copytree(installed / "ecgedge", pkg / "ecgedge")
    (pkg / "ecgedge" / "edge_runtime" / "probe.py").write_text("from ecgedge.device_sim import device\n")
    r = _lint(pkg, pkg)
    assert r.returncode != 0
    assert "ecgedge.edge_runtime.probe -> ecgedge.device_sim" in r.stdout
    assert len(re.findall(r"BROKEN", r.stdout)) >= 2, r.stdout[-3000:]


def _definitions(pattern: str) -> list[str]:
    """file:line of every line matching `pattern` in the package's sources (each file once: links skipped)."""
    found = []
    for folder in SOURCES:
        for dirpath, _, files in os.walk(ROOT / folder):  # does not follow the links under ecgedge/
            for name in sorted(f for f in files if f.endswith(".py")):
                path = Path(dirpath) / name
                for n, line in enumerate(path.read_text().splitlines(), 1):
                    if re.match(pattern, line):
                        found.append(f"{path.relative_to(ROOT)}:{n}")
    return found


@pytest.mark.parametrize("name", ["quantize_input", "int8_qparams", "dequantize", "auroc", "roc_curve", "sigmoid",
                                  "softmax", "f1_per_class", "ecg_peaks", "resample", "signal_quality",
                                  "load_package", "write_manifest", "hashed_files", "sign_package",
                                  "smallest_arena", "sha256_file"])
def test_each_contract_concept_is_defined_once(name):
    defs = _definitions(rf"^\s*def {name}\b")
    assert len(defs) == 1, defs
