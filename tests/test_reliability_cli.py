"""Refusals at the command line: `edge-run` and `edge-hil run`, run as real console scripts, refuse (exit 2,
"error: ..." naming the problem, nothing streamed) a package with a flipped or truncated artefact, an unsigned
package (unless --allow-unsigned, then marked in every result), a package signed by another key, and a device
whose model hash differs from the package's. Keys come from edge-keygen at run time."""

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ecgedge.contract.package import sign_package

_spec = importlib.util.spec_from_file_location("runtime_support", Path(__file__).with_name("runtime_support.py"))
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

SIM = "sim://pocket_k?speed=50"
# gates of our own: these tests are about refusals, not about the shipped accuracy gates
GATES = """
[model_hash]
metric = "model_hash_match"
op = "=="
threshold = true
required = true
"""


def _cli(name, *args, timeout=180):
    return subprocess.run([support.venv_bin(name), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _error_line(r) -> str:
    """The CLI's own last word (LiteRT may log its delegate on stderr before it)."""
    lines = r.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def _flip(path: Path) -> None:
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 1
    path.write_bytes(bytes(b))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-64])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Keys a and b from edge-keygen; the test package unsigned, signed by a, signed by b; another model."""
    d = tmp_path_factory.mktemp("cli")
    for k in ("a", "b"):
        r = _cli("edge-keygen", "--out", d / f"key_{k}")
        assert r.returncode == 0, r.stderr
    unsigned = support.copy_package(d / "unsigned")
    for name, key in (("signed", "a"), ("other_key", "b")):
        shutil.copytree(unsigned, d / name)
        sign_package(d / name, d / f"key_{key}")
    from ecgedge.device_sim.testmodels import write_test_package

    write_test_package(d / "other_model", (Path(__file__).parent / "golden" / "firmware_opmix_int8.tflite")
                       .read_bytes())
    (d / "gates.toml").write_text(GATES)
    return d


def _variant(work, tmp_path, case) -> tuple[Path, list[str]]:
    """(package folder, extra flags) for one case."""
    if case == "other_key":
        return work / "other_key", []
    if case in ("unsigned", "allow_unsigned"):
        return work / "unsigned", (["--allow-unsigned"] if case == "allow_unsigned" else [])
    pkg = shutil.copytree(work / "signed", tmp_path / "pkg")
    if case != "intact":
        victim, how = {"flip_model": ("model_int8.tflite", _flip), "flip_manifest": ("manifest.json", _flip),
                       "flip_signature": ("manifest.sig", _flip), "truncate_model": ("model_int8.tflite", _truncate)
                       }[case]
        how(pkg / victim)
    return pkg, []


REFUSED = {  # case -> what the error must say
    "flip_model": "model_int8.tflite: sha256",
    "flip_manifest": "signature does not verify",
    "flip_signature": "signature does not verify",
    "truncate_model": "tampered or truncated",
    "unsigned": "is unsigned",
    "other_key": "signature does not verify",
    "other_device_model": "differs from the package",
}


def _edge_run(work, tmp_path, pkg, flags, source=SIM):
    out = tmp_path / "session"
    r = _cli("edge-run", "--model", pkg, "--trust", work / "key_a.pub", *flags, "--source", source,
             "--duration", "12", "--out", out, "--quiet")
    return r, out


@pytest.mark.parametrize("case", list(REFUSED))
def test_edge_run_refuses(work, tmp_path, case):
    if case == "other_device_model":
        r, out = _edge_run(work, tmp_path, work / "signed", [], source=f"{SIM}&package={work / 'other_model'}")
    else:
        pkg, flags = _variant(work, tmp_path, case)
        r, out = _edge_run(work, tmp_path, pkg, flags)
    assert r.returncode == 2, r.stdout + r.stderr
    assert _error_line(r).startswith("error: ") and REFUSED[case] in _error_line(r), r.stderr
    assert not (out / "raw.i16").exists() and not (out / "summary.json").exists()  # nothing streamed


@pytest.mark.parametrize("case", ["intact", "allow_unsigned"])
def test_edge_run_accepts_signed_and_marks_allowed_unsigned_everywhere(work, tmp_path, case):
    pkg, flags = _variant(work, tmp_path, case)
    r, out = _edge_run(work, tmp_path, pkg, flags)
    assert r.returncode == 0, r.stderr
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert results and summary["samples_received"] == 6000
    if case == "intact":
        assert summary["signed"] and not summary["unsigned"] and not any("unsigned" in x for x in results)
        assert "UNSIGNED" not in r.stdout
    else:
        assert summary["unsigned"] and not summary["signed"] and all(x["unsigned"] is True for x in results)
        assert "UNSIGNED package" in r.stdout and "--allow-unsigned" in r.stdout


def _edge_hil(work, tmp_path, pkg, flags, device_pkg=None):
    report = tmp_path / "hil"
    device = f"sim://pocket_k?fs=500&package={device_pkg or work / 'unsigned'}"
    r = _cli("edge-hil", "run", "--model", pkg, "--device", device, "--trust", work / "key_a.pub", *flags,
             "--windows", "2", "--no-float", "--no-integrity", "--no-progress", "--gates", work / "gates.toml",
             "--report", report)
    return r, report


@pytest.mark.parametrize("case", list(REFUSED))
def test_edge_hil_refuses(work, tmp_path, case):
    if case == "other_device_model":
        r, report = _edge_hil(work, tmp_path, work / "signed", [], device_pkg=work / "other_model")
    else:
        pkg, flags = _variant(work, tmp_path, case)
        r, report = _edge_hil(work, tmp_path, pkg, flags)
    assert r.returncode == 2, r.stdout + r.stderr
    want = "refused: it runs model SHA-256" if case == "other_device_model" else REFUSED[case]
    assert _error_line(r).startswith("error: ") and want in _error_line(r), r.stderr
    if case == "other_device_model":  # refused at INFO, before any window: the partial report says why
        rep = json.loads((report / "hil_report.json").read_text())
        assert rep["windows"] == 0 and rep["model_hash_match"] is False and "refused" in rep["error"]
    else:  # refused before the device was opened
        assert not (report / "hil_report.json").exists()


@pytest.mark.parametrize("case", ["intact", "allow_unsigned"])
def test_edge_hil_accepts_signed_and_marks_allowed_unsigned_everywhere(work, tmp_path, case):
    pkg, flags = _variant(work, tmp_path, case)
    r, report = _edge_hil(work, tmp_path, pkg, flags)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads((report / "hil_report.json").read_text())
    assert rep["windows"] == 2 and rep["model_hash_match"] is True
    html = (report / "report.html").read_text()
    junit = (report / "hil_junit.xml").read_text()
    if case == "intact":
        assert rep["signed"] and not rep["unsigned"] and rep["signature"].startswith("verified with")
        assert "UNSIGNED" not in r.stdout + html + junit
    else:
        assert rep["unsigned"] and rep["signature"] == "UNSIGNED (--allow-unsigned)"
        for text in (r.stdout, html, junit):
            assert "UNSIGNED (--allow-unsigned)" in text


@pytest.mark.backend
def test_every_artefact_of_an_exported_package_is_guarded(exported_package, work, tmp_path):
    """The real edge-export package (tiny preset): one flipped byte in ANY of its files, signature included, is
    refused by edge-run and by edge-hil; the untouched signed copy is accepted by both."""
    signed = shutil.copytree(exported_package, tmp_path / "signed")
    sign_package(signed, work / "key_a")
    names = sorted(p.name for p in signed.iterdir() if p.is_file() and not p.name.startswith("."))
    assert {"model_int8.tflite", "manifest.json", "manifest.sig"} <= set(names) and len(names) >= 5
    device_pkg = shutil.copytree(exported_package, tmp_path / "device_pkg")
    r, out = _edge_run(work, tmp_path / "ok", signed, [])
    assert r.returncode == 0, r.stderr
    r, _ = _edge_hil(work, tmp_path / "ok", signed, [], device_pkg=device_pkg)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in names:
        pkg = shutil.copytree(signed, tmp_path / name / "pkg")
        _flip(pkg / name)
        r, out = _edge_run(work, tmp_path / name, pkg, [])
        assert r.returncode == 2 and _error_line(r).startswith("error: "), (name, r.stderr)
        assert not (out / "raw.i16").exists()
        r, report = _edge_hil(work, tmp_path / name, pkg, [], device_pkg=device_pkg)
        assert r.returncode == 2 and _error_line(r).startswith("error: "), (name, r.stderr)
        assert not (report / "hil_report.json").exists()
