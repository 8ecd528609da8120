"""The command lines' shared layer (tools/_cli.py) on every edge-* command: --help with examples and exit
codes, help on every flag, --version, bad numbers and paths refused before any work (one line naming the
flag, exit 2), unexpected exceptions as one line + a log file (exit 70), library output kept out of ours,
the list commands (JSON, 80 columns, no torch), and what the weights' labels say."""

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecgedge import labels
from ecgedge.errors import ConfigError, FirmwareError
from ecgedge.tools import (_cli, edge_analyze, edge_engine, edge_export, edge_flash, edge_hil, edge_keygen, edge_run,
                           edge_sim, edge_train)

_spec = importlib.util.spec_from_file_location("runtime_support", Path(__file__).with_name("runtime_support.py"))
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

BIN = Path(sys.executable).parent
PARSERS = {"edge-train": edge_train.parser, "edge-export": edge_export.parser, "edge-run": edge_run.parser,
           "edge-sim": edge_sim.parser, "edge-hil": edge_hil.parser, "edge-keygen": edge_keygen.parser,
           "edge-engine": edge_engine.parser, "edge-flash": edge_flash.parser, "edge-analyze": edge_analyze.parser}


def _help(parser_fn, *sub) -> str:
    p = parser_fn()
    if sub:
        p = next(a for a in p._actions if a.choices and sub[0] in a.choices).choices[sub[0]]
    return p.format_help()


@pytest.mark.parametrize("name", PARSERS)
def test_help_has_examples_exit_codes_and_every_flag_documented(name):
    parser = PARSERS[name]()
    assert _cli.undocumented_flags(parser) == []
    text = parser.format_help()
    assert "examples:\n  edge-" in text and "exit codes:\n  0 " in text and "\n  2 " in text and "\n  70 " in text
    sub = {"edge-hil": "run", "edge-sim": "serve", "edge-engine": "verify"}.get(name)
    if sub:
        text = _help(PARSERS[name], sub)
        assert "examples:" in text and "exit codes:" in text and "--verbose" in text


def test_edge_hil_run_help_says_what_its_exit_codes_mean():
    text = _help(edge_hil.parser, "run")
    assert "exit codes:" in text and "\n  1   a gate was crossed" in text and "\n  0   every gate passed" in text


