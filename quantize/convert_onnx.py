"""An ONNX model (float, or QDQ INT8 with its weights dequantised and its activation Q/DQ pairs dropped)
lifted into the canonical graph of ecgedge.quantize.convert_graph: Conv -> nn.Conv1d, BatchNormalization
-> nn.BatchNorm1d, Gemm / MatMul(+Add) with constant weights -> nn.Linear, everything else the ATen function
the torch.export route would have produced. From there the model is a torch module like any other: it is
pruned, distilled, converted and exported the same way.

Supported: the convolutional op set (Conv, BatchNormalization, Gemm, MatMul, Relu, Clip(0, 6),
LeakyRelu, Sigmoid, Tanh, HardSwish, HardSigmoid, Softmax, MaxPool, AveragePool, GlobalAveragePool,
GlobalMaxPool, ReduceMean / ReduceSum / ReduceMax, Add / Sub / Mul / Div, Concat, Flatten, Reshape,
Transpose, Squeeze, Unsqueeze, Pad, Slice, Gather (one index), Split, Identity, Dropout). Recurrent ONNX
nodes (GRU, LSTM) are refused: export such a model from PyTorch as .pt2.
"""

from __future__ import annotations

import operator
from pathlib import Path

import numpy as np

from ecgedge.errors import ModelError
from ecgedge.quantize.convert_graph import SUPPORTED_TORCH, mark_canonical, reshape_batch


def _refuse(node, why: str = "") -> ModelError:
    return ModelError(f"ONNX node {node.name!r} ({node.op_type}){': ' + why if why else ''} cannot be converted; "
                      f"supported ONNX ops: Conv, BatchNormalization, Gemm, MatMul, Relu, Clip, LeakyRelu, Sigmoid, "
                      f"Tanh, HardSwish, HardSigmoid, Softmax, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, "
                      f"ReduceMean/Sum/Max, Add, Sub, Mul, Div, Concat, Flatten, Reshape, Transpose, Squeeze, "
                      f"Unsqueeze, Pad, Slice, Gather, Split, Identity, Dropout (QDQ pairs folded); in torch terms: "
                      f"{', '.join(SUPPORTED_TORCH)}")


