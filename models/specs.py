"""The model zoo as data: what each model takes in, what it gives out, and its width presets.

A spec is enough to build a model (for size and latency profiling) even when no weights exist;
`ecgedge.models.zoo` builds and loads them. `ModelSpec.to_dict()` is what an exported package's
manifest.json carries as "input" / "outputs".

A user's own model is described by the same type, written as a contract TOML (`load_contract`,
`save_contract`; docs/byom.md): name, task, [input], [[outputs]], optionally [labels] (where the truth of
their records is) and, for zoo specs, [arch]. Any zoo spec saves as a contract and loads back equal.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from ecgedge.errors import ConfigError

ECG_PREPROCESSING = {"highpass_hz": 0.5, "notch_hz": 50.0, "lowpass_hz": 40.0}
# PPG: pulse band only; no notch (optical sensors see no mains), low-pass below the dicrotic detail.
PPG_PREPROCESSING = {"highpass_hz": 0.5, "notch_hz": None, "lowpass_hz": 8.0}


@dataclass(frozen=True)
class InputContract:
    signal: str                 # "ecg" or "ppg"
    lead: str                   # ECG lead ("I") or PPG site
    sampling_rate_hz: int
    window_samples: int
    units: str = "uV"
    scale_uv: float = 1000.0    # model input = filtered µV / scale_uv (1000 -> mV)
    preprocessing: dict = field(default_factory=lambda: dict(ECG_PREPROCESSING))
    # Record-level models: a record's windows start this many samples apart, plus one window ending at
    # the record's end (ecgedge.signals.record_window_starts); None: non-overlapping windows.
    record_hop_samples: int | None = None

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sampling_rate_hz


@dataclass(frozen=True)
class OutputSpec:
    name: str
    kind: str                   # "logit" (threshold on sigmoid probability) or "regression"
    threshold: float | None = None
    unit: str | None = None
    description: str = ""


@dataclass(frozen=True)
class ArchSpec:
    """Net1D keyword arguments per width preset; `in_channels`/`n_classes` come from the spec."""

    presets: dict[str, dict]
    default: str = "reference"

    def kwargs(self, preset: str | None = None) -> dict:
        name = preset or self.default
        if name not in self.presets:
            raise ConfigError(f"unknown preset {name!r}; expected one of {sorted(self.presets)}")
        return copy.deepcopy(self.presets[name])


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    task: str                   # "binary+regression", "multilabel", "multiclass"
    input: InputContract
    outputs: tuple[OutputSpec, ...]
    arch: ArchSpec | None = None  # Net1D presets (zoo models); None for a user's own model
    weights: str | None = None  # file name in models/weights/, None when nothing is trained
    # Per target name, a model's own footprint caps ({"flash_bytes", "ram_bytes", "macs"}) below the
    # target's budget (the export and its pruning honour the smaller of the two).
    target_caps: dict | None = field(default=None, compare=False, hash=False)
    # Where the truth of a user's records is (contract [labels]): {"reference": "REFERENCE.csv",
    # "classes": [label of each logit output]} or {"annotations": "atr"} (WFDB annotation files).
    labels: dict | None = field(default=None, compare=False, hash=False)

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    def weights_path(self) -> Path | None:
        """Absolute path of the shipped weights file, or None (no weights named or file absent)."""
        if self.weights is None:
            return None
        path = Path(str(resources.files("ecgedge.models").joinpath("weights", self.weights)))
        return path if path.is_file() else None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "task": self.task,
            "input": asdict(self.input),
            "outputs": [asdict(o) for o in self.outputs],
            "arch": None if self.arch is None else {"default": self.arch.default,
                                                    "presets": copy.deepcopy(self.arch.presets)},
            "weights": self.weights,
        }


def _net1d(base_filters, filter_list, m_blocks_list, kernel_size=16, groups_width=16, dropout=0.1):
    return {"base_filters": base_filters, "ratio": 1, "filter_list": list(filter_list),
            "m_blocks_list": list(m_blocks_list), "kernel_size": kernel_size, "stride": 2,
            "groups_width": groups_width, "use_bn": True, "use_do": True, "dropout": dropout}


# Presets shared by the 10 s lead-I models. "reference" is the float model we ship and prune from;
# it is larger than a Cortex-M7's budget on purpose. "small" fits a Cortex-M7, "tiny" a Cortex-M4.
_ECG_PRESETS = {
    "reference": _net1d(16, [16, 32, 64, 128, 256], [1, 1, 2, 2, 2]),
    "small": _net1d(16, [16, 32, 48, 64, 96], [1, 1, 1, 1, 1], groups_width=8),
    "tiny": _net1d(8, [8, 16, 24, 32], [1, 1, 1, 1], kernel_size=9, groups_width=8),
}

_ECHO_LABELS = [
    ("reduced_lvef", "reduced LVEF (<40%)"),
    ("lv_hypertrophy", "LV hypertrophy"),
    ("aortic_stenosis", "aortic stenosis (moderate or severe)"),
    ("aortic_regurgitation", "aortic regurgitation (moderate or severe)"),
    ("mitral_regurgitation", "mitral regurgitation (moderate or severe)"),
    ("mitral_stenosis", "mitral stenosis (moderate or severe)"),
    ("tricuspid_regurgitation", "tricuspid regurgitation (moderate or severe)"),
    ("pulmonary_hypertension", "pulmonary hypertension"),
    ("rv_dysfunction", "RV systolic dysfunction"),
    ("pericardial_effusion", "pericardial effusion (moderate or larger)"),
    ("la_enlargement", "LA enlargement"),
    ("ra_enlargement", "RA enlargement"),
    ("lv_wall_motion_abnormality", "LV regional wall motion abnormality"),
]

_SPECS: dict[str, ModelSpec] = {}


def _register(spec: ModelSpec) -> None:
    _SPECS[spec.name] = spec


_register(ModelSpec(
    name="pocket_k",
    description=("Pocket-K style hyperkalaemia screen from one 10 s lead-I ECG: probabilities of serum "
                 "K+ > 5.5 and >= 6.0 mmol/L and a K+ estimate."),
    task="binary+regression",
    input=InputContract(signal="ecg", lead="I", sampling_rate_hz=500, window_samples=5000),
    outputs=(
        OutputSpec("p_k_gt_5_5", "logit", 0.5, None, "P(serum K+ > 5.5 mmol/L)"),
        OutputSpec("p_k_ge_6_0", "logit", 0.5, None, "P(serum K+ >= 6.0 mmol/L)"),
        OutputSpec("k_mmol", "regression", None, "mmol/L", "serum K+ estimate"),
    ),
    arch=ArchSpec(presets=_ECG_PRESETS),
    weights="pocket_k.pt",
))

_register(ModelSpec(
    name="anyecg_echo",
    description=("AnyECG-style screen for 13 structural heart diseases seen on echocardiography, from one "
                 "10 s lead-I ECG (multi-label). The label list is ecgedge's own choice, not a published "
                 "model's; no weights are trained."),
    task="multilabel",
    input=InputContract(signal="ecg", lead="I", sampling_rate_hz=500, window_samples=5000),
    outputs=tuple(OutputSpec(name, "logit", 0.5, None, text) for name, text in _ECHO_LABELS),
    arch=ArchSpec(presets=_ECG_PRESETS),
))

_register(ModelSpec(
    name="holter_sleep",
    description=("Sleep stage per 30 s epoch (wake/N1/N2/N3/REM) from a single-lead Holter ECG at 128 Hz "
                 "(multi-class: softmax over the five logits). No weights are trained."),
    task="multiclass",
    input=InputContract(signal="ecg", lead="I", sampling_rate_hz=128, window_samples=128 * 30),
    outputs=tuple(OutputSpec(f"stage_{s}", "logit", None, None, f"logit of sleep stage {s}")
                  for s in ("wake", "n1", "n2", "n3", "rem")),
    arch=ArchSpec(presets={
        "reference": _net1d(16, [16, 32, 64, 128, 256], [1, 1, 2, 2, 2], kernel_size=9),
        "small": _net1d(16, [16, 32, 48, 64, 96], [1, 1, 1, 1, 1], kernel_size=9, groups_width=8),
        "tiny": _net1d(8, [8, 16, 24, 32], [1, 1, 1, 1], kernel_size=7, groups_width=8),
    }),
))

_register(ModelSpec(
    name="pg_ssl",
    description=("PG-SSL style screen for aortic stenosis and aortic regurgitation from one 10 s "
                 "single-channel fingertip PPG at 125 Hz (multi-label). No weights are trained."),
    task="multilabel",
    input=InputContract(signal="ppg", lead="PPG", sampling_rate_hz=125, window_samples=1250, units="au",
                        scale_uv=1.0, preprocessing=dict(PPG_PREPROCESSING)),
    outputs=(
        OutputSpec("p_aortic_stenosis", "logit", 0.5, None, "P(aortic stenosis)"),
        OutputSpec("p_aortic_regurgitation", "logit", 0.5, None, "P(aortic regurgitation)"),
    ),
    arch=ArchSpec(presets={
        "reference": _net1d(16, [16, 32, 64, 128, 256], [1, 1, 2, 2, 2], kernel_size=7),
        "small": _net1d(16, [16, 32, 48, 64], [1, 1, 1, 1], kernel_size=7, groups_width=8),
        "tiny": _net1d(8, [8, 16, 24, 32], [1, 1, 1, 1], kernel_size=5, groups_width=8),
    }),
))


def _register_real_data_models() -> None:
    from ecgedge.models.af_lead1 import af_lead1_spec  # its own module (real data, its own trainer)

    _register(af_lead1_spec())


_register_real_data_models()


def list_specs() -> list[str]:
    """Names of every registered model, in registration order."""
    return list(_SPECS)


def get_spec(name: str) -> ModelSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(_SPECS)}") from None


# ------------------------------------------------------------------------------------------- contracts

TASKS = ("binary", "multilabel", "multiclass", "regression", "binary+regression")
OUTPUT_KINDS = ("logit", "regression")
_TOP_KEYS = {"name", "description", "task", "input", "outputs", "labels", "arch", "weights", "target_caps"}
_INPUT_KEYS = {f.name for f in InputContract.__dataclass_fields__.values()}
_OUTPUT_KEYS = {f.name for f in OutputSpec.__dataclass_fields__.values()}
_LABEL_KEYS = {"reference", "classes", "annotations"}
_REQUIRED_INPUT = ("signal", "lead", "sampling_rate_hz", "window_samples")


def _where(source) -> str:
    return f"contract {str(source)!r}" if source else "contract"


def _check_keys(given, allowed, what: str, where: str) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} in {what}; expected some of {sorted(allowed)}")


def _number(value, key: str, where: str, integer: bool = False, positive: bool = True):
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (positive and not value > 0):
        kind = "a positive integer" if integer else ("a positive number" if positive else "a number")
        raise ConfigError(f"{where}: {key} = {value!r}, expected {kind}")
    return value


def spec_from_dict(data: dict, source=None) -> ModelSpec:
    """A ModelSpec from a contract's data (the TOML's tables); ConfigError names the bad key and value."""
    where = _where(source)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    _check_keys(data, _TOP_KEYS, "the top level", where)
    for key in ("name", "task", "input", "outputs"):
        if key not in data:
            raise ConfigError(f"{where}: missing {key!r} (a contract has name, task, [input] and [[outputs]])")
    name = data["name"]
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-." for c in name):
        raise ConfigError(f"{where}: name = {name!r}, expected letters, digits, '_', '-' or '.'")
    task = data["task"]
    if task not in TASKS:
        raise ConfigError(f"{where}: task = {task!r}, expected one of {list(TASKS)}")
    inp = data["input"]
    if not isinstance(inp, dict):
        raise ConfigError(f"{where}: [input] must be a table")
    _check_keys(inp, _INPUT_KEYS, "[input]", where)
    for key in _REQUIRED_INPUT:
        if key not in inp:
            raise ConfigError(f"{where}: [input] lacks {key!r} (required: {list(_REQUIRED_INPUT)})")
    _number(inp["sampling_rate_hz"], "[input] sampling_rate_hz", where)
    _number(inp["window_samples"], "[input] window_samples", where, integer=True)
    if "scale_uv" in inp:
        _number(inp["scale_uv"], "[input] scale_uv", where)
    if inp.get("record_hop_samples") is not None:
        _number(inp["record_hop_samples"], "[input] record_hop_samples", where, integer=True)
    pre = inp.get("preprocessing", dict(ECG_PREPROCESSING))
    if not isinstance(pre, dict):
        raise ConfigError(f"{where}: [input.preprocessing] must be a table (highpass_hz, notch_hz, lowpass_hz)")
    _check_keys(pre, {"highpass_hz", "notch_hz", "lowpass_hz"}, "[input.preprocessing]", where)
    for key, value in pre.items():
        if value is not None:
            _number(value, f"[input.preprocessing] {key}", where)
    rate = inp["sampling_rate_hz"]
    contract = InputContract(signal=str(inp["signal"]), lead=str(inp["lead"]),
                             sampling_rate_hz=int(rate) if float(rate).is_integer() else rate,
                             window_samples=int(inp["window_samples"]), units=str(inp.get("units", "uV")),
                             scale_uv=float(inp.get("scale_uv", 1000.0)),
                             preprocessing={k: pre.get(k) for k in ("highpass_hz", "notch_hz", "lowpass_hz")},
                             record_hop_samples=inp.get("record_hop_samples"))
    outs = data["outputs"]
    if not isinstance(outs, list) or not outs:
        raise ConfigError(f"{where}: [[outputs]] must list at least one output")
    outputs = []
    for i, o in enumerate(outs):
        if not isinstance(o, dict) or "name" not in o or "kind" not in o:
            raise ConfigError(f"{where}: output {i} needs a name and a kind ({' or '.join(OUTPUT_KINDS)})")
        _check_keys(o, _OUTPUT_KEYS, f"output {o.get('name', i)!r}", where)
        if o["kind"] not in OUTPUT_KINDS:
            raise ConfigError(f"{where}: output {o['name']!r} kind = {o['kind']!r}, expected one of {list(OUTPUT_KINDS)}")
        thr = o.get("threshold")
        if thr is not None and not (isinstance(thr, (int, float)) and 0.0 <= thr <= 1.0):
            raise ConfigError(f"{where}: output {o['name']!r} threshold = {thr!r}, expected a probability in [0, 1]")
        outputs.append(OutputSpec(str(o["name"]), o["kind"], None if thr is None else float(thr), o.get("unit"),
                                  str(o.get("description", ""))))
    names = [o.name for o in outputs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: output names repeat: {names}")
    if task == "multiclass" and any(o.kind != "logit" for o in outputs):
        raise ConfigError(f"{where}: a multiclass contract's outputs are all logits (one softmax)")
    labels = data.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            raise ConfigError(f"{where}: [labels] must be a table")
        _check_keys(labels, _LABEL_KEYS, "[labels]", where)
        if ("reference" in labels) == ("annotations" in labels):
            raise ConfigError(f"{where}: [labels] needs exactly one of reference (a record,label CSV) or "
                              "annotations (a WFDB annotation extension)")
        classes = labels.get("classes")
        if classes is not None and (not isinstance(classes, list) or len(classes) != len(outputs)):
            raise ConfigError(f"{where}: [labels] classes = {classes!r}, expected one label per output "
                              f"({len(outputs)})")
        labels = dict(labels)
    arch = data.get("arch")
    if arch is not None:
        if not isinstance(arch, dict) or "presets" not in arch:
            raise ConfigError(f"{where}: [arch] needs presets (zoo specs only)")
        arch = ArchSpec(presets=copy.deepcopy(arch["presets"]), default=arch.get("default", "reference"))
    return ModelSpec(name=name, description=str(data.get("description", "")), task=task, input=contract,
                     outputs=tuple(outputs), arch=arch, weights=data.get("weights"),
                     target_caps=copy.deepcopy(data.get("target_caps")), labels=labels)


def load_contract(source) -> ModelSpec:
    """A contract TOML (path), a dict of its data, or a ModelSpec (returned as is) -> ModelSpec."""
    import tomllib
    if isinstance(source, ModelSpec):
        return source
    if isinstance(source, dict):
        return spec_from_dict(source)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"contract {str(path)!r} not found")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"contract {str(path)!r} is not valid TOML: {e}") from None
    return spec_from_dict(data, path)


def contract_dict(spec: ModelSpec) -> dict:
    """The contract data of a spec (what save_contract writes; spec_from_dict reads it back equal)."""
    d = spec.to_dict()
    d["input"] = {k: v for k, v in d["input"].items() if v is not None}
    d["outputs"] = [{k: v for k, v in o.items() if v is not None and v != ""} for o in d["outputs"]]
    for key in ("arch", "weights", "description"):
        if not d.get(key):
            d.pop(key, None)
    if spec.labels:
        d["labels"] = copy.deepcopy(spec.labels)
    if spec.target_caps:
        d["target_caps"] = copy.deepcopy(spec.target_caps)
    return d


def _toml_value(v) -> str:
    import json
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"cannot write {type(v).__name__} {v!r} to a contract")


def _toml_table(prefix: str, table: dict, lines: list[str]) -> None:
    plain = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
    subs = {k: v for k, v in table.items() if isinstance(v, dict)}
    if prefix and (plain or not subs):
        lines.append(f"\n[{prefix}]")
    for k, v in plain.items():
        lines.append(f"{k} = {_toml_value(v)}")
    for k, v in subs.items():
        _toml_table(f"{prefix}.{k}" if prefix else k, v, lines)


def contract_toml(spec: ModelSpec) -> str:
    d = contract_dict(spec)
    outputs = d.pop("outputs")
    lines: list[str] = []
    _toml_table("", {k: v for k, v in d.items() if not isinstance(v, dict)}, lines)
    for key in ("input", "labels", "arch", "target_caps"):
        if isinstance(d.get(key), dict):
            _toml_table(key, d[key], lines)
    for o in outputs:
        lines.append("\n[[outputs]]")
        for k, v in o.items():
            lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def save_contract(spec: ModelSpec, path) -> Path:
    """Write a spec as a contract TOML (zoo specs included: load_contract gives the same spec back)."""
    path = Path(path)
    path.write_text(contract_toml(spec))
    return path
