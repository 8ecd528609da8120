"""The bench at scale: shards over local worker processes and over a real local Ray cluster give the report one
process gives (timings and the run's own keys aside); a worker killed mid-run has its shard retried, every
window scored once, and the report says so."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hil_helpers import keras_float_fn, make_test_package  # noqa: E402

from ecgedge.device_sim.faults import KillWorkerAt  # noqa: E402
from ecgedge.errors import ConfigError  # noqa: E402
from ecgedge.hil_tests.bench import RUN_DEPENDENT_KEYS, BenchConfig, gate, prepare, run, run_bench, score  # noqa: E402
from ecgedge.hil_tests.evalset import synthetic_eval_set  # noqa: E402
from ecgedge.hil_tests.farm import device_resource  # noqa: E402
from ecgedge.hil_tests.shard import plan_shards  # noqa: E402

WINDOWS = 24


def test_shards_cut_between_records_cover_every_window_once():
    groups = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 4 + ["d"])
    for n in (1, 2, 3, 4, 13, 50):
        cuts = plan_shards(groups, n)
        assert cuts[0][0] == 0 and cuts[-1][1] == len(groups) and all(a < b for a, b in cuts)
        assert all(cuts[k][1] == cuts[k + 1][0] for k in range(len(cuts) - 1))
        assert all(groups[a] != groups[a - 1] for a, _ in cuts[1:])  # a record never spans two shards
    assert plan_shards(groups, 2) == [(0, 8), (8, 13)]


def test_a_device_url_names_its_ray_resource():
    assert device_resource("serial:///dev/ttyACM0?resource=board:nucleo-h743zi2") == (
        "serial:///dev/ttyACM0", "board:nucleo-h743zi2")
    assert device_resource("sim://pocket_k?seed=3&resource=board:x&speed=5") == ("sim://pocket_k?seed=3&speed=5",
                                                                                  "board:x")
    assert device_resource("host") == ("host", None)
    with pytest.raises(ConfigError, match="resource="):
        device_resource("host?resource=")


@pytest.mark.backend
def test_sharded_qemu_runs_build_the_firmware_the_url_asks_for(farm_package, tmp_path):
    """The shards' firmware, built once before they start, follows the URL's ?optimize= (the size build keeps
    int8 weights): the report's footprint is that build's, as a single-device run's is."""
    rep = {}
    for goal in ("speed", "size"):
        out = tmp_path / goal
        _bench(farm_package, out, device_url=f"qemu://cortex-m4?optimize={goal}", workers=2)
        rep[goal] = json.loads((out / "hil_report.json").read_text())
        assert rep[goal]["bit_exact_fraction"] == 1.0 and len(rep[goal]["shards"]) == 2
    from ecgedge.firmware_bridge.build import firmware_for_package
    for goal in rep:
        built = json.loads(firmware_for_package(farm_package[0], "cortex-m4", optimize=goal).with_suffix(".json")
                           .read_text())
        assert built["optimize"] == goal and rep[goal]["flash_bytes"] == built["flash_bytes"]
    assert rep["size"]["flash_bytes"] != rep["speed"]["flash_bytes"]
    # no ?optimize=: the goal the package's own firmware was built for (edge-export --firmware --optimize size)
    from ecgedge.hil_tests.devices import qemu_firmware
    pkg = tmp_path / "pkg"
    shutil.copytree(farm_package[0], pkg)
    (pkg / "report.json").write_text(json.dumps({"firmware": {"optimize": "size"}}))  # this test package has none
    assert json.loads(qemu_firmware(pkg, "cortex-m4", {}).with_suffix(".json").read_text())["optimize"] == "size"
    assert json.loads(qemu_firmware(farm_package[0], "cortex-m4", {}).with_suffix(".json").read_text())[
        "optimize"] == "speed"


@pytest.fixture(scope="module")
def farm_package(tmp_path_factory):
    pkg, model = make_test_package(tmp_path_factory.mktemp("farm_pkg") / "hil_testnet-cortex-m7")
    es = synthetic_eval_set(json.loads((pkg / "manifest.json").read_text()), WINDOWS)
    return pkg, es, keras_float_fn(model)


def _bench(farm_package, report_dir, **kw):
    pkg, es, float_fn = farm_package
    cfg = BenchConfig(model_dir=pkg, device_url=kw.pop("device_url", "host"), windows=WINDOWS, report_dir=report_dir,
                      progress=False, **kw)
    return run_bench(cfg, eval_set=es, float_fn=float_fn)


