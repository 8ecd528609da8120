"""Fuzzing: the C frame parser alone, the C protocol handlers and the C model-input path (libFuzzer + ASan/UBSan
host builds), the Python frame decoder (mutations of real frames fed in random chunks; atheris), the recording
loaders (WFDB, EDF, CSV) and the package/manifest reader (atheris, coverage-guided, in a child process: a
crash or hang is seen, its input kept), and the model loaders (truncated or corrupted .tflite / .onnx /
checkpoint .pt / manifest.json in a worker process with a timeout). Only EdgeError may come out of a loader.
Seeds live in tests/fuzz_corpus/<target>/ (with any crash reproducer found, replayed first).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ecgedge.errors import EdgeError

CORPUS_DIR = Path(__file__).resolve().parents[1] / "tests" / "fuzz_corpus"
# target -> (its C file, whether it links the device app and a generated model)
C_TARGETS = {"c_frame_parser": ("fuzz_frame_decoder.c", False), "c_protocol_parser": ("fuzz_protocol.c", True),
             "c_model_input": ("fuzz_model_input.c", True)}


# -- Python frame decoder ---------------------------------------------------------------------------------------
def seed_frames() -> list[bytes]:
    """Valid frames of every message type (also written to tests/fuzz_corpus/python_decoder)."""
    from ecgedge.firmware_bridge import protocol as P

    samples = P.pack_samples(P.Samples(123, 456789, np.arange(-25, 25, dtype=np.int16) * 40))
    status = P.pack_status(P.Status(0, 97, 1, 50, 10_000))
    out = [P.encode_frame(P.MsgType.HELLO, 0, b""), P.encode_frame(P.MsgType.SAMPLES, 1, samples),
           P.encode_frame(P.MsgType.STATUS, 2, status), P.encode_frame(P.MsgType.START, 3, b""),
           P.encode_frame(P.MsgType.INFER, 4, b"\x01\x00\x00\x00"),
           P.encode_frame(P.MsgType.LOAD_INPUT, 5, b"\x00\x00\x00\x00" + bytes(range(64)))]
    if (CORPUS_DIR / "python_decoder").is_dir():
        out += [p.read_bytes() for p in sorted((CORPUS_DIR / "python_decoder").iterdir()) if p.is_file()]
    return out


def mutate(data: bytes, rng: np.random.Generator, pool: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        op = int(rng.integers(0, 6))
        if op == 0 and b:  # bit flip
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and b:  # random byte
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        elif op == 2 and b:  # truncate
            del b[int(rng.integers(0, len(b))):]
        elif op == 3:  # insert random bytes
            i = int(rng.integers(0, len(b) + 1))
            b[i:i] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
        elif op == 4:  # splice another frame in
            other = pool[int(rng.integers(0, len(pool)))]
            i = int(rng.integers(0, len(b) + 1))
            b[i:i] = other[: int(rng.integers(0, len(other) + 1))]
        elif op == 5 and b:  # drop a byte (e.g. a COBS delimiter)
            del b[int(rng.integers(0, len(b)))]
    return bytes(b)


def decode_all(data: bytes, chunks: list[int]) -> list:
    """Feed `data` to a fresh FrameDecoder in pieces; unpack every frame's payload. Only EdgeError may escape."""
    from ecgedge.firmware_bridge import protocol as P

    dec = P.FrameDecoder()
    frames, pos = [], 0
    for n in chunks + [len(data)]:
        frames += dec.feed(data[pos:pos + n])
        pos += n
        if pos >= len(data):
            break
    out = []
    for f in frames:
        try:
            out.append(P.unpack_payload(f))
        except EdgeError:
            out.append(None)
    return out


