"""edge-train's command line: the zoo listing and the exit codes of bad input."""

import subprocess
import sys

import pytest
import torch

from ecgedge.models.specs import list_specs
from ecgedge.tools.edge_train import main, parse


def test_list_prints_every_model_with_sizes(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in list_specs():
        assert name in out
    assert "728,587" in out and "80.28 M" in out  # pocket_k reference params and MACs per window


def test_unknown_model_exits_nonzero_listing_names():
    proc = subprocess.run([sys.executable, "-m", "ecgedge.tools.edge_train", "pocket_q", "--epochs", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown model 'pocket_q'")
    for name in list_specs():
        assert name in proc.stderr


def test_bad_checkpoint_exits_nonzero(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage" * 100)
    assert main(["pocket_k", "--evaluate", str(junk), "--subjects", "3", "--windows-per-subject", "1",
                 "--no-progress"]) == 2
    assert "error:" in capsys.readouterr().err
    bad = tmp_path / "mismatch.pt"
    torch.save({"first_conv.conv.weight": torch.zeros(4, 1, 3), "dense.weight": torch.zeros(3, 4)}, bad)
    assert main(["pocket_k", "--init", str(bad), "--preset", "tiny", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "first_conv.conv.weight" in err and "(4, 1, 3)" in err


def test_untrainable_model_and_bad_flags_exit_nonzero(capsys):
    assert main(["anyecg_echo", "--epochs", "1", "--no-progress"]) == 2
    assert "no training recipe" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # refused by the parser, before any work
        main(["pocket_k", "--epochs", "0", "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --epochs: expected a whole number >= 1, got '0'") and err.count("\n") == 1


def test_parse_defaults():
    ns = parse(["pocket_k"])
    assert (ns.model, ns.threads, ns.seed, ns.preset) == ("pocket_k", 2, 0, None)