def _attrs(node) -> dict:
    import onnx
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class _OnnxLifter:
    def __init__(self, model):
        import onnx
        import torch
        self.onnx, self.torch = onnx, torch
        self.model = onnx.shape_inference.infer_shapes(model)
        g = self.model.graph
        self.consts: dict[str, np.ndarray] = {i.name: onnx.numpy_helper.to_array(i).astype(np.float64)
                                              if onnx.numpy_helper.to_array(i).dtype.kind == "f"
                                              else onnx.numpy_helper.to_array(i) for i in g.initializer}
        self.shapes: dict[str, tuple] = {}
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            dims = vi.type.tensor_type.shape.dim
            self.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in dims)
        self.users: dict[str, int] = {}
        for n in g.node:
            for i in n.input:
                self.users[i] = self.users.get(i, 0) + 1
        self.graph = torch.fx.Graph()
        self.root: dict = {}
        self.env: dict = {}
        self.skip: set = set()
        self.input_shape = None

    # ---- helpers
    def const(self, name):
        return self.consts.get(name)

    def v(self, name):
        if name in self.env:
            return self.env[name]
        c = self.const(name)
        if c is not None:
            if c.ndim == 0 or c.size == 1:
                return float(c.reshape(-1)[0])
            key = "_const_" + "".join(ch if ch.isalnum() else "_" for ch in name)
            if key not in self.root:
                self.root[key] = self.torch.tensor(c, dtype=self.torch.float32)
            node = self.graph.get_attr(key)
            self.env[name] = node
            return node
        raise ModelError(f"ONNX tensor {name!r} is neither computed before its use nor an initializer")

    def call(self, node, target, args, kwargs=None):
        new = self.graph.call_function(target, tuple(args), dict(kwargs or {}))
        new.meta["ecg_path"], new.meta["ecg_class"] = node.name, node.op_type
        return new

    def module(self, node, name: str, mod, x):
        key = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_") or "layer"
        base, n = key, 1
        while key in self.root:
            n += 1
            key = f"{base}_{n}"
        self.root[key] = mod
        new = self.graph.call_module(key, (x,))
        new.meta["ecg_path"], new.meta["ecg_class"] = key, type(mod).__name__
        return new

    def _axes(self, node, attrs):
        if "axes" in attrs:
            return [int(a) for a in attrs["axes"]]
        if len(node.input) > 1 and node.input[1]:
            c = self.const(node.input[1])
            if c is None:
                raise _refuse(node, "its axes are computed")
            return [int(a) for a in np.asarray(c).reshape(-1)]
        return None

    def _fold(self, node):
        """Evaluate a node whose inputs are all constants with ONNX's reference evaluator."""
        from onnx import helper
        from onnx.reference import ReferenceEvaluator
        feeds = {i: np.asarray(self.consts[i]) for i in node.input if i}
        ins = [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
               for i, v in feeds.items()]
        outs = [helper.make_tensor_value_info(o, 0, None) for o in node.output]
        graph = helper.make_graph([node], "fold", ins, outs)
        m = helper.make_model(graph, opset_imports=self.model.opset_import)
        try:
            values = ReferenceEvaluator(m).run(None, feeds)
        except Exception as e:
            raise _refuse(node, f"a constant subgraph that could not be evaluated ({type(e).__name__})") from None
        for name, v in zip(node.output, values):
            self.consts[name] = np.asarray(v)

    # ---- ops
    def run(self):
        aten = self.torch.ops.aten
        g = self.model.graph
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise ModelError(f"the ONNX model has {len(inputs)} inputs; a single-lead model takes one [N, 1, W] tensor")
        x = self.graph.placeholder("x")
        x.meta["ecg_path"], x.meta["ecg_class"] = "", "input"
        self.env[inputs[0].name] = x
        self.input_shape = self.shapes.get(inputs[0].name, (1,))[1:]
        # weights of a QDQ model: DequantizeLinear of an int8 initializer is a float constant
        for n in g.node:
            if n.op_type == "DequantizeLinear" and n.input[0] in self.consts:
                q = self.consts[n.input[0]].astype(np.float64)
                scale = np.asarray(self.consts[n.input[1]], np.float64)
                zp = np.asarray(self.consts[n.input[2]], np.float64) if len(n.input) > 2 and n.input[2] else 0.0
                axis = _attrs(n).get("axis", 1)
                if scale.ndim == 1 and scale.size > 1:
                    shape = [1] * q.ndim
                    shape[axis] = -1
                    scale, zp = scale.reshape(shape), np.asarray(zp).reshape(shape) if np.ndim(zp) else zp
                self.consts[n.output[0]] = (q - zp) * scale
                self.skip.add(n.name)
        for n in g.node:
            if n.name in self.skip:
                continue
            op, a = n.op_type, _attrs(n)
            ins = list(n.input)
            if op in ("QuantizeLinear", "DequantizeLinear", "Identity", "Dropout"):
                if ins[0] in self.consts:
                    self.consts[n.output[0]] = self.consts[ins[0]]
                else:   # activation Q/DQ: the float road re-quantises itself
                    self.env[n.output[0]] = self.v(ins[0])
                continue
            if op == "Constant":
                self.consts[n.output[0]] = np.asarray(self.onnx.numpy_helper.to_array(a["value"]))
                continue
            if op == "Shape" and ins[0] in self.shapes and ins[0] not in self.consts:
                self.consts[n.output[0]] = np.asarray(self.shapes[ins[0]], np.int64)
                continue
            if all((not i) or i in self.consts for i in ins) and op not in ("QuantizeLinear",):
                self._fold(n)       # a constant subgraph (pad sizes, shapes): evaluated once, here
                continue
            out = self.op(n, op, a, ins, aten)
            if isinstance(out, (list, tuple)):
                for name, o in zip(n.output, out):
                    self.env[name] = o
            else:
                self.env[n.output[0]] = out
        outs = [o.name for o in g.output]
        if len(outs) != 1:
            raise ModelError(f"the ONNX model has {len(outs)} outputs; expected one [N, n_outputs] tensor")
        self.graph.output(self.v(outs[0]))
        gm = self.torch.fx.GraphModule(self.root, self.graph)
        gm.graph.eliminate_dead_code()
        gm.recompile()
        mark_canonical(gm, tuple(self.input_shape))
        return gm.eval()

    def op(self, n, op, a, ins, aten):
        torch = self.torch
        if op == "Conv":
            w = self.const(ins[1])
            if w is None or w.ndim != 3:
                raise _refuse(n, "a 1-D convolution with constant weights is expected")
            b = self.const(ins[2]) if len(ins) > 2 and ins[2] else None
            pads = list(a.get("pads", [0, 0]))
            if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise _refuse(n, "auto_pad")
            conv = torch.nn.Conv1d(w.shape[1] * int(a.get("group", 1)), w.shape[0], w.shape[2],
                                   stride=int(a.get("strides", [1])[0]), dilation=int(a.get("dilations", [1])[0]),
                                   groups=int(a.get("group", 1)), bias=b is not None,
                                   padding=pads[0] if pads[0] == pads[1] else 0)
            with torch.no_grad():
                conv.weight.copy_(torch.tensor(w))
                if b is not None:
                    conv.bias.copy_(torch.tensor(b))
            x = self.v(ins[0])
            if pads[0] != pads[1]:
                x = self.call(n, aten.pad.default, [x, [int(pads[0]), int(pads[1])], "constant", 0.0])
            return self.module(n, n.name, conv, x)
        if op == "BatchNormalization":
            scale, bias, mean, var = (self.const(i) for i in ins[1:5])
            bn = torch.nn.BatchNorm1d(len(mean), eps=float(a.get("epsilon", 1e-5)))
            with torch.no_grad():
                bn.weight.copy_(torch.tensor(scale))
                bn.bias.copy_(torch.tensor(bias))
                bn.running_mean.copy_(torch.tensor(mean))
                bn.running_var.copy_(torch.tensor(var))
            return self.module(n, n.name, bn.eval(), self.v(ins[0]))
        if op in ("Gemm", "MatMul"):
            w = self.const(ins[1])
            if w is None or w.ndim != 2:
                raise _refuse(n, "a constant 2-D weight is expected")
            if op == "Gemm":
                if a.get("transA", 0):
                    raise _refuse(n, "transA")
                w = w * float(a.get("alpha", 1.0))
                w = w if a.get("transB", 0) else w.T
                b = self.const(ins[2]) * float(a.get("beta", 1.0)) if len(ins) > 2 and ins[2] else None
            else:
                w, b = w.T, None
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
            with torch.no_grad():
                lin.weight.copy_(torch.tensor(w))
                if b is not None:
                    lin.bias.copy_(torch.tensor(np.broadcast_to(b, (w.shape[0],)).copy()))
            return self.module(n, n.name, lin, self.v(ins[0]))
        unary = {"Relu": aten.relu.default, "Sigmoid": aten.sigmoid.default, "Tanh": aten.tanh.default,
                 "HardSwish": aten.hardswish.default}
        if op in unary:
            return self.call(n, unary[op], [self.v(ins[0])])
        if op == "Clip":
            lo = a.get("min", self.const(ins[1]) if len(ins) > 1 and ins[1] else None)
            hi = a.get("max", self.const(ins[2]) if len(ins) > 2 and ins[2] else None)
            lo, hi = (None if lo is None else float(np.asarray(lo))), (None if hi is None else float(np.asarray(hi)))
            if (lo, hi) == (0.0, 6.0):
                return self.call(n, aten.hardtanh.default, [self.v(ins[0]), 0.0, 6.0])
            if (lo, hi) == (0.0, None):
                return self.call(n, aten.relu.default, [self.v(ins[0])])
            raise _refuse(n, f"Clip({lo}, {hi}); only ReLU6 (0, 6)")
        if op == "LeakyRelu":
            return self.call(n, aten.leaky_relu.default, [self.v(ins[0]), float(a.get("alpha", 0.01))])
        if op == "HardSigmoid":
            if not (np.isclose(a.get("alpha", 0.2), 1 / 6) and np.isclose(a.get("beta", 0.5), 0.5)):
                raise _refuse(n, "HardSigmoid with alpha != 1/6 (torch's hardsigmoid)")
            return self.call(n, aten.hardsigmoid.default, [self.v(ins[0])])
        if op == "Softmax":
            return self.call(n, aten.softmax.int, [self.v(ins[0]), int(a.get("axis", -1)), False])
        binary = {"Add": aten.add.Tensor, "Sub": aten.sub.Tensor, "Mul": aten.mul.Tensor, "Div": aten.div.Tensor}
        if op in binary:
            return self.call(n, binary[op], [self.v(ins[0]), self.v(ins[1])])
        if op in ("MaxPool", "AveragePool"):
            k = list(a["kernel_shape"])
            if len(k) != 1:
                raise _refuse(n, "a 2-D pool")
            pads = list(a.get("pads", [0, 0]))
            if pads[0] != pads[1]:
                raise _refuse(n, "asymmetric pool padding")
            s = list(a.get("strides", [1]))
            ceil = bool(a.get("ceil_mode", 0))
            if op == "MaxPool":
                return self.call(n, aten.max_pool1d.default, [self.v(ins[0]), k, s, [pads[0]],
                                                              list(a.get("dilations", [1])), ceil])
            return self.call(n, aten.avg_pool1d.default, [self.v(ins[0]), k, s, [pads[0]], ceil,
                                                          bool(a.get("count_include_pad", 0))])
        if op == "GlobalAveragePool":
            return self.call(n, aten.mean.dim, [self.v(ins[0]), [-1], True])
        if op == "GlobalMaxPool":
            return self.call(n, aten.amax.default, [self.v(ins[0]), [-1], True])
        if op in ("ReduceMean", "ReduceSum", "ReduceMax"):
            axes = self._axes(n, a)
            keep = bool(a.get("keepdims", 1))
            target = {"ReduceMean": aten.mean.dim, "ReduceSum": aten.sum.dim_IntList, "ReduceMax": aten.amax.default}[op]
            return self.call(n, target, [self.v(ins[0]), axes, keep])
        if op == "Concat":
            return self.call(n, aten.cat.default, [[self.v(i) for i in ins], int(a["axis"])])
        if op == "Flatten":
            axis = int(a.get("axis", 1))
            if axis != 1:
                raise _refuse(n, f"Flatten(axis={axis})")
            return self.call(n, aten.flatten.using_ints, [self.v(ins[0]), 1])
        if op == "Reshape":
            out_shape = self.shapes.get(n.output[0])
            if out_shape is None:
                raise _refuse(n, "no inferred output shape")
            return self.call(n, reshape_batch, [self.v(ins[0]), tuple(int(d) for d in out_shape[1:])])
        if op == "Transpose":
            return self.call(n, aten.permute.default, [self.v(ins[0]), [int(p) for p in a["perm"]]])
        if op in ("Squeeze", "Unsqueeze"):
            axes = self._axes(n, a)
            x = self.v(ins[0])
            if op == "Squeeze":
                return self.call(n, aten.squeeze.dims, [x, axes]) if axes else self.call(n, aten.squeeze.default, [x])
            for ax in sorted(axes):
                x = self.call(n, aten.unsqueeze.default, [x, ax])
            return x
        if op == "Pad":
            pads = a.get("pads")
            if pads is None:
                c = self.const(ins[1])
                if c is None:
                    raise _refuse(n, "computed pads")
                pads = [int(p) for p in np.asarray(c).reshape(-1)]
            rank = len(pads) // 2
            begin, end = pads[:rank], pads[rank:]
            mode = a.get("mode", b"constant")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            value = float(np.asarray(self.const(ins[2])).reshape(-1)[0]) if len(ins) > 2 and ins[2] else 0.0
            torch_pads = []
            for d in range(rank - 1, 0, -1):          # last dim first, as F.pad takes them
                torch_pads += [int(begin[d]), int(end[d])]
            while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:
                torch_pads = torch_pads[:-2]
            return self.call(n, aten.pad.default, [self.v(ins[0]), torch_pads,
                                                   {"edge": "replicate"}.get(mode, mode), value])
        if op == "Slice":
            starts, ends = (np.asarray(self.const(i)).reshape(-1) for i in ins[1:3])
            axes = np.asarray(self.const(ins[3])).reshape(-1) if len(ins) > 3 and ins[3] else np.arange(len(starts))
            steps = np.asarray(self.const(ins[4])).reshape(-1) if len(ins) > 4 and ins[4] else np.ones(len(starts), int)
            x = self.v(ins[0])
            for s, e, ax, st in zip(starts, ends, axes, steps):
                e = None if e >= 2 ** 62 else int(e)
                x = self.call(n, aten.slice.Tensor, [x, int(ax), int(s), e, int(st)])
            return x
        if op == "Gather":
            idx = self.const(ins[1])
            if idx is None or np.asarray(idx).size != 1:
                raise _refuse(n, "a gather of one constant index is expected")
            return self.call(n, aten.select.int, [self.v(ins[0]), int(a.get("axis", 0)), int(np.asarray(idx).reshape(-1)[0])])
        if op == "Split":
            axis = int(a.get("axis", 0))
            sizes = a.get("split")
            if sizes is None and len(ins) > 1 and ins[1]:
                sizes = [int(s) for s in np.asarray(self.const(ins[1])).reshape(-1)]
            if sizes is None:
                total = self.shapes[ins[0]][axis]
                sizes = [total // len(n.output)] * len(n.output)
            parts = self.call(n, aten.split_with_sizes.default, [self.v(ins[0]), list(sizes), axis])
            return [self.call(n, operator.getitem, [parts, i]) for i in range(len(sizes))]
        if op in ("GRU", "LSTM", "RNN"):
            raise _refuse(n, "recurrent ONNX nodes are not lifted; export the PyTorch model as .pt2 instead")
        raise _refuse(n)


def lift_onnx(path):
    """The canonical GraphModule of an .onnx file."""
    import onnx
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} not found")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:
        raise ModelError(f"{str(path)!r} is not a readable ONNX model: {type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
    return _OnnxLifter(model).run()