def fuzz_python_decoder(executions: int = 20_000, seed: int = 0, seconds: float | None = None) -> dict:
    rng = np.random.default_rng(seed)
    pool = seed_frames()
    crashes, failures, n = 0, [], 0
    t_end = time.monotonic() + seconds if seconds else None
    while (n < executions) if t_end is None else (time.monotonic() < t_end):
        stream = b"".join(pool[int(i)] for i in rng.integers(0, len(pool), int(rng.integers(1, 4))))
        data = mutate(stream, rng, pool)
        chunks = [int(c) for c in rng.integers(1, 64, 8)]
        try:
            decode_all(data, chunks)
        except EdgeError:
            pass
        except Exception as e:  # noqa: BLE001 - anything else is a decoder crash
            crashes += 1
            if len(failures) < 5:
                failures.append({"input": data.hex(), "error": f"{type(e).__name__}: {e}"})
        n += 1
    return {"executions": n, "crashes": crashes, "failures": failures, "engine": "mutation (numpy rng)"}


# -- C targets (libFuzzer) -------------------------------------------------------------------------------------
def build_c_fuzzer(target: str, package_dir, out_dir) -> Path:
    """libFuzzer + ASan/UBSan host build of one C target (against a package's generated model where the target
    runs the device app)."""
    from ecgedge.firmware_bridge import build as B

    src, with_app = C_TARGETS[target]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cc = B._need("clang")
    flags = ["-O1", "-g", *B.COMMON_CFLAGS, "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined",
             "-fno-omit-frame-pointer", "-DECG_FUZZING"]
    if with_app:
        B.generate_into(package_dir, out / "gen")
        srcs = [B.C_DIR / s for s in B.KERNELS + [src] + B.APP] + [out / "gen" / "model.c"]
    else:
        srcs = [B.C_DIR / src, B.C_DIR / "protocol.c"]
    exe = out / f"ecg_{target}"
    B._run([cc, *flags, f"-I{B.C_DIR}", f"-I{out / 'gen'}", *map(str, srcs), "-lm", "-o", str(exe)],
           f"clang libFuzzer build ({target})")
    return exe


def _libfuzzer_runs(log: str) -> int:
    m = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log) or re.findall(r"Done (\d+) runs", log) \
        or re.findall(r"#(\d+)\s", log)
    return int(m[-1]) if m else 0


def _scratch_corpus(target: str, work: Path) -> tuple[Path, Path]:
    corpus = Path(work) / f"{target}-corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir(parents=True)
    for p in sorted((CORPUS_DIR / target).glob("*")):
        if p.is_file():
            shutil.copy(p, corpus / p.name)
    art = Path(work) / f"{target}-artifacts"
    shutil.rmtree(art, ignore_errors=True)
    art.mkdir(parents=True)
    return corpus, art


def _libfuzzer_result(r, target: str, corpus: Path, art: Path, engine: str, seconds: float) -> dict:
    crashes = int(r.returncode != 0)
    runs = _libfuzzer_runs(r.stderr)
    out = {"executions": runs, "crashes": crashes, "engine": engine, "seconds": round(seconds, 1),
           "executions_per_s": round(runs / max(seconds, 1e-9)), "corpus_files": len(list(corpus.iterdir()))}
    if crashes:
        out["log_tail"] = r.stderr[-2000:]
        out["artifacts"] = [str(p) for p in art.iterdir()]
    return out


def run_c_fuzzer(exe: Path, target: str, seconds: float, work: Path, runs: int | None = None) -> dict:
    """Run libFuzzer for `seconds` and/or `runs` inputs (whichever ends first) on a scratch copy of the checked-in
    corpus. Crash = non-zero exit (its input is left in the artifacts folder)."""
    corpus, art = _scratch_corpus(target, work)
    bound = ([f"-runs={runs}"] if runs else []) + ([f"-max_total_time={int(max(1, seconds))}"] if seconds else [])
    t0 = time.monotonic()
    r = subprocess.run([str(exe), *bound, "-rss_limit_mb=4096", "-timeout=10", "-print_final_stats=1",
                        f"-artifact_prefix={art}/", str(corpus)],
                       capture_output=True, text=True, timeout=(seconds or 3600) + 180)
    return _libfuzzer_result(r, target, corpus, art, "libFuzzer+ASan+UBSan", time.monotonic() - t0)


# -- Python targets under atheris (coverage-guided) -----------------------------------------------------------
def _scratch() -> Path:
    d = Path(tempfile.gettempdir()) / f"ecgedge-fuzz-{os.getpid()}"
    d.mkdir(exist_ok=True)
    return d


