"""The handheld service: `edge-run --config handheld.toml` (flags override the file), the shipped example
config and systemd unit, and storage limits that stop recording cleanly with what was written intact.
Runs on the runtime-only install too (the arm64 tier)."""

import importlib.util
import json
import os
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest

from ecgedge.device_sim.device import read_truth
from ecgedge.edge_runtime.recorder import read_partial
from ecgedge.tools.edge_run import parse

_spec = importlib.util.spec_from_file_location("runtime_support", Path(__file__).with_name("runtime_support.py"))
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

REPO = Path(__file__).resolve().parents[1]


def write_config(path: Path, **options) -> Path:
    lines = ["[edge-run]"] + [f"{k} = {json.dumps(v)}" for k, v in options.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_config_file_then_flags(tmp_path):
    cfg = write_config(tmp_path / "h.toml", source="sim://pocket_k?k=5", model="/opt/pkg", out="/data/s",
                       trust="/etc/k.pub", ui="0.0.0.0:8080", hop=1000, **{"min-free-mb": 50.0, "max_record_mb": 500.0})
    a = parse(["--config", str(cfg)])
    assert (a.source, a.model, a.out, a.trust, a.ui, a.hop, a.min_free_mb, a.max_record_mb) == (
        "sim://pocket_k?k=5", "/opt/pkg", "/data/s", "/etc/k.pub", "0.0.0.0:8080", 1000, 50.0, 500.0)
    a = parse(["--config", str(cfg), "--hop", "2500", "--ui", "127.0.0.1:9000", "--source", "serial:///dev/ttyACM0"])
    assert (a.hop, a.ui, a.source, a.model) == (2500, "127.0.0.1:9000", "serial:///dev/ttyACM0", "/opt/pkg")


def test_config_unknown_key_is_refused(tmp_path, capsys):
    cfg = write_config(tmp_path / "h.toml", source="sim://pocket_k", model="/opt/pkg", ui_port=8080)
    with pytest.raises(SystemExit) as e:
        parse(["--config", str(cfg)])
    assert e.value.code == 2 and "ui_port" in capsys.readouterr().err


def test_shipped_example_config_and_unit():
    cfg = tomllib.loads((REPO / "deploy" / "handheld.toml").read_text())["edge-run"]
    a = parse(["--config", str(REPO / "deploy" / "handheld.toml")])
    assert a.model == cfg["model"] and a.ui == cfg["ui"] and a.min_free_mb == cfg["min-free-mb"]
    unit = (REPO / "deploy" / "ecgedge-handheld.service").read_text()
    assert "ExecStart=" in unit and "--config /etc/ecgedge/handheld.toml" in unit and "Restart=" in unit


def _run(tmp_path, out: Path, truth: Path, duration=120.0, **extra):
    cfg = write_config(tmp_path / "h.toml", model=str(support.build_test_package()), out=str(out),
                       source=f"sim://pocket_k?k=5&speed=100&truth={truth}", duration=duration, **extra)
    r = subprocess.run([support.venv_bin("edge-run"), "--config", str(cfg), "--flush-interval", "0.05"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r


def _assert_intact(out: Path, truth: Path, reason_part: str, r, duration=120.0) -> int:
    assert "RECORDING STOPPED" in r.stdout and reason_part in r.stdout
    assert f"session: {duration:.1f} s of signal" in r.stdout  # the live session went on after recording stopped
    if (out / "summary.json").exists():  # a full disk may leave no room for it
        assert reason_part in json.loads((out / "summary.json").read_text())["recording"]["stopped_reason"]
    rec = read_partial(out)
    truth_counts, _ = read_truth(truth)
    n = rec.counts.size
    assert 1000 < n < truth_counts.size
    np.testing.assert_array_equal(rec.counts, truth_counts[:n])  # everything kept is exact
    assert os.path.getsize(out / "raw.i16") >= 2 * n
    return n


def test_record_byte_limit_stops_cleanly(tmp_path):
    out, truth = tmp_path / "s", tmp_path / "truth" / "t"
    r = _run(tmp_path, out, truth, max_record_mb=0.04)
    n = _assert_intact(out, truth, "storage limit", r)
    assert n * 2 <= 40_000


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs (needs root: CI and the arm64 tier run as root)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_low_free_space_stops_recording_before_the_disk_fills(tmp_path, small_tmpfs):
    out, truth = small_tmpfs / "s", tmp_path / "truth" / "t"
    r = _run(tmp_path, out, truth, **{"min-free-mb": 0.15})
    _assert_intact(out, truth, "storage low", r)


def test_full_disk_keeps_what_was_written(tmp_path, small_tmpfs):
    out, truth = small_tmpfs / "s", tmp_path / "truth" / "t"
    r = _run(tmp_path, out, truth, duration=300.0)  # 600 kB of samples for 256 KiB
    _assert_intact(out, truth, "disk full", r, duration=300.0)
