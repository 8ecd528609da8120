"""Static arena plan: every activation tensor (and per-op scratch) gets an offset in one arena.

Lifetimes are [first step written, last step read]; buffers are placed greedily, largest first, at
the lowest 16-byte aligned offset that does not overlap a placed buffer with an overlapping lifetime
(the same idea as tflite-micro's greedy planner, without its persistent allocations)."""

from __future__ import annotations

from dataclasses import dataclass

from ecgedge.firmware_bridge.ops import Layer
from ecgedge.firmware_bridge.tflite_model import TfliteModel

ALIGN = 16


@dataclass
class Buffer:
    key: object          # tensor index, or ("scratch", layer index)
    size: int
    first: int
    last: int
    offset: int = -1


@dataclass
class Plan:
    offsets: dict        # key -> arena offset (aliased tensors included)
    arena_bytes: int
    buffers: list[Buffer]


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan_arena(model: TfliteModel, layers: list[Layer]) -> Plan:
    root: dict[int, int] = {}

    def find(t):
        while t in root:
            t = root[t]
        return t

    for layer in layers:
        if layer.alias_of is not None:
            root[layer.outputs[0]] = find(layer.alias_of)
    n = len(layers)
    life: dict[object, list[int]] = {}

    def touch(key, step):
        lo_hi = life.setdefault(key, [step, step])
        lo_hi[0] = min(lo_hi[0], step)
        lo_hi[1] = max(lo_hi[1], step)

    for i in model.inputs:
        touch(find(i), 0)
    for step, layer in enumerate(layers):
        for t in layer.inputs + layer.outputs:
            touch(find(t), step)
    for o in model.outputs:
        touch(find(o), n - 1)
    bufs = [Buffer(k, model.tensors[k].nbytes, lo, hi) for k, (lo, hi) in life.items()]
    for step, layer in enumerate(layers):
        if layer.scratch_bytes:
            bufs.append(Buffer(("scratch", layer.index), layer.scratch_bytes, step, step))
    placed: list[Buffer] = []
    for b in sorted(bufs, key=lambda b: (-b.size, b.first)):
        clashes = sorted((p for p in placed if not (p.last < b.first or b.last < p.first)), key=lambda p: p.offset)
        off = 0
        for p in clashes:
            if off + b.size <= p.offset:
                break
            off = max(off, _align(p.offset + p.size))
        b.offset = off
        placed.append(b)
    offsets = {b.key: b.offset for b in placed}
    for t in list(root):
        offsets[t] = offsets[find(t)]
    arena = max((b.offset + b.size for b in placed), default=0)
    return Plan(offsets, _align(arena), placed)
