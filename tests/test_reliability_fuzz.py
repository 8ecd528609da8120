"""Bounded fuzzing: Python frame decoder (hypothesis + mutations), model loaders in worker processes, and the
C protocol parser / model-input path under libFuzzer + ASan/UBSan (backend)."""

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from ecgedge.errors import EdgeError
from ecgedge.hil_tests import fuzzing as F


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 80), max_size=8))
def test_decoder_on_arbitrary_bytes_raises_only_edge_errors(data, chunks):
    try:
        F.decode_all(data, chunks)
    except EdgeError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64), st.lists(st.integers(1, 40), max_size=6))
def test_valid_frames_survive_garbage_and_any_chunking(junk, chunks):
    frames = F.seed_frames()[:6]
    clean = F.decode_all(b"".join(frames), [])
    got = F.decode_all(junk.replace(b"\x00", b"") + b"\x00" + b"".join(frames), chunks)
    assert len(got) >= len(clean) and repr(got[-len(clean):]) == repr(clean)


def test_mutation_fuzz_of_the_decoder_finds_no_crash():
    r = F.fuzz_python_decoder(executions=3000, seed=1)
    assert r["executions"] == 3000 and r["crashes"] == 0, r["failures"]


def test_corrupted_model_files_end_in_edge_error_not_crash(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("runtime_support", Path(__file__).with_name("runtime_support.py"))
    support = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(support)
    pkg = support.build_test_package()
    arts = {"tflite": pkg / "model_int8.tflite", "manifest": pkg / "manifest.json"}
    r = F.fuzz_loaders(arts, cases_per_kind=6, seed=0, work=tmp_path)
    for kind, t in r.items():
        known = len(list((F.CORPUS_DIR / kind).glob("*")))  # reproducers checked in are replayed first
        assert t["executions"] == 6 + known and t["crashes"] == 0, (kind, t["failures"])
        assert t["edge_errors"] >= 4  # empty / 8-byte / half / minus-one-byte copies are all refused


def _fw_package(tmp_path):
    from ecgedge.device_sim.testmodels import write_test_package

    return write_test_package(tmp_path / "pkg", (Path(__file__).parent / "golden" / "firmware_opmix_int8.tflite")
                              .read_bytes())


@pytest.mark.backend
@pytest.mark.parametrize("target", list(F.C_TARGETS))
def test_c_fuzz_targets_bounded(target, tmp_path):
    """A smoke of each libFuzzer target (the benchmark runs them for minutes): the checked-in corpus replays,
    then a few hundred new inputs, no crash, no sanitizer report."""
    if shutil.which("clang") is None:
        pytest.skip("clang (libFuzzer) not installed: apt-get install clang")
    exe = F.build_c_fuzzer(target, _fw_package(tmp_path), tmp_path / target)
    r = F.run_c_fuzzer(exe, target, 0, tmp_path, runs=300 if target == "c_model_input" else 20_000)
    assert r["crashes"] == 0, r.get("log_tail")
    assert r["executions"] >= (300 if target == "c_model_input" else 20_000)


@pytest.mark.backend
@pytest.mark.parametrize("target", list(F.ATHERIS_TARGETS))
def test_atheris_fuzz_targets_bounded(target, tmp_path):
    """A smoke of each coverage-guided Python target: frame decoder, WFDB / EDF / CSV loaders, package reader."""
    pytest.importorskip("atheris")
    r = F.run_atheris(target, 0, tmp_path, runs=300, package=_fw_package(tmp_path))
    assert r["crashes"] == 0, r.get("log_tail")
    assert r["executions"] >= 300


REPRODUCERS = sorted(p for t in F.ATHERIS_TARGETS for p in (F.CORPUS_DIR / t).glob("*")
                     if p.name.startswith(("crash-", "timeout-", "oom-")))


@pytest.mark.parametrize("case", REPRODUCERS, ids=[f"{p.parent.name}/{p.name[:14]}" for p in REPRODUCERS])
def test_what_the_fuzzers_found_now_ends_in_edge_error(case, tmp_path, monkeypatch):
    """Each input a fuzzer once crashed or hung on (checked in) now loads or is refused with an EdgeError, fast."""
    import time

    target = case.parent.name
    if target == "package_manifest":
        monkeypatch.setenv("ECGEDGE_FUZZ_PACKAGE", str(_fw_package(tmp_path)))
    t0 = time.monotonic()
    try:
        getattr(F, F.ATHERIS_TARGETS[target])(case.read_bytes())
    except EdgeError:
        pass
    assert time.monotonic() - t0 < 10  # the 11-million-signal WFDB header took 17 s before


def test_loader_worker_answers_stay_in_step_when_onnxruntime_prints_on_stdout(tmp_path):
    """This corrupted .onnx (checked-in corpus) makes onnxruntime print an "EP Error" banner on stdout; the
    worker's answers must not be mixed up with it (the benchmark died on that line with a JSONDecodeError)."""
    case = F.CORPUS_DIR / "loader_onnx" / "ep_error_banner.onnx"
    w = F._Worker()
    try:
        assert [w.load("onnx", case, 60) for _ in range(2)] == ["EdgeError", "EdgeError"]
    finally:
        w.close()
    r = F.fuzz_loaders({"onnx": case}, cases_per_kind=4, seed=0, work=tmp_path)["loader_onnx"]
    assert r["executions"] == 4 + 1 and r["crashes"] == 0 and r["edge_errors"] == 5, r["failures"]


def test_a_tflite_that_loads_but_cannot_run_is_an_edge_error(tmp_path):
    """Found by the loader fuzzer: LiteRT loads this corrupted model and raises RuntimeError ("Input tensor 5 lacks
    data") only when run; edge-run printed a traceback."""
    case = next((F.CORPUS_DIR / "loader_tflite").glob("crash-*.tflite"))
    r = F.fuzz_loaders({"tflite": case}, cases_per_kind=1, seed=0, work=tmp_path)["loader_tflite"]
    assert r["crashes"] == 0 and r["edge_errors"] == r["executions"], r["failures"]
