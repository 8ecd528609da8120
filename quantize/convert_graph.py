"""Any single-lead PyTorch model as one canonical graph: a `torch.fx.GraphModule` whose layers are real
`nn.Conv1d` / `nn.BatchNorm1d` / `nn.Linear` / `nn.GRU` / `nn.LSTM` modules and whose other nodes are the
ATen functions of the supported op set.

Where it comes from:
- a live `nn.Module` or a `.pt2` file (`torch.export.save`): the `torch.export` graph is lifted, each ATen
  convolution / linear / batch norm / recurrent call becoming a module named after its parameters'
  path in the user's model (`features.0`, `se.fc1`, ...);
- an `.onnx` file (float or QDQ INT8, `ecgedge.quantize.convert_onnx`): its nodes are lifted the same way.

One graph serves the whole road: torch-pruning's dependency graph and distillation train it like any
`nn.Module`; `ecgedge.quantize.convert_keras` rebuilds it in Keras for the full-INT8 TFLite converter;
ONNX is exported from it; `ecgedge.analyze` reads it. Anything outside the op set is refused before
anything is converted, naming the module's path in the model, the op and the supported list.
"""

from __future__ import annotations

import copy
import operator
from pathlib import Path

import numpy as np

from ecgedge.errors import ModelError

# What a single-lead model may use (the refusal message lists it): torch modules / functions.
SUPPORTED_TORCH = (
    "Conv1d (groups, dilation, stride; padding zeros/reflect/replicate/circular, 'same', 'valid')",
    "BatchNorm1d (folded into the layer before it, else a per-channel affine)", "Linear",
    "ReLU", "ReLU6", "LeakyReLU", "SiLU", "GELU", "Hardswish", "Hardsigmoid", "Sigmoid", "Tanh", "Softmax",
    "MaxPool1d", "AvgPool1d", "AdaptiveAvgPool1d", "AdaptiveMaxPool1d", "Dropout (eval)", "Identity",
    "GRU / LSTM (one or more layers, uni- or bidirectional, zero initial state)",
    "add / sub / mul / div (tensor or constant)", "cat", "mean / sum / amax over an axis",
    "flatten / reshape / view / squeeze / unsqueeze", "permute / transpose", "F.pad", "x[..., i] / x[:, a:b]",
)

# ATen functions kept as graph nodes (by overload packet name) -> what they are, for tables.
ELEMENTWISE = {
    "relu": "ReLU", "hardtanh": "ReLU6", "relu6": "ReLU6", "leaky_relu": "LeakyReLU", "silu": "SiLU",
    "gelu": "GELU", "hardswish": "Hardswish", "hardsigmoid": "Hardsigmoid", "sigmoid": "Sigmoid",
    "tanh": "Tanh", "dropout": "Dropout", "alpha_dropout": "Dropout", "feature_dropout": "Dropout",
    "clone": "identity", "contiguous": "identity", "alias": "identity", "detach": "identity",
    "lift_fresh_copy": "identity",
}
BINARY = {"add": "add", "sub": "sub", "rsub": "rsub", "mul": "mul", "div": "div"}
OTHER = {
    "softmax": "Softmax", "_softmax": "Softmax", "max_pool1d": "MaxPool1d", "avg_pool1d": "AvgPool1d",
    "adaptive_avg_pool1d": "AdaptiveAvgPool1d", "adaptive_max_pool1d": "AdaptiveMaxPool1d",
    "mean": "mean", "sum": "sum", "amax": "amax", "cat": "cat", "concat": "cat", "permute": "permute",
    "transpose": "transpose", "t": "transpose", "pad": "pad", "constant_pad_nd": "pad",
    "reflection_pad1d": "pad", "replication_pad1d": "pad", "select": "select", "slice": "slice",
    "chunk": "chunk", "split": "split", "split_with_sizes": "split",
}
RESHAPES = {"view", "reshape", "_unsafe_view", "flatten", "squeeze", "unsqueeze", "expand_dims"}
# reshapes whose arguments do not name the batch or a width: kept as they are (pruning may change widths)
BATCH_FREE_RESHAPES = {"flatten", "squeeze", "unsqueeze"}
# Nodes that only compute sizes for reshapes (a batch dimension exported as dynamic); dropped.
SIZE_OPS = {"sym_size", "size", "sym_numel"}
LAYER_OPS = {"conv1d", "convolution", "_convolution", "linear", "batch_norm",
             "_native_batch_norm_legit_no_training", "gru", "lstm"}