def one_frame_decoder(data: bytes) -> None:
    decode_all(data, [7, 13, 64])


def one_wfdb(data: bytes) -> None:
    """A WFDB record from fuzzed bytes: the header text up to the first 0xFF, the signal file after it."""
    from ecgedge.signals import load_record

    d = _scratch()
    head, _, body = data.partition(b"\xff")
    (d / "r.hea").write_bytes(head)
    (d / "r.dat").write_bytes(body)
    load_record(d / "r.hea", sampling_rate=500)


def one_edf(data: bytes) -> None:
    from ecgedge.signals import load_record

    d = _scratch()
    (d / "r.edf").write_bytes(data)
    load_record(d / "r.edf", sampling_rate=500)


def one_csv(data: bytes) -> None:
    from ecgedge.signals import load_record

    d = _scratch()
    (d / "r.csv").write_bytes(data)
    load_record(d / "r.csv", sampling_rate=500)


def one_manifest(data: bytes) -> None:
    """The package reader on a fuzzed manifest.json next to real artefacts (ECGEDGE_FUZZ_PACKAGE)."""
    from ecgedge.contract.package import load_package

    d = _scratch() / "pkg"
    if not d.is_dir():
        shutil.copytree(os.environ["ECGEDGE_FUZZ_PACKAGE"], d)
    (d / "manifest.json").write_bytes(data)
    load_package(d)


ATHERIS_TARGETS = {"python_frame_decoder": "one_frame_decoder", "loader_wfdb": "one_wfdb", "loader_edf": "one_edf",
                   "loader_csv": "one_csv", "package_manifest": "one_manifest"}

_ATHERIS = """
import sys, atheris
with atheris.instrument_imports(include=["ecgedge"]):
    from ecgedge.hil_tests import fuzzing as F
    import ecgedge.signals, ecgedge.signals.io, ecgedge.contract.package, ecgedge.firmware_bridge.protocol
from ecgedge.errors import EdgeError
fn = getattr(F, sys.argv[1])
def one(data):
    try:
        fn(data)
    except EdgeError:
        pass
atheris.Setup([sys.argv[0], *sys.argv[2:]], one)
atheris.Fuzz()
"""


def run_atheris(target: str, seconds: float, work: Path, runs: int | None = None, package: Path | None = None
                ) -> dict | None:
    """One Python target under atheris in a child process (a crash or hang ends only the child; its input is
    kept). None when atheris is not installed."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        return None
    corpus, art = _scratch_corpus(target, work)
    if target == "python_frame_decoder":
        for i, f in enumerate(seed_frames()):
            (corpus / f"seed{i}").write_bytes(f)
    if target == "package_manifest" and package is not None:  # the real manifest of the package fuzzed
        shutil.copy(Path(package) / "manifest.json", corpus / "manifest_of_the_package.json")
    bound = [f"-runs={runs}"] if runs else [f"-max_total_time={int(max(1, seconds))}"]
    env = {**os.environ, **({"ECGEDGE_FUZZ_PACKAGE": str(package)} if package else {})}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", _ATHERIS, ATHERIS_TARGETS[target], *bound, "-rss_limit_mb=4096",
                        "-timeout=20", "-print_final_stats=1", f"-artifact_prefix={art}/", str(corpus)],
                       capture_output=True, text=True, timeout=(seconds or 120) + 300, env=env)
    return _libfuzzer_result(r, target, corpus, art, "atheris (libFuzzer engine)", time.monotonic() - t0)


# -- model loaders -----------------------------------------------------------------------------------------------
_WORKER = r"""
import json, sys, os
from pathlib import Path
from ecgedge.errors import EdgeError

def load(kind, path):
    if kind == "tflite":
        from ecgedge.contract.runners import LiteRtRunner
        import numpy as np
        e = LiteRtRunner(path)
        e.run_one(np.zeros(e.input_size, np.int8))
    elif kind == "onnx":
        from ecgedge.contract.runners import OrtRunner
        OrtRunner(path)
    elif kind == "checkpoint":
        from ecgedge.models.zoo import load_model
        load_model("pocket_k", checkpoint=path)
    elif kind == "manifest":
        from ecgedge.contract.package import load_package
        load_package(Path(path).parent)
    else:
        raise SystemExit(f"unknown kind {kind}")

