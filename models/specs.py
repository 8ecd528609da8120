"""The model zoo as data: what each model takes in, what it gives out, and its width presets.

A spec is enough to build a model (for size and latency profiling) even when no weights exist;
`ecgedge.models.zoo` builds and loads them. `ModelSpec.to_dict()` is what an exported package's
manifest.json carries as "input" / "outputs".
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
    arch: ArchSpec
    weights: str | None = None  # file name in models/weights/, None when nothing is trained
    # Per target name, a model's own footprint caps ({"flash_bytes", "ram_bytes", "macs"}) below the
    # target's budget (the export and its pruning honour the smaller of the two).
    target_caps: dict | None = field(default=None, compare=False, hash=False)

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
            "arch": {"default": self.arch.default, "presets": copy.deepcopy(self.arch.presets)},
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