STATE_OPS = {"zeros", "zeros_like", "new_zeros"}   # an RNN's initial state (must be zero)


def reshape_batch(x, shape: tuple):
    """`x` reshaped to [batch, *shape]: every reshape of the canonical graph (the batch stays free)."""
    return x.reshape(x.shape[0], *shape)


def mark_canonical(gm, input_shape) -> None:
    """Mark a GraphModule as canonical (in `meta`, which survives copy.deepcopy; attributes do not)."""
    gm.meta["ecgedge_canonical"] = True
    gm.meta["ecgedge_input_shape"] = None if input_shape is None else tuple(input_shape)


def is_canonical(model) -> bool:
    import torch
    return isinstance(model, torch.fx.GraphModule) and bool(getattr(model, "meta", {}).get("ecgedge_canonical"))


def refuse(path: str, cls: str, op: str, why: str = "") -> ModelError:
    where = f"module {path!r} ({cls})" if path else f"the model's forward ({cls})"
    return ModelError(f"{where} uses {op}{': ' + why if why else ''}, which ecgedge cannot convert; "
                      f"supported: {', '.join(SUPPORTED_TORCH)}")


def _where(node) -> tuple[str, str]:
    """(module path, class name) of the innermost module that issued an export node."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return node.meta.get("ecg_path", ""), node.meta.get("ecg_class", "")
    path, cls = list(stack.values())[-1]
    cls = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
    return path, cls.rsplit(".", 1)[-1]


def _packet(target) -> str:
    packet = getattr(target, "overloadpacket", None)
    if packet is not None:
        return packet.__name__
    return getattr(target, "__name__", str(target))


# ------------------------------------------------------------------------------------------- sources

def export_module(module, window_samples: int):
    """torch.export of a live module in eval mode on one [1, 1, W] window (ModelError when it fails)."""
    import torch
    module = copy.deepcopy(module).eval()
    try:
        with torch.no_grad():
            return torch.export.export(module, (torch.zeros(1, 1, int(window_samples)),), strict=False)
    except Exception as e:
        raise ModelError(f"torch.export could not trace the model on a [1, 1, {window_samples}] window: "
                         f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}") from e


def load_pt2(path: str | Path):
    """An ExportedProgram saved with torch.export.save; ModelError when the file is not one."""
    import zipfile

    import torch
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} not found")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{str(path)!r} is not a torch.export archive (.pt2 is a zip written by "
                         "torch.export.save)")
    try:
        return torch.export.load(str(path))
    except Exception as e:
        raise ModelError(f"{str(path)!r} is not a readable torch.export program: {type(e).__name__}: "
                         f"{str(e).splitlines()[0][:300] if str(e) else ''}") from e


def canonical(source, window_samples: int | None = None):
    """The canonical GraphModule of a live nn.Module, an ExportedProgram, a .pt2 or an .onnx path, or a
    canonical GraphModule itself (returned as is)."""
    import torch
    if is_canonical(source):
        return source
    if isinstance(source, (str, Path)):
        suffix = Path(source).suffix.lower()
        if suffix == ".pt2":
            return lift(load_pt2(source))
        if suffix == ".onnx":
            from ecgedge.quantize.convert_onnx import lift_onnx
            return lift_onnx(source)
        raise ModelError(f"{str(source)!r}: expected a .pt2 (torch.export.save) or .onnx model file")
    if isinstance(source, torch.export.ExportedProgram):
        return lift(source)
    if isinstance(source, torch.nn.Module):
        if window_samples is None:
            raise ModelError("a live module needs the window length (the contract's window_samples)")
        return lift(export_module(source, window_samples))
    raise ModelError(f"cannot read a model from {type(source).__name__}; expected an nn.Module, a .pt2 or an "
                     ".onnx file")


# ------------------------------------------------------------------------------------------------ lift

class _Lifter:
    def __init__(self, ep):
        import torch
        self.torch = torch
        self.ep = ep
        sig = ep.graph_signature
        state = dict(ep.state_dict)
        consts = dict(getattr(ep, "constants", {}) or {})
        self.tensors: dict[str, tuple[str, object]] = {}   # placeholder name -> (target path, tensor)
        for name, target in sig.inputs_to_parameters.items():
            self.tensors[name] = (target, state[target])
        for name, target in sig.inputs_to_buffers.items():
            self.tensors[name] = (target, state[target] if target in state else consts.get(target))
        for name, target in getattr(sig, "inputs_to_lifted_tensor_constants", {}).items():
            self.tensors[name] = (target, consts[target])
        self.user_inputs = list(sig.user_inputs)
        self.graph = torch.fx.Graph()
        self.root: dict[str, object] = {}
        self.env: dict = {}
        self.modules_by_param: dict[str, str] = {}
        self.rnn_nodes: dict = {}
        self.input_shape = None

    # ---- helpers
    def param(self, node, what: str, path: str, cls: str):
        """The tensor behind an export placeholder (a parameter or buffer), or refuse."""
        if node is None:
            return None, None
        if getattr(node, "op", None) == "placeholder" and node.name in self.tensors:
            target, t = self.tensors[node.name]
            return target, t.detach().clone()
        raise refuse(path, cls, what, "its weights are computed in the forward, not stored parameters")

    def module_name(self, target: str | None, suffix: str, fallback: str) -> str:
        base = target[: -len(suffix)] if target and target.endswith(suffix) else (target or fallback)
        name, n = base, 1
        while name in self.root:
            n += 1
            name = f"{base}_{n}"
        return name

    def add_module(self, key: str, name: str, module) -> str:
        """One module per parameter set (a layer called twice is one module called twice)."""
        if key in self.modules_by_param:
            return self.modules_by_param[key]
        self.root[name] = module
        self.modules_by_param[key] = name
        return name

    def constant(self, name: str, tensor):
        clean = "_const_" + "".join(c if c.isalnum() else "_" for c in name)
        if clean not in self.root:
            self.root[clean] = tensor.detach().clone()
        return self.graph.get_attr(clean)

    def arg(self, a):
        import torch.fx as fx
        if isinstance(a, fx.Node):
            if a.op == "placeholder" and a.name in self.tensors:
                target, t = self.tensors[a.name]
                return self.constant(target, t)
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.arg(x) for x in a)
        return a

    def emit(self, node, op: str, target, args, kwargs=None):
        new = self.graph.create_node(op, target, tuple(args), dict(kwargs or {}))
        path, cls = _where(node)
        new.meta["ecg_path"], new.meta["ecg_class"] = path, cls
        return new

    # ---- layers
    def conv(self, node, path, cls):
        a = list(node.args) + [None] * 9
        packet = _packet(node.target)
        if packet == "conv1d":
            x, w, b, stride, padding, dilation, groups = (a[0], a[1], a[2], a[3] or [1], a[4] if a[4] is not None else [0],
                                                          a[5] or [1], a[6] or 1)
        else:  # convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
            x, w, b, stride, padding, dilation, transposed, groups = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[8]
            if transposed:
                raise refuse(path, cls, "a transposed convolution")
        target, weight = self.param(w, "conv1d", path, cls)
        if weight.dim() != 3:
            raise refuse(path, cls, f"a {weight.dim() - 2}-D convolution", "single-lead models use Conv1d")
        _, bias = self.param(b, "conv1d", path, cls) if b is not None else (None, None)
        out_ch, in_per_group, k = weight.shape
        groups = int(groups)
        pad = padding if isinstance(padding, str) else int(list(padding)[0])
        conv = self.torch.nn.Conv1d(in_per_group * groups, out_ch, k, stride=int(list(stride)[0]), padding=pad,
                                    dilation=int(list(dilation)[0]), groups=groups, bias=bias is not None)
        with self.torch.no_grad():
            conv.weight.copy_(weight)
            if bias is not None:
                conv.bias.copy_(bias)
        name = self.add_module(target, self.module_name(target, ".weight", "conv"), conv)
        return self.emit(node, "call_module", name, [self.arg(x)])

    def linear(self, node, path, cls):
        x, w, b = (list(node.args) + [None])[:3]
        target, weight = self.param(w, "linear", path, cls)
        _, bias = self.param(b, "linear", path, cls) if b is not None else (None, None)
        lin = self.torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with self.torch.no_grad():
            lin.weight.copy_(weight)
            if bias is not None:
                lin.bias.copy_(bias)
        name = self.add_module(target, self.module_name(target, ".weight", "linear"), lin)
        return self.emit(node, "call_module", name, [self.arg(x)])

    def batch_norm(self, node, path, cls):
        a = list(node.args)
        if _packet(node.target) == "batch_norm":
            x, w, b, mean, var, training, momentum, eps = a[:8]
            if training:
                raise refuse(path, cls, "batch_norm in training mode", "export the model in eval mode")
        else:  # _native_batch_norm_legit_no_training(input, weight, bias, mean, var, momentum, eps)
            x, w, b, mean, var, momentum, eps = a[:7]
        t_mean, mean_t = self.param(mean, "batch_norm", path, cls)
        _, var_t = self.param(var, "batch_norm", path, cls)
        _, w_t = self.param(w, "batch_norm", path, cls) if w is not None else (None, None)
        _, b_t = self.param(b, "batch_norm", path, cls) if b is not None else (None, None)
        bn = self.torch.nn.BatchNorm1d(mean_t.shape[0], eps=float(eps), momentum=float(momentum or 0.1),
                                       affine=w_t is not None)
        with self.torch.no_grad():
            bn.running_mean.copy_(mean_t)
            bn.running_var.copy_(var_t)
            if w_t is not None:
                bn.weight.copy_(w_t)
                bn.bias.copy_(b_t if b_t is not None else self.torch.zeros_like(w_t))
        bn.eval()
        name = self.add_module(t_mean, self.module_name(t_mean, ".running_mean", "bn"), bn)
        return self.emit(node, "call_module", name, [self.arg(x)])

    def rnn(self, node, path, cls):
        packet = _packet(node.target)
        a = list(node.args)
        if len(a) < 9:
            raise refuse(path, cls, f"aten.{packet} with packed sequences", "pass a padded [N, T, F] tensor")
        x, hx, params, has_biases, num_layers, _dropout, train, bidirectional, batch_first = a[:9]
        states = hx if isinstance(hx, (list, tuple)) else [hx]
        for h in states:
            if not (hasattr(h, "op") and h.op == "call_function" and _packet(h.target) in STATE_OPS):
                raise refuse(path, cls, f"a {packet.upper()} with a given initial state",
                             "only a zero initial state (the default) is supported")
        pairs = [self.param(p, packet, path, cls) for p in params]
        targets = [t for t, _ in pairs]
        tensors = [t for _, t in pairs]
        per_layer = (4 if has_biases else 2)
        dirs = 2 if bidirectional else 1
        if len(tensors) != per_layer * dirs * int(num_layers):
            raise refuse(path, cls, f"a {packet.upper()} with projections", "proj_size is not supported")
        w_ih0 = tensors[0]
        gates = 3 if packet == "gru" else 4
        hidden = w_ih0.shape[0] // gates
        mod_cls = self.torch.nn.GRU if packet == "gru" else self.torch.nn.LSTM
        rnn = mod_cls(w_ih0.shape[1], hidden, num_layers=int(num_layers), bias=bool(has_biases),
                      batch_first=bool(batch_first), bidirectional=bool(bidirectional))
        names = [n for n, _ in rnn.named_parameters()]
        with self.torch.no_grad():
            for n, t in zip(names, tensors):
                getattr(rnn, n).copy_(t)
        rnn.eval()
        base = targets[0].rsplit(".", 1)[0] if targets[0] and "." in targets[0] else packet
        name = self.add_module(targets[0], self.module_name(None, "", base), rnn)
        out = self.emit(node, "call_module", name, [self.arg(x)])
        self.rnn_nodes[node] = (packet, out)
        return out

    # ---- driver
    def run(self):
        import torch.fx as fx
        for node in self.ep.graph.nodes:
            path, cls = _where(node)
            if node.op == "placeholder":
                if node.name in self.tensors:
                    continue
                if node.name not in self.user_inputs:
                    raise refuse("", "forward", f"an input {node.name!r} of unknown kind")
                if self.env:
                    raise ModelError("the model takes more than one input; a single-lead model takes one "
                                     "[N, 1, W] tensor")
                new = self.graph.placeholder("x")
                new.meta["ecg_path"], new.meta["ecg_class"] = "", "input"
                val = node.meta.get("val")
                self.input_shape = tuple(int(d) for d in val.shape[1:]) if hasattr(val, "shape") else None
                self.env[node] = new
                continue
            if node.op == "output":
                outs = node.args[0]
                outs = outs if isinstance(outs, (list, tuple)) else [outs]
                if len(outs) != 1:
                    raise ModelError(f"the model returns {len(outs)} tensors; expected one [N, n_outputs] tensor")
                self.graph.output(self.arg(outs[0]))
                continue
            if node.op != "call_function":
                raise refuse(path, cls, f"a {node.op} node")
            target = node.target
            if target is operator.getitem:
                self.env[node] = self.getitem(node)
                continue
            packet = _packet(target)
            if packet in SIZE_OPS or packet in STATE_OPS:
                continue                      # consumed by reshapes / RNN modules
            if packet in ("conv1d", "convolution", "_convolution"):
                self.env[node] = self.conv(node, path, cls)
            elif packet == "linear":
                self.env[node] = self.linear(node, path, cls)
            elif packet in ("batch_norm", "_native_batch_norm_legit_no_training"):
                self.env[node] = self.batch_norm(node, path, cls)
            elif packet in ("gru", "lstm"):
                self.env[node] = self.rnn(node, path, cls)
            elif packet in RESHAPES and packet not in BATCH_FREE_RESHAPES:
                self.env[node] = self.emit(node, "call_function", reshape_batch,
                                           [self.arg(node.args[0]), self._per_sample_shape(node, path, cls)])
            elif packet in BATCH_FREE_RESHAPES:
                self.env[node] = self.emit(node, "call_function", node.target, self.arg(list(node.args)),
                                           {k: self.arg(v) for k, v in node.kwargs.items()})
            elif packet in ELEMENTWISE or packet in BINARY or packet in OTHER:
                self.env[node] = self.emit(node, "call_function", target, self.arg(list(node.args)),
                                           {k: self.arg(v) for k, v in node.kwargs.items()})
            else:
                raise refuse(path, cls, f"aten.{packet}")
        gm = fx.GraphModule(self.root, self.graph)
        gm.graph.eliminate_dead_code()
        gm.recompile()
        mark_canonical(gm, self.input_shape)
        return gm.eval()

    def _per_sample_shape(self, node, path, cls) -> tuple:
        """The target shape of a view/reshape without its batch dimension: the call's own sizes when they
        hold a -1 (`x.view(x.size(0), -1)` stays width-free), else the recorded output shape."""
        import torch.fx as fx
        sizes = node.args[1] if len(node.args) > 1 else node.kwargs.get("shape")
        if isinstance(sizes, (list, tuple)) and len(sizes) > 1 and \
                sum(1 for v in sizes[1:] if isinstance(v, int) and v == -1) == 1 and \
                all(isinstance(v, int) for v in sizes[1:]) and not isinstance(sizes[0], fx.Node) and sizes[0] != -1:
            return tuple(int(v) for v in sizes[1:])
        if isinstance(sizes, (list, tuple)) and len(sizes) > 1 and isinstance(sizes[0], fx.Node) and \
                all(isinstance(v, int) for v in sizes[1:]) and sum(1 for v in sizes[1:] if v == -1) <= 1:
            return tuple(int(v) for v in sizes[1:])
        val = node.meta.get("val")
        if val is None or not hasattr(val, "shape"):
            raise refuse(path, cls, f"aten.{_packet(node.target)} with no recorded shape")
        return tuple(int(s) for s in val.shape[1:])

    def getitem(self, node):
        src, idx = node.args
        if src in self.rnn_nodes:
            packet, out = self.rnn_nodes[src]
            if packet == "lstm" and idx in (1, 2):   # aten.lstm gives (out, h, c); nn.LSTM (out, (h, c))
                pair = self.graph.call_function(operator.getitem, (out, 1))
                new = self.graph.call_function(operator.getitem, (pair, idx - 1))
            else:
                new = self.graph.call_function(operator.getitem, (out, idx))
        else:
            new = self.graph.call_function(operator.getitem, (self.arg(src), idx))
        path, cls = _where(node)
        new.meta["ecg_path"], new.meta["ecg_class"] = path, cls
        return new


def lift(ep):
    """The canonical GraphModule of an ExportedProgram (see the module docstring)."""
    return _Lifter(ep).run()


# ------------------------------------------------------------------------------------------ inspection

def propagate(gm, window_samples: int):
    """Run one zero window through the graph, recording every node's output (meta "ecg_value") and the
    output shape; returns the output tensor."""
    import torch
    values = {}

    class _Rec(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            values[n] = out
            return out

    with torch.no_grad():
        out = _Rec(gm).run(torch.zeros(1, 1, int(window_samples)))
    for n, v in values.items():
        n.meta["ecg_value"] = v
    return out


def check_io(gm, window_samples: int, n_outputs: int, what: str = "the contract") -> None:
    """ModelError unless the model takes one [1, 1, window] window and gives [1, n_outputs]."""
    try:
        out = propagate(gm, window_samples)
    except Exception as e:
        raise ModelError(f"the model does not run on a [1, 1, {window_samples}] window ({what}'s "
                         f"window_samples): {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}") from e
    shape = tuple(getattr(out, "shape", ()))
    if len(shape) != 2 or shape[1] != n_outputs:
        raise ModelError(f"the model's output has shape {list(shape)}; {what} lists {n_outputs} outputs "
                         f"(expected [1, {n_outputs}])")


def layer_modules(gm) -> dict[str, object]:
    """{module name: module} of the layers (conv, batch norm, linear, recurrent) of a canonical graph."""
    return {n.target: gm.get_submodule(n.target) for n in gm.graph.nodes if n.op == "call_module"}


def macs(gm, window_samples: int) -> int:
    """Multiply-accumulates of one window: convolutions, linear layers and recurrent cells (input and
    hidden projections of every step)."""
    return sum(r["macs"] for r in mac_rows(gm, window_samples))


def mac_rows(gm, window_samples: int) -> list[dict]:
    import torch
    propagate(gm, window_samples)
    rows = []
    for n in gm.graph.nodes:
        if n.op != "call_module":
            continue
        m = gm.get_submodule(n.target)
        out = n.meta["ecg_value"]
        if isinstance(m, torch.nn.Conv1d):
            count = out.shape[-1] * m.out_channels * (m.in_channels // m.groups) * m.kernel_size[0]
        elif isinstance(m, torch.nn.Linear):
            count = m.in_features * m.out_features * (out.numel() // out.shape[-1] // out.shape[0])
        elif isinstance(m, (torch.nn.GRU, torch.nn.LSTM)):
            seq = out[0]
            steps = seq.shape[1] if m.batch_first else seq.shape[0]
            gates = 3 if isinstance(m, torch.nn.GRU) else 4
            dirs = 2 if m.bidirectional else 1
            count = 0
            for layer in range(m.num_layers):
                fan_in = m.input_size if layer == 0 else m.hidden_size * dirs
                count += steps * dirs * gates * m.hidden_size * (fan_in + m.hidden_size)
        else:
            count = 0
        rows.append({"layer": n.target, "kind": type(m).__name__, "macs": int(count)})
    return rows


def as_numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy()
