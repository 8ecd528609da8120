"""ecgedge: take trained single-lead ECG models to handheld and wearable devices.

The repository's top-level folders (models/, quantize/, calibration/, firmware_bridge/,
device_sim/, edge_runtime/, hil_tests/, tools/) are installed as sub-packages of this one
(`ecgedge.models`, ...); see setup.py.
"""

__version__ = "0.1.0"

DEMO_NOTICE = "DEMO WEIGHTS: trained on synthetic data, not for clinical use"


def __getattr__(name: str):
    """`ecgedge.analyze` and `ecgedge.export` (ecgedge.quantize.api), loaded on first use so that importing
    ecgedge (the runtime does) never pulls in torch or TensorFlow."""
    if name in ("analyze", "export"):
        import importlib
        return getattr(importlib.import_module("ecgedge.quantize.api"), name)
    raise AttributeError(f"module 'ecgedge' has no attribute {name!r}")
