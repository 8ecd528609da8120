"""The contract every part of the road shares, defined once (docs/architecture.md).

- `ecgedge.contract.package`: what a model package is — the format string, the one manifest writer,
  the one list of hashed files, reading with every check, Ed25519 signing and trust (key rotation,
  revocation).
- `ecgedge.contract.quantization`: how a window in µV becomes the model's int8 input, the int8
  (scale, zero point) rule, output dequantisation and the one interpretation of outputs (sigmoid per
  logit, softmax for a multiclass task, thresholds, decisions).
- `ecgedge.contract.runners`: the INT8 runners behind one interface (tflite-micro, LiteRT) and the
  ONNX Runtime runner; the smallest tflite-micro arena.
- `ecgedge.contract.metrics`: AUROC, ROC curve, the F1 family, sigmoid/softmax, bit-exactness,
  Bland-Altman; (labels, scores) argument order everywhere.

Importing it costs numpy only: interpreters and cryptography are imported inside the functions that
need them. It may import ecgedge core (errors) and ecgedge.signals, nothing else of ecgedge.
"""