@pytest.mark.parametrize("name", PARSERS)
def test_version(name, capsys):
    with pytest.raises(SystemExit) as e:
        PARSERS[name]().parse_args(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"{name} (ecgedge) 0.1.0"


BAD = [
    (edge_run.parse, ["--model", "m", "--source", "sim://pocket_k", "--hop", "-3"], "--hop", "a whole number >= 1"),
    (edge_run.parse, ["--model", "m", "--source", "sim://pocket_k", "--duration", "-5"], "--duration", "a number > 0"),
    (edge_run.parse, ["--model", "m", "--source", "s", "--duration", "nan"], "--duration", "a number > 0"),
    (edge_run.parse, ["--model", "m", "--source", "s", "--stall-timeout", "0"], "--stall-timeout", "> 0"),
    (edge_run.parse, ["--model", "m", "--source", "s", "--ui", "localhost"], "--ui", "HOST:PORT"),
    (edge_run.parse, ["--config", "/nonexistent.toml"], "--config", "an existing file"),
    (edge_sim.parse, ["serve", "--pty", "--k", "40"], "--k", "in [1, 10]"),
    (edge_sim.parse, ["serve", "--pty", "--drop", "1"], "--drop", "in [0, 1)"),
    (edge_sim.parse, ["serve", "--pty", "--samples-per-frame", "9999"], "--samples-per-frame", "in [1, 505]"),
    (edge_sim.parse, ["serve", "--tcp", "127.0.0.1:99999"], "--tcp", "HOST:PORT"),
    (edge_sim.parse, ["serve", "--pty", "--replay", "/nonexistent.hea"], "--replay", "an existing file"),
    (edge_train.parse, ["pocket_k", "--subjects", "2"], "--subjects", "a whole number >= 3"),
    (edge_train.parse, ["pocket_k", "--lr", "0"], "--lr", "a number > 0"),
    (edge_train.parse, ["af_lead1", "--data", "/nonexistent"], "--data", "an existing folder"),
    (edge_export.parse, ["pocket_k", "--target", "cortex-m7", "--calib-windows", "0"], "--calib-windows", ">= 1"),
    (edge_export.parse, ["pocket_k", "--target", "cortex-m7", "--latency-ms", "-1"], "--latency-ms", "> 0"),
    (edge_export.parse, ["pocket_k", "--target", "cortex-m7", "--seed", "-1"], "--seed", "in [0, 4,294,967,295]"),
    (edge_export.parse, ["pocket_k", "--target", "cortex-m7", "--checkpoint", "/no.pt"], "--checkpoint", "existing"),
    (edge_hil.parse, ["run", "--model", "/nonexistent", "--device", "sim://pocket_k"], "--model", "an existing folder"),
    (edge_hil.parse, ["run", "--model", ".", "--device", "d", "--windows", "0"], "--windows", ">= 1"),
    (edge_hil.parse, ["run", "--model", ".", "--device", "d", "--timeout", "-2"], "--timeout", "> 0"),
    (edge_keygen.parse, ["--out", "/nonexistent/dir/key"], "--out", "an existing folder"),
    (edge_engine.parse, ["verify", "m.tflite", "--core", "host", "--inputs", "0"], "--inputs", ">= 1"),
    (edge_engine.parse, ["verify", "m.tflite", "--core", "host", "--data", "/no.npy"], "--data", "an existing file"),
    (edge_flash.parse, ["pkg", "--board", "nucleo-h743zi2", "--timeout", "0"], "--timeout", "> 0"),
]


@pytest.mark.parametrize("parse,args,flag,expected", BAD, ids=[f"{b[2]}={b[1][-1]}" for b in BAD])
def test_bad_numbers_and_paths_are_one_line_naming_the_flag(parse, args, flag, expected, capsys):
    with pytest.raises(SystemExit) as e:
        parse(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: argument {flag}") and expected in err, err
    assert "Traceback" not in err


def test_config_values_are_checked_like_flags(tmp_path, capsys):
    cfg = tmp_path / "h.toml"
    cfg.write_text('[edge-run]\nmodel = "m"\nsource = "sim://pocket_k"\nhop = -3\n')
    with pytest.raises(SystemExit) as e:
        edge_run.parse(["--config", str(cfg)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "--hop" in err and "a whole number >= 1" in err
    cfg.write_text('[edge-run]\nmodel = "m"\nsource = "sim://pocket_k"\ninfer = "gpu"\n')
    with pytest.raises(SystemExit):
        edge_run.parse(["--config", str(cfg)])
    assert "--infer 'gpu': expected one of litert, onnxruntime, device" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--hop", "-3"], ["--duration", "-5"]])
def test_edge_run_refuses_bad_numbers_before_opening_anything(args, tmp_path):
    """The console script itself: exit 2, one line, nothing created (the --out folder does not appear)."""
    out = tmp_path / "s"
    r = subprocess.run([str(BIN / "edge-run"), "--model", str(tmp_path), "--source", "socket://127.0.0.1:1",
                        "--out", str(out), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1 and args[0] in r.stderr
    assert not out.exists()


def test_run_policy_exit_codes_and_log_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ECGEDGE_LOG_DIR", str(tmp_path))

    def edge_error():
        raise ConfigError("--thing 3: expected 4")

    def bug():
        raise KeyError("boom")

    def multiline():
        raise FirmwareError("build failed\ncompiler said: line 1\nline 2")

    assert _cli.run("edge-x", lambda: 0, quiet=False) == 0
    assert _cli.run("edge-x", lambda: None, quiet=False) == 0
    assert _cli.run("edge-x", edge_error, quiet=False) == 2
    assert capsys.readouterr().err == "error: --thing 3: expected 4\n"
    assert _cli.run("edge-x", bug, quiet=False) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unexpected KeyError: 'boom'")
    log = Path(err.rsplit("traceback in ", 1)[1].rstrip(")\n"))
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "KeyError: 'boom'" in log.read_text()
    assert _cli.run("edge-x", multiline, quiet=False) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: build failed (details in ")
    assert "line 2" in Path(err.rsplit("details in ", 1)[1].rstrip(")\n")).read_text()
    assert _cli.run("edge-x", lambda: (_ for _ in ()).throw(KeyboardInterrupt()), quiet=False) == 130
    # runs that wrote nothing leave no log behind
    assert len(list(tmp_path.glob("edge-x-*.log"))) == 2


NOISY = r"""
import logging, os, sys, warnings
from ecgedge.tools import _cli
from ecgedge.models.zoo import UntrainedWeightsWarning

def body():
    print("ours: out")
    print("ours: err", file=sys.stderr)
    os.write(2, b"I0000 00:00:1 port.cc:153] oneDNN custom operations are on\n")   # as C++ does
    os.write(1, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    logging.getLogger("tensorflow").warning("5 out of the last 5 calls to f triggered tf.function retracing")
    warnings.warn_explicit("a library's warning", UserWarning, "/x/site-packages/lib.py", 1)
    warnings.warn("UNTRAINED weights: ours", UntrainedWeightsWarning)
    logging.getLogger("ecgedge.test").warning("our logger")
    exec(compile("import sys; sys.stdout.write('Saved artifact at /tmp/x. The following endpoints\\n')", "keras_io", "exec"),
         {"__name__": "keras.src.utils.io_utils"})  # a library's Python-level print, as Keras's export does
    if "--fail" in sys.argv:
        raise RuntimeError("boom")

sys.exit(_cli.run("edge-noisy", body, verbose="--verbose" in sys.argv))
"""
THIRD_PARTY = ("oneDNN", "XNNPACK", "retracing", "a library's warning", "Saved artifact")


def _noisy(tmp_path, *args):
    script = tmp_path / "noisy.py"
    script.write_text(NOISY)
    env = dict(os.environ, ECGEDGE_LOG_DIR=str(tmp_path / "logs"))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=120)


def test_library_output_goes_to_the_log_file_ours_stays(tmp_path):
    r = _noisy(tmp_path)
    assert r.returncode == 0
    assert r.stdout == "ours: out\n"
    assert r.stderr.splitlines() == ["ours: err", "warning: UNTRAINED weights: ours", "WARNING ecgedge.test: our logger"]
    (log,) = (tmp_path / "logs").glob("edge-noisy-*.log")
    text = log.read_text()
    assert all(s in text for s in THIRD_PARTY)


def test_verbose_shows_library_output_and_a_crash_names_the_log(tmp_path):
    r = _noisy(tmp_path, "--verbose")
    assert r.returncode == 0 and all(s in r.stdout + r.stderr for s in THIRD_PARTY)
    r = _noisy(tmp_path, "--fail")
    assert r.returncode == 70 and not any(s in r.stdout + r.stderr for s in THIRD_PARTY)
    last = r.stderr.splitlines()[-1]
    assert last.startswith("error: unexpected RuntimeError: boom (a bug; traceback in ")
    log = Path(last.rsplit("traceback in ", 1)[1].rstrip(")"))
    assert "Traceback" in log.read_text() and "oneDNN" in log.read_text()


def test_edge_run_keeps_litert_out_of_its_output_verbose_shows_it(tmp_path):
    """LiteRT prints "Created TensorFlow Lite XNNPACK delegate" from C++ on fd 2: in the log, not ours."""
    pkg = support.build_test_package()
    cmd = [str(BIN / "edge-run"), "--model", str(pkg), "--source", "sim://pocket_k?speed=50", "--duration", "10",
           "--quiet"]
    env = dict(os.environ, ECGEDGE_LOG_DIR=str(tmp_path / "logs"))
    quiet = subprocess.run(cmd + ["--out", str(tmp_path / "a")], capture_output=True, text=True, env=env, timeout=120)
    loud = subprocess.run(cmd + ["--out", str(tmp_path / "b"), "--verbose"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert "XNNPACK" not in quiet.stdout + quiet.stderr and "XNNPACK" in loud.stdout + loud.stderr
    assert any("XNNPACK" in p.read_text() for p in (tmp_path / "logs").glob("edge-run-*.log"))


# ------------------------------------------------------------------------------------------ list commands

def test_zoo_list_json_is_exact_and_needs_no_torch():
    code = ("import json, sys, io, contextlib\n"
            "from ecgedge.tools.edge_train import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    assert main(['--list', '--json']) == 0\n"
            "print(json.dumps({'torch': 'torch' in sys.modules, 'zoo': json.loads(buf.getvalue())}))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["torch"] is False  # building 15 models in torch was what made --list take 7 s
    models = {m["name"]: m for m in out["zoo"]["models"]}
    pk = models["pocket_k"]
    assert pk["presets"][0] == {"name": "reference", "default": True, "params": 728_587, "macs_per_window": 80_278_016}
    assert pk["weights"]["kind"] == "demo" and models["anyecg_echo"]["weights"]["kind"] == "untrained"
    assert models["af_lead1"]["weights"]["kind"] == "research"
    assert models["af_lead1"]["weights"]["dataset"] == "PhysioNet/CinC 2017"


def test_sizes_from_shapes_equal_the_built_models():
    from ecgedge.models.sizes import spec_size
    from ecgedge.models.specs import get_spec, list_specs
    from ecgedge.models.zoo import build_model, count_macs, count_params

    for name in list_specs():
        spec = get_spec(name)
        for preset in spec.arch.presets:
            model = build_model(name, preset)
            assert spec_size(spec, preset) == {"params": count_params(model),
                                               "macs": count_macs(model, spec.input.window_samples)}, (name, preset)


def _render(renderable, width=80) -> list[str]:
    from rich.console import Console
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(renderable)
    return buf.getvalue().splitlines()


def test_tables_read_at_80_columns_with_every_number_whole():
    rows = edge_train.zoo_rows()
    lines = _render(edge_train.zoo_table(rows))
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= 80 and "…" not in text
    for row in rows:
        for preset in row["presets"]:
            assert f"{preset['params']:,}" in text and f"{preset['macs_per_window'] / 1e6:,.2f} M" in text
    targets = edge_export.target_rows()
    lines = _render(edge_export.targets_table(targets))
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= 80 and "…" not in text
    for t in targets:
        assert t["name"] in text and edge_export._bytes(t["model_flash_budget"]) in text
        assert edge_export._bytes(t["model_ram_budget"]) in text and edge_export._mega(t["mac_budget"]) in text


def test_target_figures_are_exact():
    assert edge_export._bytes(1_572_864) == "1,536 KiB" and edge_export._bytes(268_435_456) == "256 MiB"
    assert edge_export._bytes(1000) == "1,000 B"
    assert edge_export._mega(19_200_000) == "19.2 M" and edge_export._mega(10_666_666) == "10,666,666"
    assert edge_export._mega(1_200_000_000) == "1,200 M"


def test_list_targets_json(capsys):
    with pytest.raises(SystemExit) as e:
        edge_export.main(["--list-targets", "--json"])
    assert e.value.code == 0
    targets = {t["name"]: t for t in json.loads(capsys.readouterr().out)["targets"]}
    assert targets["cortex-m7"]["mac_budget"] == 19_200_000 and targets["cortex-m7"]["engine_core"] == "cortex-m7"


# ------------------------------------------------------------------------------------------ firmware refusal

def test_firmware_on_a_target_without_a_build_is_refused_before_the_export(tmp_path, monkeypatch, capsys):
    from ecgedge.quantize import pipeline

    def must_not_run(*a, **k):
        raise AssertionError("the export ran before --firmware was refused")

    monkeypatch.setattr(pipeline, "_build", must_not_run)
    out = tmp_path / "pkg"
    with pytest.raises(SystemExit) as e:
        edge_export.main(["pocket_k", "--target", "rpi4", "--firmware", "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "target 'rpi4' (linux" in err and "has no firmware build" in err and "cortex-m7" in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------ labels

def test_label_kinds_say_what_is_true():
    assert set(labels.KINDS) == {"untrained", "demo", "research", "user"}
    for kind in labels.KINDS:
        lab = labels.label(kind, dataset="X-set", source="mine.pt")
        assert "not for clinical use" in lab.notice
    assert "UNTRAINED" in labels.label("untrained").notice and "synthetic" not in labels.label("untrained").notice
    assert labels.label("demo").notice == "DEMO WEIGHTS: trained on synthetic data, not for clinical use"
    assert labels.label("research", dataset="X-set").notice.startswith("RESEARCH USE, not for clinical use")
    assert "(X-set)" in labels.label("research", dataset="X-set").notice
    with pytest.raises(ValueError):
        labels.label("research")
    assert labels.from_meta({"untrained": True, "demo": True}).kind == "untrained"
    assert labels.from_meta({"layout": "ecgedge", "demo": True, "card": {}}).kind == "demo"
    assert labels.from_meta({"layout": "ecgedge", "demo": False,
                             "card": {"notice": "real data (PhysioNet/CinC 2017), research use"}}).dataset \
        == "PhysioNet/CinC 2017"
    assert labels.from_meta({"layout": "state_dict", "checkpoint": "/x/ecgfounder.pth"}).notice.startswith(
        "USER MODEL (ecgfounder.pth)")
    # bring your own model (quantize.byom.load_user_model's meta): the user kind, naming the file, never research
    byom = labels.from_meta({"user": True, "source": "/x/my_model.pt2", "demo": False, "untrained": False, "card": {}})
    assert byom.kind == "user" and byom.notice.startswith("USER MODEL (my_model.pt2)") and not byom.demo
    assert "no clinical accuracy" in byom.notice


def test_shipped_weights_cards_agree_with_their_checkpoints():
    """edge-train --list reads the label from the card (no torch); the checkpoint must say the same."""
    from ecgedge.models.specs import get_spec, list_specs
    from ecgedge.models.zoo import load_model, read_checkpoint

    for name in list_specs():
        path = get_spec(name).weights_path()
        if path is None:
            assert labels.for_weights(path).kind == "untrained"
            continue
        _, _, meta = load_model(name)
        assert labels.for_weights(path) == labels.from_meta(meta) == labels.from_checkpoint(read_checkpoint(path)), name


def test_untrained_export_label_is_untrained_not_demo():
    from ecgedge.models.zoo import load_model
    with pytest.warns(UserWarning):
        _, _, meta = load_model("holter_sleep")
    lab = labels.from_meta(meta)
    assert lab.kind == "untrained" and lab.demo and "synthetic" not in lab.notice


def test_research_notice_reaches_package_run_output_and_results(tmp_path):
    """A package whose manifest carries af_lead1's label: edge-run prints the research notice and writes it
    into summary.json and every result; the HIL report uses the same words."""
    from ecgedge.contract.package import load_package, write_manifest
    from ecgedge.models.af_lead1 import NOTICE

    pkg = support.copy_package(tmp_path / "pkg")
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest.update(demo=False, label="research", notice=NOTICE)
    write_manifest(pkg, manifest)
    assert load_package(pkg).notice == NOTICE and "research use, not for clinical use" in NOTICE.lower()
    out = tmp_path / "s"
    r = subprocess.run([str(BIN / "edge-run"), "--model", str(pkg), "--source", "sim://pocket_k?speed=50",
                        "--duration", "10", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(NOTICE) == 2  # at the start and with the summary
    assert json.loads((out / "summary.json").read_text())["notice"] == NOTICE
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert results and all(rec["notice"] == NOTICE for rec in results)
    assert labels.notice_of(manifest) == NOTICE
    # an old manifest (demo false, notice null) says nothing rather than something untrue
    assert labels.notice_of({"demo": False, "notice": None}) is None
    assert labels.notice_of({"demo": True}) == labels.label("demo").notice
