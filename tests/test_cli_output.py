"""`edge-export pocket_k --target cortex-m7`, the console script as a user runs it, prints our lines only:
what TensorFlow, absl, oneDNN, LiteRT and Keras print lands in the run's log file. conftest's
`pocket_k_m7_package` runs that command once for the backend tier and keeps its output. (That `--verbose`
shows those lines is checked in tests/test_cli.py, on a real LiteRT run and on every kind of noise.)"""

import re

import pytest

from ecgedge.quantize.pipeline import STAGE_TEXT

pytestmark = pytest.mark.backend

THIRD_PARTY = re.compile(r"oneDNN|absl|XNNPACK|retracing|WARNING:tensorflow|^[IWE]\d{4} |Saved artifact|TensorSpec|"
                         r"Endpoint|Warning:|Traceback")
OURS = [re.compile(p) for p in (
    r"^(DEMO WEIGHTS|UNTRAINED WEIGHTS|RESEARCH USE|USER MODEL)\b.*not for clinical use",
    rf"^({'|'.join(map(re.escape, STAGE_TEXT.values()))}): \d+ s$",
    r"^pruned [\d.]+ M -> [\d.]+ M MACs \(budget [\d.]+ M\), params [\d,]+ -> [\d,]+$",
    r"^package written: \S+$",
    r"^  (calibrator \w+; ops \d+ \(|MACs [\d,]+ -> |flash [\d,]+ B / |AUROC float |latency estimate )",
    r"^  \d+ s$",
    r"^firmware: ",
    r"^\S.*[━╸╺]",   # a rich progress bar's last frame (in a pipe)
)]


def foreign_lines(stdout: str, stderr: str, package) -> list[str]:
    """Lines of an `edge-export` run that are not ours (the package path is stdout's last line)."""
    out = [line for line in stdout.splitlines() if line.strip()]
    assert out and out[-1] == str(package), out[-1:]
    lines = out[:-1] + [line for line in stderr.splitlines() if line.strip()]
    return [line for line in lines if THIRD_PARTY.search(line) or not any(p.match(line) for p in OURS)]


def test_export_prints_only_our_lines_and_logs_the_rest(pocket_k_m7_package):
    folder = pocket_k_m7_package.parent
    if not (folder / "edge-export.stdout").exists():
        pytest.skip("ECGEDGE_POCKET_K_PACKAGE reused an earlier export: no output to check")
    stdout, stderr = (folder / "edge-export.stdout").read_text(), (folder / "edge-export.stderr").read_text()
    assert foreign_lines(stdout, stderr, pocket_k_m7_package) == []
    assert "DEMO WEIGHTS: trained on synthetic data, not for clinical use" in stderr.splitlines()
    logs = "".join(p.read_text() for p in (folder / "logs").glob("edge-export-*.log"))
    assert "oneDNN" in logs and "XNNPACK" in logs  # the noise existed, and went to the log file
