"""Gates: thresholds on the bench's metrics, kept as data in gates.toml."""

from __future__ import annotations

import ast
import operator
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ecgedge.errors import ConfigError, GateError

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
       "!=": operator.ne}
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@dataclass(frozen=True)
class Gate:
    name: str
    metric: str
    op: str
    threshold: object          # number, bool or an expression string over metrics
    required: bool = False
    description: str = ""


@dataclass
class GateResult:
    name: str
    metric: str
    op: str
    value: object
    threshold: object          # resolved value (None when it could not be resolved)
    passed: bool | None        # None: skipped (metric not measurable here)
    message: str
    description: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "metric": self.metric, "op": self.op, "value": self.value,
                "threshold": self.threshold, "passed": self.passed,
                "skipped": self.passed is None, "message": self.message, "description": self.description}


def default_gates_path() -> Path:
    return Path(str(resources.files("ecgedge.hil_tests").joinpath("gates.toml")))


def load_gates(path: str | Path | None = None) -> list[Gate]:
    p = Path(path) if path is not None else default_gates_path()
    try:
        table = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"gates file {str(p)!r} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"gates file {str(p)!r} is not valid TOML: {e}") from None
    gates = []
    for name, row in table.items():
        if not isinstance(row, dict):
            raise ConfigError(f"gate {name!r} in {p}: expected a table, got {type(row).__name__}")
        unknown = sorted(set(row) - {"metric", "op", "threshold", "required", "description"})
        if unknown:
            raise ConfigError(f"gate {name!r} in {p}: unknown keys {unknown}")
        for key in ("metric", "op", "threshold"):
            if key not in row:
                raise ConfigError(f"gate {name!r} in {p}: missing key {key!r}")
        if row["op"] not in OPS:
            raise ConfigError(f"gate {name!r} in {p}: op {row['op']!r}, expected one of {sorted(OPS)}")
        if isinstance(row["threshold"], str):
            _parse_expr(row["threshold"], name)
        gates.append(Gate(name=name, metric=row["metric"], op=row["op"], threshold=row["threshold"],
                          required=bool(row.get("required", False)),
                          description=str(row.get("description", ""))))
    if not gates:
        raise ConfigError(f"gates file {str(p)!r} defines no gate")
    return gates


def _parse_expr(text: str, gate: str) -> ast.AST:
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ConfigError(f"gate {gate!r}: threshold {text!r} is not an expression") from None
    for node in ast.walk(tree):
        if not isinstance(node, (ast.BinOp, ast.Name, ast.Constant, ast.Load, ast.UnaryOp, ast.USub,
                                 *_BINOPS)):
            raise ConfigError(f"gate {gate!r}: threshold {text!r} may only use names, numbers and + - * /")
    return tree


def _eval(node: ast.AST, metrics: dict):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return metrics.get(node.id)
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, metrics)
        return None if v is None else -v
    a, b = _eval(node.left, metrics), _eval(node.right, metrics)
    if a is None or b is None:
        return None
    return _BINOPS[type(node.op)](a, b)


def resolve_threshold(gate: Gate, metrics: dict):
    if isinstance(gate.threshold, str):
        return _eval(_parse_expr(gate.threshold, gate.name), metrics)
    return gate.threshold


def evaluate_gates(gates: list[Gate], metrics: dict) -> list[GateResult]:
    results = []
    for g in gates:
        value = metrics.get(g.metric)
        threshold = resolve_threshold(g, metrics)
        if value is None or threshold is None:
            missing = g.metric if value is None else f"threshold {g.threshold!r}"
            if g.required:
                results.append(GateResult(g.name, g.metric, g.op, value, threshold, False,
                                          f"{missing} was not measured (required gate)", g.description))
            else:
                results.append(GateResult(g.name, g.metric, g.op, value, threshold, None,
                                          f"skipped: {missing} not measurable here", g.description))
            continue
        passed = bool(OPS[g.op](value, threshold))
        msg = (f"{g.metric} = {_fmt(value)} {g.op} {_fmt(threshold)}" if passed
               else f"{g.metric} = {_fmt(value)}, expected {g.op} {_fmt(threshold)}")
        results.append(GateResult(g.name, g.metric, g.op, value, threshold, passed, msg, g.description))
    return results


def failed(results: list[GateResult]) -> list[GateResult]:
    return [r for r in results if r.passed is False]


def raise_on_failure(results: list[GateResult]) -> None:
    bad = failed(results)
    if bad:
        raise GateError("gates crossed: " + "; ".join(f"{r.name}: {r.message}" for r in bad))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return repr(v) if isinstance(v, str) else str(v)