def _stable(report_dir: Path) -> dict:
    rep = json.loads((report_dir / "hil_report.json").read_text())
    return {k: v for k, v in rep.items() if k not in RUN_DEPENDENT_KEYS}


def _windows(report_dir: Path) -> dict:
    w = json.loads((report_dir / "windows.json").read_text())
    return {k: v for k, v in w.items() if k not in ("latency_ms", "round_trip_ms")}


@pytest.fixture(scope="module")
def single(farm_package, tmp_path_factory):
    out = tmp_path_factory.mktemp("farm_w1")
    res = _bench(farm_package, out, workers=1)
    assert res.passed and res.report["windows"] == WINDOWS and res.report["executor"] == "in-process"
    return out


def test_stages_run_alone_over_the_state(farm_package):
    pkg, es, float_fn = farm_package
    st = prepare(BenchConfig(model_dir=pkg, device_url="host", windows=8, progress=False), es, float_fn)
    assert st.run is None and st.q_in.shape[0] == 8 and st.float_raw.shape == (8, st.n_outputs)
    st = score(run(st))
    assert st.run.done == 8 and st.metrics["bit_exact_fraction"] == 1.0 and st.metrics["windows"] == 8
    assert [g.name for g in gate(st).gates if g.passed is False] == []


@pytest.mark.backend
def test_two_worker_processes_give_the_single_process_report(farm_package, single, tmp_path):
    res = _bench(farm_package, tmp_path, workers=2)
    assert res.report["executor"] == "local processes (2)" and len(res.report["shards"]) == 2
    assert res.report["retries"] == []
    assert _stable(tmp_path) == _stable(single)
    assert _windows(tmp_path) == _windows(single)


@pytest.mark.backend
def test_a_killed_worker_process_has_its_shard_retried(farm_package, single, tmp_path):
    marker = tmp_path / "killed"
    res = _bench(farm_package, tmp_path / "rep", workers=2, on_window=KillWorkerAt(WINDOWS - 3, str(marker)))
    assert marker.is_file() and res.error is None
    assert _stable(tmp_path / "rep") == _stable(single)  # every window scored once, none twice
    (retry,) = res.report["retries"]
    assert retry["windows"][0] <= WINDOWS - 3 < retry["windows"][1] and "exit code -9" in retry["reason"]
    assert sorted(s["attempts"] for s in res.report["shards"]) == [1, 2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path, monkeypatch):
    """`ray start --head` on 127.0.0.1 (no CPUs: it only schedules) and two worker nodes, each with one CPU,
    the board `board:x` and a resource of its own (rack:a, rack:b)."""
    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).with_name("ray")
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    port, procs = _free_port(), []
    temp = Path(f"/tmp/ecgedge-ray-{os.getpid()}-{port}")  # short: Ray's socket paths have a length limit

    def start(args, resources=None):
        extra = [f"--resources={json.dumps(resources)}"] if resources else []
        procs.append(subprocess.Popen(
            [str(ray_bin), "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
             "--object-store-memory=80000000", f"--dashboard-agent-listen-port={_free_port()}",
             f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}",
             f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}", *args, *extra],
            env=env, start_new_session=True, stdout=open(tmp_path / f"ray{len(procs)}.log", "w"),
            stderr=subprocess.STDOUT))

    def wait_for(what):
        import ray
        for _ in range(240):
            try:
                if what(ray.cluster_resources()):
                    return
            except Exception:
                pass
            time.sleep(0.5)
        logs = [p.read_text()[-400:] for p in tmp_path.glob("ray*.log")]
        raise AssertionError(f"the Ray cluster did not come up: {logs}")

    import ray
    try:
        start(["--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false", f"--temp-dir={temp}",
               f"--dashboard-agent-grpc-port={_free_port()}"])
        for _ in range(240):
            try:
                ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
                break
            except Exception:
                time.sleep(0.5)
        for rack in ("a", "b"):  # one at a time: two raylets starting together can race for a port
            start([f"--address=127.0.0.1:{port}", "--num-cpus=1", f"--dashboard-agent-grpc-port={_free_port()}"],
                  {"board:x": 1, f"rack:{rack}": 1})
            wait_for(lambda r, rack=rack: r.get(f"rack:{rack}"))
        ray.shutdown()
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        for p in procs[::-1]:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in procs:
            p.wait(30)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.backend