# answers go out on a private copy of stdout; fd 1 itself goes to stderr, so that what a library prints
# (onnxruntime writes "EP Error" banners to stdout) cannot be taken for an answer
_answers = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
print("ready", file=_answers, flush=True)
for line in sys.stdin:
    kind, path = json.loads(line)
    try:
        load(kind, path)
        res = "loaded"
    except EdgeError as e:
        res = "EdgeError"
    except Exception as e:
        res = f"CRASH {type(e).__name__}: {str(e)[:200]}"
    print(json.dumps(res), file=_answers, flush=True)
"""


class _Worker:
    def __init__(self):
        self.p = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self._line(120)

    def _line(self, timeout: float) -> str | None:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.p.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        return self.p.stdout.readline() if ready else None

    def load(self, kind: str, path: Path, timeout: float) -> str:
        self.p.stdin.write(json.dumps([kind, str(path)]) + "\n")
        self.p.stdin.flush()
        line = self._line(timeout)
        if line is None:
            self.close()
            return "HANG"
        if not line:
            rc = self.p.wait()
            return f"CRASH exit {rc}"
        return json.loads(line)

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def loader_cases(kind: str, original: bytes, n_cases: int, rng: np.random.Generator) -> list[bytes]:
    """Truncations at spread-out lengths plus corrupted copies (random bytes overwritten, zeroed runs)."""
    cases = [b"", original[:8], original[: len(original) // 2], original[:-1]]
    while len(cases) < n_cases:
        b = bytearray(original)
        if rng.random() < 0.3:
            del b[int(rng.integers(1, len(b))):]
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(0, len(b))) if b else 0
            if b and rng.random() < 0.5:
                b[i] = int(rng.integers(0, 256))
            elif b:
                b[i:i + 32] = bytes(len(b[i:i + 32]))
        cases.append(bytes(b))
    return cases[:n_cases]


def fuzz_loaders(artefacts: dict[str, Path], cases_per_kind: int = 12, seed: int = 0, timeout_s: float = 60.0,
                 work: Path | None = None, progress=None) -> dict:
    """artefacts: kind ('tflite' | 'onnx' | 'checkpoint' | 'manifest') -> a valid file (a manifest.json inside
    its package folder). Every corrupted copy is loaded in a worker process: EdgeError or a clean load pass,
    an exception of another type, a dead worker or a hang counts as a crash."""
    rng = np.random.default_rng(seed)
    work = Path(work or tempfile.mkdtemp(prefix="loader-fuzz-"))
    results = {}
    for kind, path in artefacts.items():
        original = Path(path).read_bytes()
        if kind == "manifest":
            case_dir = work / "pkg"
            shutil.rmtree(case_dir, ignore_errors=True)
            shutil.copytree(Path(path).parent, case_dir)
            target = case_dir / "manifest.json"
        else:
            case_dir = work / kind
            case_dir.mkdir(parents=True, exist_ok=True)
            target = case_dir / Path(path).name
        tally = {"executions": 0, "crashes": 0, "hangs": 0, "edge_errors": 0, "loaded": 0, "failures": []}
        worker = _Worker()
        corpus = CORPUS_DIR / f"loader_{kind}"  # inputs that once went wrong, replayed first
        known = [f.read_bytes() for f in sorted(corpus.iterdir()) if f.is_file()] if corpus.is_dir() else []
        for data in known + loader_cases(kind, original, cases_per_kind, rng):
            target.write_bytes(data)
            res = worker.load(kind, target, timeout_s)
            tally["executions"] += 1
            if res == "EdgeError":
                tally["edge_errors"] += 1
            elif res == "loaded":
                tally["loaded"] += 1
            else:
                tally["crashes"] += 1
                tally["hangs"] += int(res == "HANG")
                if len(tally["failures"]) < 5:
                    tally["failures"].append({"bytes": len(data), "result": res})
                worker.close()
                worker = _Worker()
            if progress:
                progress(kind)
        worker.close()
        results[f"loader_{kind}"] = tally
    return results
