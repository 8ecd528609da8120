"""The firmware app's protocol (C codec + handlers), host build under ASan/UBSan, against the Python codec."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ecgedge.firmware_bridge import protocol as P
from ecgedge.firmware_bridge.build import build_host
from ecgedge.firmware_bridge.client import FirmwareClient
from ecgedge.device_sim.testmodels import write_test_package

GOLDEN = Path(__file__).parent / "golden"
MODEL = GOLDEN / "firmware_opmix_int8.tflite"


@pytest.fixture(scope="session")
def package(tmp_path_factory):
    return write_test_package(tmp_path_factory.mktemp("pkg"), MODEL.read_bytes())


@pytest.fixture(scope="session")
def serve_exe(package, tmp_path_factory):
    return build_host(package, tmp_path_factory.mktemp("serve"), "serve", optimized=True, sanitize=True)


@pytest.fixture()
def client(serve_exe):
    proc = subprocess.Popen([str(serve_exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    c = FirmwareClient(proc=proc)
    yield c
    c.close()
    err = proc.stderr.read().decode()
    assert proc.returncode == 0, err[-3000:]
    assert "runtime error" not in err and "AddressSanitizer" not in err, err[-3000:]


def test_hello_info(client, package):
    import json

    info = client.hello()
    man = json.loads((package / "manifest.json").read_text())
    assert info.proto_version == 1 and info.flags & 2 and info.flags & 1 and info.flags & 4
    assert info.model_sha256.hex() == man["model_sha256"]
    assert info.window_len == man["input"]["window_samples"]
    assert np.isclose(info.input_scale, man["input"]["tflite_scale"], rtol=1e-6)
    assert info.input_zero_point == man["input"]["tflite_zero_point"]
    assert info.n_outputs == 3 and info.arena_bytes > 0 and info.name.startswith("ecgedge-fw")


def test_load_input_infer_matches_golden(client):
    g = np.load(GOLDEN / "firmware_opmix_vectors.npz")
    for q, expect in zip(g["inputs"], g["outputs"]):
        r = client.infer(q, count=2, warmup=1)
        assert r.outputs == tuple(int(v) for v in expect)


def test_errors_for_bad_requests(client):
    client.send(P.MsgType.INFER, P.pack_infer(P.Infer(1, 0)))
    e = P.unpack_error(client.recv().payload)
    assert e.code == P.ErrorCode.ERR_STATE
    seq = client.send(P.MsgType.LOAD_INPUT, P.pack_load_input(P.LoadInput(250, bytes(10))))
    f = client.recv()
    assert f.type == P.MsgType.ERROR and P.unpack_error(f.payload).code == P.ErrorCode.ERR_RANGE
    assert P.unpack_error(f.payload).related_seq == seq
    client.send(P.MsgType.INFER, b"\x01")
    assert P.unpack_error(client.recv().payload).code == P.ErrorCode.ERR_LENGTH
    client.write(P.encode_frame(0x55, 9, b""))
    assert P.unpack_error(client.recv().payload).code == P.ErrorCode.ERR_TYPE
    client.write(P.encode_frame(P.MsgType.HELLO, 10, b"", version=2))
    assert P.unpack_error(client.recv().payload).code == P.ErrorCode.ERR_VERSION
    raw = bytearray(P.frame_bytes(P.MsgType.HELLO, 11, b""))
    raw[-1] ^= 0xFF
    from cobs import cobs

    client.write(cobs.encode(bytes(raw)) + b"\x00")
    e = P.unpack_error(client.recv().payload)
    assert e.code == P.ErrorCode.ERR_CRC and e.related_seq == 11


def test_survives_garbage_then_answers(client):
    rng = np.random.default_rng(7)
    for _ in range(50):
        client.write(rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes())
    client.write(b"\x00")
    # the garbage provokes ERROR frames (bad length/CRC/type); after them HELLO must still get INFO
    client.send(P.MsgType.HELLO)
    kinds = set()
    for _ in range(2000):
        f = client.recv(timeout=20)
        if f.type == P.MsgType.INFO:
            break
        assert f.type == P.MsgType.ERROR
        kinds.add(P.unpack_error(f.payload).code)
    else:
        raise AssertionError("no INFO after garbage")
    assert P.unpack_info(f.payload).proto_version == 1
    assert kinds  # the garbage was noticed and answered, not silently swallowed


def test_samples_window_infer_quantises_on_device(client, package):
    import json

    from tflite_micro import runtime

    man = json.loads((package / "manifest.json").read_text())
    inp = man["input"]
    w = inp["window_samples"]
    t = np.arange(3 * w) / 500.0
    uv = 900 * np.sin(2 * np.pi * 1.3 * t) + 300 * np.sin(2 * np.pi * 7 * t)
    counts = np.round(uv).astype(np.int16)  # uv_per_lsb = 1.0
    client.send_samples(0, counts)
    it = runtime.Interpreter.from_file(str(MODEL), arena_size=4_000_000)
    shape = tuple(it.get_input_details(0)["shape"])
    for first in (0, 17, 2 * w):
        r = client.window_infer(first)
        x = counts[first:first + w].astype(np.float64) * 1.0 / inp["scale_uv"]
        q = np.clip(np.round(x / inp["tflite_scale"]) + inp["tflite_zero_point"], -128, 127).astype(np.int8)
        it.set_input(q.reshape(shape), 0)
        it.invoke()
        assert r.outputs == tuple(int(v) for v in it.get_output(0).reshape(-1))
    client.send(P.MsgType.WINDOW_INFER, P.pack_window_infer(P.WindowInfer(2 * w + 1)))
    assert P.unpack_error(client.recv().payload).code == P.ErrorCode.ERR_RANGE
    st = client.status()
    assert st.total == 3 * w and st.dropped == 0


def test_c_and_python_codecs_agree_both_ways(tmp_path, package):
    exe = build_host(package, tmp_path, "codec", sanitize=True)
    rng = np.random.default_rng(11)
    frames = []
    for i in range(400):
        n = int(rng.choice([0, 1, 2, 253, 254, 255, 256, 508, 1024, int(rng.integers(0, 1025))]))
        payload = rng.integers(0, 256, n, dtype=np.uint8)
        if i % 3 == 0:
            payload[rng.random(n) < 0.3] = 0
        t = int(rng.choice([m.value for m in P.MsgType]))
        frames.append((t, int(rng.integers(0, 65536)), payload.tobytes()))
    data = b"".join(P.encode_frame(t, s, p) for t, s, p in frames)
    r = subprocess.run([str(exe)], input=data, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    back = P.FrameDecoder().feed(r.stdout)
    assert [(f.type, f.seq, bytes(f.payload)) for f in back] == frames
    assert r.stdout == data or len(r.stdout) > 0  # encodings may differ only in COBS block ends


@pytest.mark.backend
def test_fuzz_protocol_parser_bounded(tmp_path, package):
    if shutil.which("clang") is None:
        pytest.skip("clang (libFuzzer) not installed: apt-get install clang")
    exe = build_host(package, tmp_path, "fuzz", sanitize=True)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, (t, p) in enumerate([(1, b""), (0x10, bytes(8)), (0x11, b"\x01\x00\x00\x00"), (0x22, bytes(4))]):
        (corpus / f"seed{i}").write_bytes(P.encode_frame(t, i, p) + bytes([t]) + p)
    # ASan shadow memory and quarantine, not the parser (its live heap stays ~24 MB), pass 1 GB of RSS
    r = subprocess.run([str(exe), "-max_total_time=20", "-rss_limit_mb=4096", str(corpus)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done" in r.stderr and "ERROR" not in r.stderr
