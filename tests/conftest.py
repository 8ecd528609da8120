"""Shared, session-scoped fixtures (expensive things built once per test run)."""

from __future__ import annotations

import pytest


def _tiny_checkpoint(folder, seed: int = 0):
    """A pocket_k checkpoint at the "tiny" width (fits every target without pruning), random weights with
    non-trivial BatchNorm statistics so that folding and quantisation are exercised."""
    import torch

    from ecgedge.models.zoo import build_model
    torch.manual_seed(seed)
    model = build_model("pocket_k", "tiny")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.7, 1.3)
                m.bias.uniform_(-0.1, 0.1)
    path = folder / "pocket_k_tiny.pt"
    torch.save({"model": "pocket_k", "preset": "tiny", "arch": model.ecgedge_arch,
                "state_dict": model.state_dict(), "demo": True, "card": {}}, path)
    return path


@pytest.fixture(scope="session")
def tiny_pocket_k_checkpoint(tmp_path_factory):
    return _tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="session")
def tiny_export_args():
    """Small but complete edge-export settings: few windows, minmax calibration, no progress bars."""
    return ["--calib-windows", "32", "--val-windows", "60", "--calibrator", "minmax", "--no-progress"]


@pytest.fixture(scope="session")
def exported_package(tmp_path_factory, tiny_pocket_k_checkpoint, tiny_export_args):
    """A complete cortex-m7 package (dist folder) of a tiny random-weight pocket_k, exported once per
    session with `edge-export`'s own code path; returns its folder."""
    from ecgedge.tools.edge_export import main
    out = tmp_path_factory.mktemp("dist") / "pocket_k-cortex-m7"
    with pytest.raises(SystemExit) as exit_info:
        main(["pocket_k", "--target", "cortex-m7", "--checkpoint", str(tiny_pocket_k_checkpoint),
              "--out", str(out), *tiny_export_args])
    assert exit_info.value.code == 0
    return out


@pytest.fixture(scope="session")
def pocket_k_m7_package(tmp_path_factory):
    """The REAL pocket_k cortex-m7 package: the shipped demo weights through the default `edge-export`
    road, exactly what users (and CI's bench) get. $ECGEDGE_POCKET_K_PACKAGE reuses an existing export (with
    the edge-export.stdout/.stderr this fixture keeps next to it, when they are there)."""
    import os
    from pathlib import Path

    given = os.environ.get("ECGEDGE_POCKET_K_PACKAGE")
    if given and (Path(given) / "model_int8.tflite").exists():
        return Path(given)
    import subprocess
    import sys

    # the console script as a user runs it (its output is kept for tests/test_cli_output.py)
    out = tmp_path_factory.mktemp("dist-real") / "pocket_k-cortex-m7"
    env = dict(os.environ, ECGEDGE_LOG_DIR=str(out.parent / "logs"))
    r = subprocess.run([str(Path(sys.executable).with_name("edge-export")), "pocket_k", "--target", "cortex-m7",
                        "--out", str(out)], capture_output=True, text=True, env=env, timeout=7200)
    (out.parent / "edge-export.stdout").write_text(r.stdout)
    (out.parent / "edge-export.stderr").write_text(r.stderr)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def pytest_addoption(parser):
    parser.addoption("--engine-seed", type=int, action="append", default=None,
                     help="replay the engine's random-model conformance check for this seed (repeatable; "
                          "also $ECGEDGE_ENGINE_SEED, comma-separated)")
