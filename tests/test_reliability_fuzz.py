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
        assert t["executions"] == 6 and t["crashes"] == 0, (kind, t["failures"])
        assert t["edge_errors"] >= 4  # empty / 8-byte / half / minus-one-byte copies are all refused


@pytest.mark.backend
@pytest.mark.parametrize("target", list(F.C_TARGETS))
def test_c_fuzz_targets_bounded(target, tmp_path):
    if shutil.which("clang") is None:
        pytest.skip("clang (libFuzzer) not installed: apt-get install clang")
    from ecgedge.device_sim.testmodels import write_test_package

    pkg = write_test_package(tmp_path / "pkg", (Path(__file__).parent / "golden" / "firmware_opmix_int8.tflite")
                             .read_bytes())
    exe = F.build_c_fuzzer(target, pkg, tmp_path / target)
    r = F.run_c_fuzzer(exe, target, 12, tmp_path)
    assert r["crashes"] == 0, r.get("log_tail")
    assert r["executions"] > 10


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