def test_a_ray_cluster_runs_the_shards_on_the_board_nodes_and_retries_a_killed_worker(farm_package, single,
                                                                                        ray_cluster, tmp_path):
    marker = tmp_path / "killed"
    res = _bench(farm_package, tmp_path / "rep", device_url="host?resource=board:x", ray=ray_cluster,
                 on_window=KillWorkerAt(WINDOWS - 3, str(marker)))
    assert marker.is_file() and res.error is None
    rep = res.report
    assert rep["executor"] == f"ray {ray_cluster}" and rep["workers"] == 2 and len(rep["shards"]) == 2
    (retry,) = rep["retries"]
    assert retry["windows"][0] <= WINDOWS - 3 < retry["windows"][1] and "WorkerCrashedError" in retry["reason"]
    assert all("ray node" in s["node"] for s in rep["shards"])
    stable = _stable(tmp_path / "rep")
    assert stable.pop("device") == "host?resource=board:x"
    want = _stable(single)
    want.pop("device")
    assert stable == want and _windows(tmp_path / "rep") == _windows(single)


def test_ray_resource_without_ray_and_bad_workers_fail_in_one_line(farm_package, tmp_path):
    with pytest.raises(ConfigError, match="names a Ray resource"):
        _bench(farm_package, tmp_path, device_url="host?resource=board:x")
    with pytest.raises(ConfigError, match="--workers 0"):
        _bench(farm_package, tmp_path, workers=0)


def test_matrix_export_options_are_typed_and_checked():
    from ecgedge.hil_tests.matrix import device_for, parse_export_options

    assert parse_export_options(["calib_windows=32", "calibrator=minmax", "latency_ms=12.5", "firmware=true"]) == {
        "calib_windows": 32, "calibrator": "minmax", "latency_ms": 12.5, "firmware": True}
    with pytest.raises(ConfigError, match="calib_windoes"):
        parse_export_options(["calib_windoes=3"])
    with pytest.raises(ConfigError, match="is not a int"):
        parse_export_options(["calib_windows=many"])
    assert device_for("qemu", "cortex-m4") == "qemu://cortex-m4" and device_for("host", "x") == "host"


@pytest.mark.backend
def test_matrix_exports_once_then_reuses_the_cache(tiny_pocket_k_checkpoint, tmp_path, monkeypatch, capsys):
    from ecgedge.tools import edge_hil

    monkeypatch.setenv("ECGEDGE_CACHE", str(tmp_path / "cache"))
    args = ["matrix", "--models", "pocket_k", "--targets", "cortex-m7", "--devices", "host", "--windows", "8",
            "--checkpoint", str(tiny_pocket_k_checkpoint), "--export-option", "calib_windows=32",
            "--export-option", "val_windows=60", "--export-option", "calibrator=minmax",
            "--export-option", "qat_epochs=0", "--workers", "1",
            "--no-float", "--no-progress"]
    for k, want in ((1, "exported in"), (2, "cached")):
        with pytest.raises(SystemExit) as e:
            edge_hil.main([*args, "--out", str(tmp_path / f"m{k}")])
        summary = json.loads((tmp_path / f"m{k}" / "matrix.json").read_text())
        (cell,) = summary["cells"]
        assert cell["export"].startswith(want) and cell["error"] is None, cell
        assert cell["bit_exact_fraction"] == 1.0 and cell["windows"] == 8 and cell["device"] == "host"
        assert e.value.code == (0 if cell["gates_passed"] else 1)
        html = (tmp_path / f"m{k}" / "matrix.html").read_text()
        assert "pocket_k" in html and "report.html" in html
    assert len(list((tmp_path / "cache" / "exports").iterdir())) == 1


def test_ray_missing_is_one_line_and_bad_workers_exit_2(monkeypatch, capsys, tmp_path):
    from ecgedge.hil_tests.farm import import_ray
    from ecgedge.tools import edge_hil

    monkeypatch.setitem(sys.modules, "ray", None)  # as on an install without the farm extra
    with pytest.raises(ConfigError, match=r"pip install 'ecgedge\[farm\]'"):
        import_ray()
    with pytest.raises(SystemExit) as e:
        edge_hil.main(["run", "--model", str(tmp_path), "--device", "host", "--workers", "0", "--no-progress"])
    err = capsys.readouterr().err  # the parser's one line (tools/_cli): the flag and the value named
    assert e.value.code == 2 and err.count("\n") == 1 and "--workers" in err and "'0'" in err
