"""The canonical graph (ecgedge.quantize.convert_graph) rebuilt as a Keras model, NHWC with H = 1, the torch
weights copied in, ready for TFLiteConverter's full-INT8 quantisation.

The layout is chosen once: a torch [N, C, L] tensor is Keras [N, 1, L, C]. Every value carries the map from
its torch dimensions to Keras dimensions, so `permute`, `transpose`, `squeeze`, `unsqueeze` and most
reshapes cost nothing; a TRANSPOSE is emitted only where the model itself reorders data in a way no map
can express (and the export's op check then refuses it, naming it). A flatten of [N, C, L] feeding a
Linear is taken in Keras order and the Linear's columns are permuted instead.

Folding: a BatchNorm right after a convolution or a Linear (its only user) goes into its weights; a
standalone BatchNorm is a per-channel affine (a 1x1 DepthwiseConv2D); a zero F.pad right before a
convolution or pool is its padding ('same' when it equals TensorFlow's SAME split, else an explicit PAD).
Replicate / reflect / circular padding is built from 1-sample slices and one concatenation. GRU and LSTM
are unrolled over their (short, after the convolutional front end) sequence: one 1x1 convolution per gate
projects every step's input at once, a SPLIT hands out the steps, and each step is FULLY_CONNECTED, ADD,
LOGISTIC, TANH, MUL and SUB on int8 tensors (no float op, no int16 state).
"""

from __future__ import annotations

import operator
import re

import numpy as np

from ecgedge.errors import ModelError
from ecgedge.quantize.convert_graph import (BINARY, ELEMENTWISE, OTHER, RESHAPES, _packet, as_numpy, propagate,
                                            refuse, reshape_batch)

CONCAT_MAX_INPUTS = 10   # tflite-micro's CONCATENATION takes at most 10 inputs: wider ones become a tree
INPUT_NAME = "ecg"


def _keras():
    import keras
    return keras


def _sanitize(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")
    return s or "model"


class V:
    """A torch value during conversion: its Keras tensor `k`, torch shape, and `axes` (torch dim ->
    Keras dim, None for a size-1 torch dim with no Keras dim). `flat`: a 2-D value flattened in Keras
    order, as the permutation (Keras index -> torch index) and the value it came from. `parts`: a value
    known as pieces along torch dim `part_dim` (an RNN's steps or layers)."""

    def __init__(self, k, shape, axes, flat=None, flat_src=None, parts=None, part_dim=None):
        self.k, self.shape, self.axes = k, tuple(int(s) for s in shape), tuple(axes)
        self.flat, self.flat_src = flat, flat_src
        self.parts, self.part_dim = parts, part_dim

    @property
    def krank(self) -> int:
        return len(self.k.shape)


class _Converter:
    def __init__(self, gm, window_samples: int, name: str):
        self.keras = _keras()
        self.L = self.keras.layers
        self.gm = gm
        self.window = int(window_samples)
        self.model_name = "m"                 # a prefix of every tensor name: kept short
        self.title = _sanitize(name)
        self.order: dict = {n: i for i, n in enumerate(gm.graph.nodes)}
        self.names: set[str] = set()
        self.layers: dict[str, dict] = {}       # keras layer name -> {"path", "class", "op"}
        self.env: dict = {}
        self.done: set = set()
        self.transposes: list[str] = []
        self.node = None

    # ------------------------------------------------------------------ naming / bookkeeping
    def name(self, op: str, node=None) -> str:
        """A short unique Keras layer name, `<op><n>` (tensor names are stored in the .tflite: module paths
        in them cost flash); `layers` maps it to the torch module path, class, op and graph position."""
        node = node if node is not None else self.node
        path = node.meta.get("ecg_path", "") if node is not None else ""
        tag = re.sub(r"[^A-Za-z]+", "", op) or "op"
        name = f"{tag}{len(self.names)}"
        self.names.add(name)
        self.layers[name] = {"path": path, "class": node.meta.get("ecg_class", "") if node is not None else "",
                             "op": op, "order": self.order.get(node, 0)}
        return name

    def fail(self, op: str, why: str = ""):
        node = self.node
        raise refuse(node.meta.get("ecg_path", ""), node.meta.get("ecg_class", ""), op, why)

    def fn(self, op: str, f, inputs):
        """A Keras layer computing f(inputs) with keras.ops (its own name; no weights)."""
        keras = self.keras

        class Fn(keras.layers.Layer):
            def call(self, x):
                return f(x)

        return Fn(name=self.name(op))(inputs)

    def add(self, a, b, op: str = "add"):
        """a + b as TensorFlow's own AddV2 (keras.ops.add turns a [1, n] operand into a squeezed BiasAdd,
        which costs a RESHAPE per add once converted)."""
        return self.fn(op, lambda t: t[0] + t[1], [a, b])

    # ------------------------------------------------------------------------------ layouts
    def to_layout(self, v: V, tshape, axes, krank: int, why: str = "layout"):
        """v's Keras tensor in the layout (torch shape `tshape`, torch dim -> Keras dim `axes`, Keras rank
        `krank`); v is broadcast-aligned to the right. Reshapes are free (no data moves); a reordering of
        non-1 dims is a TRANSPOSE, recorded."""
        if v.flat is not None:
            v = self.unflatten(v)
        off = len(tshape) - len(v.shape)
        if off < 0:
            self.fail(why, f"a rank-{len(v.shape)} tensor cannot be broadcast to rank {len(tshape)}")
        nz = [(v.axes[i], axes[i + off], s) for i, s in enumerate(v.shape) if s != 1]
        for kv, kt, _ in nz:
            if kv is None or kt is None:
                self.fail(why, "internal layout error (a non-1 dimension without a Keras dimension)")
        target = [1] * krank
        for _, kt, s in nz:
            target[kt] = s
        k = v.k
        by_src = sorted(nz, key=lambda r: r[0])
        if [r[1] for r in by_src] != sorted(r[1] for r in by_src):
            # reorder the non-1 Keras dims into the target's order: a real transpose
            cur = list(k.shape)
            order_nz = [r[0] for r in sorted(nz, key=lambda r: r[1])]
            rest = [d for d in range(1, len(cur)) if d not in order_nz]
            perm = order_nz + rest
            k = self.L.Permute(tuple(perm), name=self.name("transpose"))(k)
            self.transposes.append(f"{self.node.meta.get('ecg_path', '') or 'model'} ({why})")
        if list(k.shape[1:]) != target[1:]:
            k = self.L.Reshape(tuple(target[1:]), name=self.name("reshape"))(k)
        return k

    def ncl(self, v: V, why: str):
        """v as Keras [N, 1, L, C] for a torch [N, C, L] value."""
        if len(v.shape) != 3:
            self.fail(why, f"expected a [N, C, L] tensor, got shape {list(v.shape)}")
        return self.to_layout(v, v.shape, (0, 3, 2), 4, why)

    def unflatten(self, v: V) -> V:
        """A value flattened in Keras order, re-made in torch order (TRANSPOSE + RESHAPE)."""
        src = v.flat_src
        order = tuple(range(len(src.shape)))
        k = self.to_layout(V(src.k, src.shape, src.axes), src.shape, order, len(src.shape), "flatten")
        k = self.L.Reshape((int(np.prod(v.shape[1:])),), name=self.name("reshape"))(k)
        return V(k, v.shape, (0, 1))

    def last_dim_layout(self, v: V, why: str):
        """(keras tensor, layout) with v's last torch dim on the last Keras dim (Dense, Softmax...)."""
        last = len(v.shape) - 1
        if v.flat is None and v.axes[last] is not None and v.axes[last] == v.krank - 1:
            return v.k, v.axes
        nz = [i for i, s in enumerate(v.shape) if s != 1]
        if nz == [last] or (not nz):
            k = self.to_layout(v, v.shape, tuple([0] + [None] * (len(v.shape) - 2) + [1]), 2, why)
            return k, tuple([0] + [None] * (len(v.shape) - 2) + [1])
        if len(v.shape) == 3:   # [N, T, F] -> Keras [N, 1, T, F]
            axes = (0, 2, 3)
            return self.to_layout(v, v.shape, axes, 4, why), axes
        self.fail(why, f"its input of shape {list(v.shape)} has no layout with features last")

    # ------------------------------------------------------------------------------ values
    def val(self, a):
        import torch.fx as fx
        if isinstance(a, fx.Node):
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.val(x) for x in a)
        return a

    @staticmethod
    def is_const(x) -> bool:
        return isinstance(x, (int, float, np.ndarray, np.number)) and not isinstance(x, bool)

    # ------------------------------------------------------------------------------ driver
    def run(self):
        keras = self.keras
        gm = self.gm
        propagate(gm, self.window)
        inp = keras.Input(shape=(1, self.window, 1), batch_size=1, name=INPUT_NAME)
        out = None
        for node in gm.graph.nodes:
            self.node = node
            if node in self.done:
                continue
            if node.op == "placeholder":
                self.env[node] = V(inp, (1, 1, self.window), (0, 3, 2))
            elif node.op == "get_attr":
                self.env[node] = as_numpy(getattr(gm, node.target)).astype(np.float64)
            elif node.op == "call_module":
                self.env[node] = self.module(node, gm.get_submodule(node.target))
            elif node.op == "call_function":
                self.env[node] = self.function(node)
            elif node.op == "output":
                v = self.env[node.args[0]]
                if not isinstance(v, V):
                    self.fail("output", "the model's output does not depend on its input")
                n = int(np.prod(v.shape[1:]))
                out = self.to_layout(v, (1, n), (0, 1), 2, "output") if v.shape != (1, n) or v.krank != 2 \
                    else v.k
                if v.flat is not None:
                    out = self.to_layout(v, (1, n), (0, 1), 2, "output")
        model = keras.Model(inp, out, name=self.model_name)
        return model

    # ------------------------------------------------------------------------------ modules
    def module(self, node, m):
        import torch
        arg = self.val(node.args[0])
        if isinstance(m, torch.nn.Conv1d):
            return self.conv(node, m)
        if isinstance(m, torch.nn.Linear):
            return self.linear(node, m, arg)
        if isinstance(m, torch.nn.BatchNorm1d):
            return self.batch_norm(m, arg)
        if isinstance(m, (torch.nn.GRU, torch.nn.LSTM)):
            return self.rnn(m, arg)
        self.fail(type(m).__name__)

    def _feeds_head(self, node) -> bool:
        """Whether `node`'s value reaches the model output only through shape-only steps and one Linear
        (a classification head): then a 2-D pooled tensor saves the final RESHAPE."""
        import torch
        passthrough = {"flatten", "squeeze", "dropout", "clone", "contiguous", "alias", "detach"}
        frontier, linear_seen = [node], False
        while frontier:
            n = frontier.pop()
            for u in n.users:
                if u.op == "output":
                    if not linear_seen:
                        return False
                    continue
                if u.op == "call_module" and isinstance(self.gm.get_submodule(u.target), torch.nn.Linear) \
                        and not linear_seen:
                    linear_seen = True
                    frontier.append(u)
                elif u.op == "call_function" and (u.target is reshape_batch or _packet(u.target) in passthrough) \
                        and not linear_seen:
                    frontier.append(u)
                else:
                    return False
        return linear_seen

    def _single_bn_user(self, node):
        import torch
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_module":
            m = self.gm.get_submodule(users[0].target)
            if isinstance(m, torch.nn.BatchNorm1d):
                return users[0], m
        return None, None

    @staticmethod
    def _bn_affine(bn):
        mean = bn.running_mean.detach().double().numpy()
        var = bn.running_var.detach().double().numpy()
        gamma = bn.weight.detach().double().numpy() if bn.affine else np.ones_like(mean)
        beta = bn.bias.detach().double().numpy() if bn.affine else np.zeros_like(mean)
        scale = gamma / np.sqrt(var + bn.eps)
        return scale, beta - mean * scale

    def _zero_pad_before(self, node):
        """(input node, (left, right)) when `node`'s input is a zero pad of the time axis used only by it."""
        src = node.args[0]
        if getattr(src, "op", None) == "call_function" and _packet(src.target) in ("pad", "constant_pad_nd") \
                and len(src.users) == 1:
            pads, mode, value = self._pad_args(src)
            if mode == "constant" and value == 0 and len(pads) == 2 and len(self.env[src.args[0]].shape) == 3:
                return src.args[0], (int(pads[0]), int(pads[1]))
        return node.args[0], (0, 0)

    @staticmethod
    def _pad_args(node):
        a = list(node.args) + [None] * 3
        packet = _packet(node.target)
        if packet == "constant_pad_nd":
            return list(a[1]), "constant", float(a[2] or 0.0)
        if packet == "reflection_pad1d":
            return list(a[1]), "reflect", None
        if packet == "replication_pad1d":
            return list(a[1]), "replicate", None
        mode = node.kwargs.get("mode", a[2] or "constant")
        value = node.kwargs.get("value", a[3])
        return list(a[1]), mode, float(value or 0.0) if mode == "constant" else None

    @staticmethod
    def _same_split(length: int, k_eff: int, stride: int) -> tuple[int, int]:
        out = -(-length // stride)
        total = max(0, (out - 1) * stride + k_eff - length)
        return total // 2, total - total // 2

    def conv(self, node, m):
        L = self.L
        src, (pl, pr) = self._zero_pad_before(node)
        if src is not node.args[0]:
            self.done.add(node.args[0])
        v = self.env[src]
        x = self.ncl(v, "Conv1d")
        length = v.shape[2]
        k, s, d, g = m.kernel_size[0], m.stride[0], m.dilation[0], m.groups
        if s > 1 and d > 1:
            self.fail("Conv1d with both stride > 1 and dilation > 1", "TFLite's CONV_2D takes one or the other")
        if isinstance(m.padding, str):
            total = 0 if m.padding == "valid" else d * (k - 1)
            pl, pr = pl + total // 2, pr + total - total // 2
        else:
            pl, pr = pl + m.padding[0], pr + m.padding[0]
        if m.padding_mode != "zeros":
            self.fail(f"Conv1d(padding_mode={m.padding_mode!r}) inside a module", "export gives it as F.pad")
        w = m.weight.detach().double().numpy()             # [out, in/g, k]
        b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(w.shape[0])
        bn_node, bn = self._single_bn_user(node)
        if bn is not None:
            scale, shift = self._bn_affine(bn)
            w, b = w * scale[:, None, None], b * scale + shift
            self.done.add(bn_node)
        k_eff = d * (k - 1) + 1
        out_len = int(node.meta["ecg_value"].shape[-1])
        if (pl, pr) == (0, 0):
            padding = "valid"
        elif (pl, pr) == self._same_split(length + 0, k_eff, s) and -(-length // s) == out_len:
            padding = "same"
        else:
            x = L.ZeroPadding2D(((0, 0), (pl, pr)), name=self.name("pad"))(x)
            padding = "valid"
        in_ch, out_ch = m.in_channels, m.out_channels
        if g > 1 and g == in_ch:
            mult = out_ch // in_ch
            layer = L.DepthwiseConv2D((1, k), strides=(1, s), padding=padding, depth_multiplier=mult,
                                      dilation_rate=(1, d), name=self.name("dwconv"))
            y = layer(x)
            kernel = w.reshape(in_ch, mult, k).transpose(2, 0, 1)[None]      # [1, k, in, mult]
            layer.set_weights([kernel.astype(np.float32), b.astype(np.float32)])
        else:
            layer = L.Conv2D(out_ch, (1, k), strides=(1, s), padding=padding, dilation_rate=(1, d), groups=g,
                             name=self.name("conv"))
            y = layer(x)
            layer.set_weights([np.transpose(w, (2, 1, 0))[None].astype(np.float32), b.astype(np.float32)])
        if int(y.shape[2]) != out_len:
            self.fail("Conv1d", f"Keras gives length {y.shape[2]}, torch {out_len} (padding {pl}, {pr})")
        out = V(y, (1, out_ch, out_len), (0, 3, 2))
        if bn_node is not None:
            self.env[bn_node] = out
        return out

    def linear(self, node, m, v):
        L = self.L
        w = m.weight.detach().double().numpy()             # [out, in]
        b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(w.shape[0])
        bn_node, bn = self._single_bn_user(node)
        if bn is not None and len(v.shape) == 2:
            scale, shift = self._bn_affine(bn)
            w, b = w * scale[:, None], b * scale + shift
            self.done.add(bn_node)
        else:
            bn_node = None
        if v.flat is not None:
            x, axes = v.k, (0, 1)
            w = w[:, v.flat]
        else:
            x, axes = self.last_dim_layout(v, "Linear")
        layer = L.Dense(w.shape[0], name=self.name("dense"))
        y = layer(x)
        layer.set_weights([w.T.astype(np.float32), b.astype(np.float32)])
        out = V(y, v.shape[:-1] + (w.shape[0],), axes)
        if bn_node is not None:
            self.env[bn_node] = out
        return out

    def batch_norm(self, m, v):
        scale, shift = self._bn_affine(m)
        if len(v.shape) == 3:
            x, axes = self.ncl(v, "BatchNorm1d"), (0, 3, 2)
        else:
            x, axes = self.last_dim_layout(v, "BatchNorm1d")
        if len(x.shape) == 4:
            layer = self.L.DepthwiseConv2D((1, 1), use_bias=True, name=self.name("bn"))
            y = layer(x)
            layer.set_weights([scale.astype(np.float32).reshape(1, 1, -1, 1), shift.astype(np.float32)])
        else:
            sc, sh = scale.astype(np.float32), shift.astype(np.float32)
            y = self.fn("bn", lambda t: t * sc + sh, x)
        return V(y, v.shape, axes)

    # ------------------------------------------------------------------------------ recurrent
    def _steps_needed(self, steps: int) -> tuple[int, int]:
        """(steps the forward pass must run, steps the reverse pass must run) for the last layer: all of
        them, unless the model reads only some steps of the output sequence (out[:, -1]: the reverse
        pass needs one step) and not the final states."""
        import torch.fx as fx
        node = self.node
        fwd = rev = 0
        for user in node.users:
            if user.target is not operator.getitem:
                return steps, steps
            if user.args[1] != 0:                   # final states: every step of both directions
                return steps, steps
            for u in user.users:
                if u.op == "call_function" and _packet(u.target) == "select" and len(u.args) > 2 \
                        and not isinstance(u.args[2], fx.Node):
                    mod = self.gm.get_submodule(node.target)
                    t_dim = 1 if mod.batch_first else 0
                    if u.args[1] % 3 != t_dim:
                        return steps, steps
                    i = int(u.args[2]) % steps
                    fwd, rev = max(fwd, i + 1), max(rev, steps - i)
                else:
                    return steps, steps
        return fwd, rev

    def rnn(self, m, v):
        import torch
        L = self.L
        gru = isinstance(m, torch.nn.GRU)
        gates = 3 if gru else 4
        t_dim = 1 if m.batch_first else 0
        if len(v.shape) != 3:
            self.fail(type(m).__name__, f"expected a [N, T, F] input, got {list(v.shape)}")
        steps = v.shape[t_dim]
        axes = [None, None, None]
        axes[t_dim], axes[2] = 2, 3
        axes[1 - t_dim] = 0
        seq = self.to_layout(v, v.shape, tuple(axes), 4, type(m).__name__)      # [1, 1, T, F]
        H = m.hidden_size
        dirs = 2 if m.bidirectional else 1
        need = self._steps_needed(steps)
        finals_h, finals_c = [], []
        outputs = None
        for layer in range(m.num_layers):
            last = layer == m.num_layers - 1
            dir_outs = []
            for direction in range(dirs):
                n_steps = need[direction] if last else steps
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                w_ih = getattr(m, "weight_ih" + sfx).detach().double().numpy()
                w_hh = getattr(m, "weight_hh" + sfx).detach().double().numpy()
                b_ih = getattr(m, "bias_ih" + sfx).detach().double().numpy() if m.bias else np.zeros(gates * H)
                b_hh = getattr(m, "bias_hh" + sfx).detach().double().numpy() if m.bias else np.zeros(gates * H)
                tag = f"l{layer}{'r' if direction else ''}"
                order = list(range(steps - 1, -1, -1) if direction else range(steps))[:n_steps]
                xs = []
                for gate in range(gates):
                    sl = slice(gate * H, (gate + 1) * H)
                    bias = b_ih[sl] + (b_hh[sl] if not (gru and gate == 2) else 0.0)
                    conv = L.Conv2D(H, (1, 1), name=self.name(f"{tag}_in{gate}"))
                    proj = conv(seq)
                    conv.set_weights([w_ih[sl].T[None, None].astype(np.float32), bias.astype(np.float32)])
                    # an LSTM's first step has c = 0: its forget gate input is never read (an unread SPLIT
                    # output has no calibration range and leaves the SPLIT in float)
                    used = order[1:] if not gru and gate == 1 and len(order) > 1 else order
                    xs.append(self.step_slices(proj, steps, used, f"{tag}_steps{gate}"))
                dense = []
                for gate in range(gates):
                    sl = slice(gate * H, (gate + 1) * H)
                    with_bias = gru and gate == 2
                    d = L.Dense(H, use_bias=with_bias, name=self.name(f"{tag}_rec{gate}"))
                    dense.append((d, w_hh[sl].T.astype(np.float32),
                                  b_hh[sl].astype(np.float32) if with_bias else None))
                outs = [None] * steps
                h = c = None
                for t in order:
                    step = [x.get(t) for x in xs]
                    if gru:
                        h = self.gru_step(step, h, dense, b_hh[2 * H:].astype(np.float32), tag)
                    else:
                        h, c = self.lstm_step(step, h, c, dense, tag)
                    outs[t] = h
                finals_h.append(h)
                finals_c.append(c)
                dir_outs.append(outs)
            if dirs == 2:
                outputs = [self.concat([f, r], 1, "bidir") if f is not None and r is not None else None
                           for f, r in zip(*dir_outs)]
            else:
                outputs = dir_outs[0]
            seq = self.stack_rows(outputs, "sequence") if all(o is not None for o in outputs) else None
        width = H * dirs
        out_shape = [1, 1, 1]
        out_shape[t_dim], out_shape[2] = steps, width
        out_axes = [None, None, None]
        out_axes[t_dim], out_axes[2] = 2, 3
        out_axes[1 - t_dim] = 0
        parts = [None if o is None else V(o, (1, width), (0, 1)) for o in outputs]
        out = V(seq, tuple(out_shape), tuple(out_axes), parts=parts, part_dim=t_dim)
        h_n = self.stacked(finals_h, H)
        if gru:
            return (out, h_n)
        return (out, (h_n, self.stacked(finals_c, H)))

    def stack_rows(self, rows, op: str):
        """[1, W] rows (2-D step tensors) -> Keras [1, 1, len(rows), W]."""
        keras = self.keras
        n, width = len(rows), int(rows[0].shape[-1])
        if n == 1:
            return self.fn(op, lambda t: keras.ops.reshape(t, (1, 1, 1, width)), rows[0])
        stacked = self.concat(rows, 0, op)
        return self.fn(op, lambda t: keras.ops.reshape(t, (1, 1, n, width)), stacked)

    def stacked(self, tensors, H):
        parts = [None if t is None else V(t, (1, H), (0, 1)) for t in tensors]
        k = self.stack_rows(tensors, "states") if all(t is not None for t in tensors) else None
        return V(k, (len(tensors), 1, H), (2, 0, 3), parts=parts, part_dim=0)

    def step_slices(self, x, steps: int, order: list, op: str) -> dict:
        """{t: [1, H]} for the steps in `order` of a [1, 1, T, H] projection: one RESHAPE to [T, H], then one
        SPLIT when every step is needed (of a contiguous run of steps: one slice of the run, then one SPLIT),
        else one slice per step."""
        keras = self.keras
        width = int(x.shape[-1])
        rows = self.fn(op, lambda t: keras.ops.reshape(t, (steps, width)), x)
        if steps == 1:
            return {0: rows}
        if len(order) == steps:
            keras_split = self.fn(op, lambda t: keras.ops.split(t, steps, axis=0), rows)
            return dict(enumerate(keras_split))
        first, n = min(order), len(order)
        if n > 1 and sorted(order) == list(range(first, first + n)):
            run = self.fn(op, lambda r: r[first:first + n], rows)
            return dict(zip(range(first, first + n), self.fn(op, lambda t: keras.ops.split(t, n, axis=0), run)))
        return {t: self.fn(op, lambda r, t=t: r[t:t + 1], rows) for t in order}

    def concat(self, tensors, axis: int, op: str):
        keras = self.keras
        tensors = list(tensors)
        if len(tensors) == 1:
            return tensors[0]

        def cat(ts):
            if axis == 0:      # Keras layers keep axis 0 for the batch: concatenate rows with keras.ops
                return self.fn(op, lambda t: keras.ops.concatenate(list(t), axis=0), ts)
            return self.L.Concatenate(axis=axis, name=self.name(op))(ts)

        while len(tensors) > CONCAT_MAX_INPUTS:
            tensors = [tensors[i] if len(tensors[i:i + CONCAT_MAX_INPUTS]) == 1 else
                       cat(tensors[i:i + CONCAT_MAX_INPUTS]) for i in range(0, len(tensors), CONCAT_MAX_INPUTS)]
        return cat(tensors)

    def _rec(self, d, h):
        layer, w, b = d
        y = layer(h)
        if not getattr(layer, "_ecg_set", False):   # built by its first call; shared by every step
            layer.set_weights([w] if b is None else [w, b])
            layer._ecg_set = True
        return y

    def act(self, x, kind: str, op: str):
        return self.L.Activation(kind, name=self.name(op))(x)

    def mul(self, a, b, op: str):
        return self.fn(op, lambda t: t[0] * t[1], [a, b])

    def sub(self, a, b, op: str):
        return self.fn(op, lambda t: t[0] - t[1], [a, b])

    def gru_step(self, x, h, dense, b_hn, tag):
        """torch's GRU cell: r, z = sigmoid(x_rz + W_hrz h (+ b)), n = tanh(x_n + r * (W_hn h + b_hn)),
        h' = n + z * (h - n); with h = 0 on the first step."""
        xr, xz, xn = x
        if h is None:
            r = self.act(xr, "sigmoid", f"{tag}_r")
            z = self.act(xz, "sigmoid", f"{tag}_z")
            n = self.act(self.add(xn, self.fn(f"{tag}_rbias", lambda t: t * b_hn, r), f"{tag}_nadd"), "tanh", f"{tag}_n")
            return self.sub(n, self.mul(z, n, f"{tag}_zn"), f"{tag}_h")
        r = self.act(self.add(xr, self._rec(dense[0], h), f"{tag}_radd"), "sigmoid", f"{tag}_r")
        z = self.act(self.add(xz, self._rec(dense[1], h), f"{tag}_zadd"), "sigmoid", f"{tag}_z")
        n = self.act(self.add(xn, self.mul(r, self._rec(dense[2], h), f"{tag}_rn"), f"{tag}_nadd"), "tanh", f"{tag}_n")
        return self.add(n, self.mul(z, self.sub(h, n, f"{tag}_hn"), f"{tag}_zd"), f"{tag}_h")

    def lstm_step(self, x, h, c, dense, tag):
        """torch's LSTM cell (gates i, f, g, o): c' = f * c + i * g, h' = o * tanh(c'); h = c = 0 first."""
        xi, xf, xg, xo = x
        if h is None:
            i = self.act(xi, "sigmoid", f"{tag}_i")
            g = self.act(xg, "tanh", f"{tag}_g")
            o = self.act(xo, "sigmoid", f"{tag}_o")
            c = self.mul(i, g, f"{tag}_c")
        else:
            def gate(xt, d, kind, name):
                return self.act(self.add(xt, self._rec(d, h), f"{tag}_{name}add"), kind, f"{tag}_{name}")
            i = gate(xi, dense[0], "sigmoid", "i")
            f = gate(xf, dense[1], "sigmoid", "f")
            g = gate(xg, dense[2], "tanh", "g")
            o = gate(xo, dense[3], "sigmoid", "o")
            c = self.add(self.mul(f, c, f"{tag}_fc"), self.mul(i, g, f"{tag}_ig"), f"{tag}_c")
        h = self.mul(o, self.act(c, "tanh", f"{tag}_tc"), f"{tag}_h")
        return h, c

    # ------------------------------------------------------------------------------ functions
    def function(self, node):
        if node.target is operator.getitem:
            src, idx = node.args
            return self.val(src)[idx]
        packet = _packet(node.target)
        if node.target is reshape_batch or packet in RESHAPES:
            shape = tuple(int(s) for s in node.meta["ecg_value"].shape)
            return self.reshape(self.val(node.args[0]), (1, *shape[1:]))
        args = [self.val(a) for a in node.args]
        kwargs = {k: self.val(v) for k, v in node.kwargs.items()}
        if packet in ELEMENTWISE:
            return self.elementwise(packet, args, kwargs)
        if packet in BINARY:
            return self.binary(packet, args, kwargs)
        handler = getattr(self, f"op_{packet.lstrip('_')}", None)
        if packet in OTHER and handler is not None:
            return handler(node, args, kwargs)
        self.fail(f"aten.{packet}")

    def elementwise(self, packet, args, kwargs):
        L = self.L
        keras = self.keras
        v = args[0]
        if not isinstance(v, V):
            self.fail(f"aten.{packet} on a constant")
        kind = ELEMENTWISE[packet]
        if kind in ("identity", "Dropout"):
            if kind == "Dropout" and len(args) > 2 and args[2]:
                self.fail("dropout in training mode", "export the model in eval mode")
            return v
        x = v.k
        if kind == "ReLU":
            y = L.ReLU(name=self.name("relu"))(x)
        elif kind == "ReLU6":
            lo, hi = (args[1] if len(args) > 1 else -1.0), (args[2] if len(args) > 2 else 1.0)
            if packet == "relu6":
                lo, hi = 0.0, 6.0
            if (lo, hi) != (0.0, 6.0):
                self.fail(f"hardtanh({lo}, {hi})", "only ReLU6 (hardtanh 0..6) is supported")
            y = L.ReLU(max_value=6.0, name=self.name("relu6"))(x)
        elif kind == "LeakyReLU":
            slope = float(args[1]) if len(args) > 1 else 0.01
            y = L.LeakyReLU(negative_slope=slope, name=self.name("leaky_relu"))(x)
        elif kind == "SiLU":
            sig = L.Activation("sigmoid", name=self.name("silu_sigmoid"))(x)
            y = L.Multiply(name=self.name("silu"))([x, sig])
        elif kind == "GELU":
            # tflite-micro has no GELU kernel: x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), which is
            # GELU's tanh form (within 5e-4 of the erf form) in MUL, ADD and LOGISTIC
            a, b = np.float32(2.0 * np.sqrt(2.0 / np.pi)), np.float32(2.0 * np.sqrt(2.0 / np.pi) * 0.044715)
            sq = self.mul(x, x, "gelu_sq")
            u = self.mul(x, self.fn("gelu_poly", lambda t: t * b + a, sq), "gelu_u")
            y = self.mul(x, self.act(u, "sigmoid", "gelu_sigmoid"), "gelu")
        elif kind == "Hardswish":
            y = self.fn("hardswish", lambda t: keras.activations.hard_swish(t), x)
        elif kind == "Hardsigmoid":
            y = self.fn("hardsigmoid", lambda t: keras.ops.relu6(t + 3.0) * (1.0 / 6.0), x)
        elif kind == "Sigmoid":
            y = L.Activation("sigmoid", name=self.name("sigmoid"))(x)
        elif kind == "Tanh":
            y = L.Activation("tanh", name=self.name("tanh"))(x)
        else:
            self.fail(f"aten.{packet}")
        return V(y, v.shape, v.axes)

    def _const_layout(self, c: np.ndarray, tshape, axes, krank) -> np.ndarray:
        """A torch-layout constant broadcast-aligned into the Keras layout (free: it is data)."""
        c = np.asarray(c, np.float64)
        off = len(tshape) - c.ndim
        if off < 0:
            c = c.reshape(c.shape[-len(tshape):]) if all(s == 1 for s in c.shape[:-len(tshape)]) else c
            off = len(tshape) - c.ndim
            if off < 0:
                self.fail("a constant of higher rank than the tensor it meets")
        target = [1] * krank
        src_dims = []
        for i, s in enumerate(c.shape):
            if s != 1:
                kd = axes[i + off]
                if kd is None:
                    self.fail("a constant broadcast along a dimension the tensor does not have")
                target[kd] = s
                src_dims.append((kd, i))
        order = [i for _, i in sorted(src_dims)]
        squeezed = c.reshape([s for s in c.shape if s != 1]) if src_dims else c.reshape(())
        if src_dims:
            rank_order = [sorted(j for _, j in src_dims).index(i) for i in order]
            squeezed = np.transpose(squeezed, rank_order)
        return squeezed.reshape(target[1:]).astype(np.float32)

    def binary(self, packet, args, kwargs):
        L = self.L
        a, b = args[0], args[1]
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        if packet == "rsub":
            a, b, packet = b, a, "sub"
        if alpha != 1:
            if self.is_const(b):
                b = np.asarray(b, np.float64) * alpha
            else:
                self.fail(f"aten.{packet} with alpha={alpha}")
        if not isinstance(a, V) and not isinstance(b, V):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            return {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b}[packet]
        if isinstance(a, V) and isinstance(b, V):
            if packet == "div":
                self.fail("a division by a tensor", "TFLite has no int8 DIV; divide by a constant")
            big, small = (a, b) if len(a.shape) >= len(b.shape) and np.prod(a.shape) >= np.prod(b.shape) else (b, a)
            shape = tuple(np.broadcast_shapes(a.shape, b.shape))
            if shape != big.shape:
                self.fail(f"aten.{packet} broadcasting both operands", f"shapes {list(a.shape)} and {list(b.shape)}")
            kb = big.k if big.flat is None else self.to_layout(big, big.shape, (0, 1), 2, packet)
            axes = big.axes if big.flat is None else (0, 1)
            ks = self.to_layout(small, shape, axes, len(kb.shape), packet)
            ka, kb2 = (kb, ks) if big is a else (ks, kb)
            f = {"add": self.add, "sub": self.sub, "mul": self.mul}[packet]
            return V(f(ka, kb2, packet), shape, axes)
        # tensor with a constant
        v, c, first = (a, b, True) if isinstance(a, V) else (b, a, False)
        shape = tuple(np.broadcast_shapes(v.shape, np.shape(c)))
        if shape != v.shape:
            self.fail(f"aten.{packet} with a constant that widens the tensor")
        x = v.k if v.flat is None else self.to_layout(v, v.shape, (0, 1), 2, packet)
        axes = v.axes if v.flat is None else (0, 1)
        cc = self._const_layout(c, v.shape, axes, len(x.shape))
        if packet == "div":
            if not first:
                self.fail("a constant divided by a tensor")
            cc, packet = (1.0 / cc).astype(np.float32), "mul"
        if packet == "add":
            f = lambda t: t + cc  # noqa: E731
        elif packet == "mul":
            f = lambda t: t * cc  # noqa: E731
        elif first:
            f = lambda t: t - cc  # noqa: E731
        else:
            f = lambda t: cc - t  # noqa: E731
        return V(self.fn(packet, f, x), shape, axes)

    # ---- shapes
    def reshape(self, v, new_shape):
        new_shape = tuple(int(s) for s in new_shape)
        if not isinstance(v, V):
            return np.asarray(v).reshape(new_shape)
        old = v.shape
        old_nz = [(i, s) for i, s in enumerate(old) if s != 1]
        new_nz = [(i, s) for i, s in enumerate(new_shape) if s != 1]
        if v.flat is not None:
            if [s for _, s in new_nz] == [s for _, s in old_nz]:
                axes = [None] * len(new_shape)
                if new_nz:
                    axes[new_nz[0][0]] = 1
                axes[0] = 0
                return V(v.k, new_shape, axes, flat=v.flat, flat_src=v.flat_src)
            v = self.unflatten(v)
            old, old_nz = v.shape, [(i, s) for i, s in enumerate(v.shape) if s != 1]
        if [s for _, s in new_nz] == [s for _, s in old_nz]:       # only size-1 dims change: free
            axes = [None] * len(new_shape)
            axes[0] = 0
            for (ni, _), (oi, _) in zip(new_nz, old_nz):
                axes[ni] = v.axes[oi]
            return V(v.k, new_shape, axes)
        # runs of old dims merging into new dims (flatten)
        groups, j = [], 0
        sizes = [s for _, s in old_nz]
        for _, s in new_nz:
            run, prod = [], 1
            while j < len(sizes) and prod < s:
                prod *= sizes[j]
                run.append(old_nz[j][0])
                j += 1
            if prod != s:
                return self.general_reshape(v, new_shape)
            groups.append(run)
        if len(new_nz) == 1 and len(groups[0]) > 1:
            # a flatten to [N, F]: taken in Keras order; consumers (Linear) permute their weights
            run = groups[0]
            kdims = [v.axes[i] for i in run]
            width = int(np.prod(new_shape[1:]))
            k = v.k if list(v.k.shape) == [1, width] else \
                self.L.Reshape((width,), name=self.name("flatten"))(v.k)
            sizes_run = [old[i] for i in run]
            idx = np.arange(int(np.prod(sizes_run))).reshape(sizes_run)
            order = np.argsort(kdims)                  # torch dims of the run in Keras order
            perm = np.transpose(idx, order).ravel()
            axes = [None] * len(new_shape)
            axes[0], axes[new_nz[0][0]] = 0, 1
            flat = None if np.array_equal(perm, np.arange(perm.size)) else perm
            return V(k, new_shape, axes, flat=flat, flat_src=v if flat is not None else None)
        return self.general_reshape(v, new_shape)

    def general_reshape(self, v, new_shape):
        """Any other reshape: data in torch order (TRANSPOSE where needed), reshaped, in torch order."""
        order = tuple(range(len(v.shape)))
        k = self.to_layout(v, v.shape, order, len(v.shape), "reshape")
        k = self.L.Reshape(tuple(new_shape[1:]), name=self.name("reshape"))(k)
        return V(k, new_shape, tuple(range(len(new_shape))))

    def op_permute(self, node, args, kwargs):
        v, dims = args[0], [d % len(args[0].shape) for d in args[1]]
        if v.flat is not None:
            v = self.unflatten(v)
        parts = None
        if v.parts is not None:
            parts, part_dim = v.parts, dims.index(v.part_dim)
        out = V(v.k, tuple(v.shape[d] for d in dims), tuple(v.axes[d] for d in dims))
        if parts is not None:
            out.parts, out.part_dim = parts, part_dim
        return out

    def op_transpose(self, node, args, kwargs):
        v = args[0]
        n = len(v.shape)
        d0, d1 = (args[1] % n, args[2] % n) if len(args) > 2 else (0, 1)
        dims = list(range(n))
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return self.op_permute(node, [v, dims], {})

    op_t = op_transpose

    def op_select(self, node, args, kwargs):
        v, dim, index = args[0], args[1] % len(args[0].shape), int(args[2])
        if v.parts is not None and dim == v.part_dim:
            return v.parts[index]
        size = v.shape[dim]
        index = index % size
        shape = v.shape[:dim] + v.shape[dim + 1:]
        axes = v.axes[:dim] + v.axes[dim + 1:]
        if size == 1:
            return V(v.k, shape, axes)
        kd = v.axes[dim]
        y = self.fn("select", lambda t: t[tuple([slice(None)] * kd + [slice(index, index + 1)])], v.k)
        return V(y, shape, axes)

    def op_slice(self, node, args, kwargs):
        v = args[0]
        dim = (args[1] if len(args) > 1 else 0) % len(v.shape)
        size = v.shape[dim]
        start = args[2] if len(args) > 2 and args[2] is not None else 0
        end = args[3] if len(args) > 3 and args[3] is not None else size
        step = args[4] if len(args) > 4 else 1
        start, end, _ = slice(start, end, step).indices(size)
        if (start, end, step) == (0, size, 1):
            return v
        n = len(range(start, end, step))
        shape = v.shape[:dim] + (n,) + v.shape[dim + 1:]
        if v.parts is not None and dim == v.part_dim:
            parts = v.parts[start:end:step]
            k = self.concat([p.k for p in parts], v.axes[dim], "slice") if len(parts) > 1 else None
            if k is None:
                only = parts[0]
                return self.reshape(only, shape) if only.shape != shape else only
            return V(k, shape, v.axes, parts=parts, part_dim=dim)
        kd = v.axes[dim]
        y = self.fn("slice", lambda t: t[tuple([slice(None)] * kd + [slice(start, end, step)])], v.k)
        return V(y, shape, v.axes)

    def _pieces(self, node, v, dim, sizes):
        out, start = [], 0
        for s in sizes:
            out.append(self.op_slice(node, [v, dim, start, start + s, 1], {}))
            start += s
        return tuple(out)

    def op_split(self, node, args, kwargs):
        v, size = args[0], args[1]
        dim = (args[2] if len(args) > 2 else kwargs.get("dim", 0)) % len(v.shape)
        total = v.shape[dim]
        sizes = list(size) if isinstance(size, (list, tuple)) else [size] * (total // size) + (
            [total % size] if total % size else [])
        return self._pieces(node, v, dim, sizes)

    op_split_with_sizes = op_split

    def op_chunk(self, node, args, kwargs):
        v, chunks = args[0], int(args[1])
        dim = (args[2] if len(args) > 2 else 0) % len(v.shape)
        each = -(-v.shape[dim] // chunks)
        return self.op_split(node, [v, each, dim], {})

    def op_cat(self, node, args, kwargs):
        items = list(args[0])
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        vs = [i for i in items if isinstance(i, V)]
        if len(vs) != len(items):
            self.fail("cat with a constant")
        dim %= len(vs[0].shape)
        ref = max(vs, key=lambda v: int(np.prod(v.shape)))
        if ref.flat is not None:
            ref = self.unflatten(ref)
        axes = list(ref.axes)
        if axes[dim] is None:   # concatenating along a size-1 dim with no Keras dim: give it one
            free = [d for d in range(1, ref.krank) if d not in axes and ref.k.shape[d] == 1]
            if not free:
                self.fail("cat", "no free dimension to concatenate along")
            axes[dim] = free[0]
        ks = []
        for v in vs:
            sh = list(ref.shape)
            sh[dim] = v.shape[dim]
            ks.append(self.to_layout(v, tuple(sh), tuple(axes), ref.krank, "cat"))
        shape = list(ref.shape)
        shape[dim] = sum(v.shape[dim] for v in vs)
        return V(self.concat(ks, axes[dim], "cat"), tuple(shape), tuple(axes))

    op_concat = op_cat

    def _reduce(self, node, args, kwargs, op):
        v = args[0]
        if v.flat is not None:
            v = self.unflatten(v)
        n = len(v.shape)
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        dims = list(range(n)) if dims is None else ([dims] if isinstance(dims, int) else list(dims))
        dims = sorted(d % n for d in dims)
        keep = bool(args[2] if len(args) > 2 else kwargs.get("keepdim", False))
        if 0 in dims:
            self.fail(f"{op} over the batch dimension")
        kdims = [v.axes[d] for d in dims if v.axes[d] is not None and v.shape[d] != 1]
        if not kdims:
            y = v.k
        elif op == "mean" and kdims == [2] and v.krank == 4:
            if not keep and len([s for s in v.shape if s != 1]) == 2 and self._feeds_head(self.node):
                y = self.L.GlobalAveragePooling2D(keepdims=False, name=self.name("mean"))(v.k)
                shape = tuple(s for i, s in enumerate(v.shape) if i not in dims)
                return V(y, shape, (0,) + tuple(None if s == 1 else 1 for s in shape[1:]))
            y = self.L.GlobalAveragePooling2D(keepdims=True, name=self.name("mean"))(v.k)
        else:
            keras = self.keras
            f = {"mean": keras.ops.mean, "sum": keras.ops.sum, "amax": keras.ops.max}[op]
            y = self.fn(op, lambda t: f(t, axis=tuple(kdims), keepdims=True), v.k)
        if keep:
            shape = tuple(1 if i in dims else s for i, s in enumerate(v.shape))
            axes = tuple(None if i in dims else a for i, a in enumerate(v.axes))
        else:
            shape = tuple(s for i, s in enumerate(v.shape) if i not in dims)
            axes = tuple(a for i, a in enumerate(v.axes) if i not in dims)
        return V(y, shape, axes)

    def op_mean(self, node, args, kwargs):
        return self._reduce(node, args, kwargs, "mean")

    def op_sum(self, node, args, kwargs):
        return self._reduce(node, args, kwargs, "sum")

    def op_amax(self, node, args, kwargs):
        return self._reduce(node, args, kwargs, "amax")

    def op_softmax(self, node, args, kwargs):
        v, dim = args[0], args[1] % len(args[0].shape)
        if v.flat is not None:
            v = self.unflatten(v)
        if v.axes[dim] is None or v.axes[dim] != v.krank - 1:
            k, axes = self.last_dim_layout(v, "Softmax") if dim == len(v.shape) - 1 else (None, None)
            if k is None:
                self.fail("Softmax over a dimension that is not the features'", "softmax over the last dim")
        else:
            k, axes = v.k, v.axes
        return V(self.L.Softmax(axis=-1, name=self.name("softmax"))(k), v.shape, axes)

    # ---- pooling and padding
    def _pool_pads(self, length, k, s, p, ceil):
        out = (length + 2 * p - k) // s + 1 if not ceil else -(-(length + 2 * p - k) // s) + 1
        if ceil and (out - 1) * s >= length + p:
            out -= 1
        right = max(0, (out - 1) * s + k - length - p)
        return out, p, right

    def _pool(self, node, args, kind):
        L = self.L
        v = args[0]
        x = self.ncl(v, kind)
        length = v.shape[2]
        k = int(args[1][0])
        s = int(args[2][0]) if len(args) > 2 and args[2] else k
        p = int(args[3][0]) if len(args) > 3 and args[3] else 0
        if kind == "MaxPool1d":
            dil = int(args[4][0]) if len(args) > 4 and args[4] else 1
            ceil = bool(args[5]) if len(args) > 5 else False
            if dil != 1:
                self.fail("MaxPool1d with dilation", "use dilation 1")
        else:
            ceil = bool(args[4]) if len(args) > 4 else False
            include = bool(args[5]) if len(args) > 5 else True
        out, pl, pr = self._pool_pads(length, k, s, p, ceil)
        same = (pl, pr) == self._same_split(length, k, s) and -(-length // s) == out
        if kind == "MaxPool1d":
            if (pl, pr) != (0, 0) and not same:
                x = self.edge_pad(x, pl, pr, "replicate")     # the max over a window is unchanged
            layer = L.MaxPooling2D((1, k), (1, s), padding="same" if same else "valid", name=self.name("maxpool"))
        else:
            if (pl, pr) != (0, 0):
                if not include and same:
                    pass                                      # TF's SAME average ignores the pads
                elif include and (pr == p or not ceil):
                    x = L.ZeroPadding2D(((0, 0), (pl, pr)), name=self.name("pad"))(x)
                    same = False
                else:
                    self.fail(f"AvgPool1d(padding={p}, ceil_mode={ceil}, count_include_pad={include})")
            layer = L.AveragePooling2D((1, k), (1, s), padding="same" if same else "valid", name=self.name("avgpool"))
        y = layer(x)
        if int(y.shape[2]) != out:
            self.fail(kind, f"Keras gives length {y.shape[2]}, torch {out}")
        return V(y, (1, v.shape[1], out), (0, 3, 2))

    def op_max_pool1d(self, node, args, kwargs):
        return self._pool(node, args, "MaxPool1d")

    def op_avg_pool1d(self, node, args, kwargs):
        return self._pool(node, args, "AvgPool1d")

    def _adaptive(self, args, kind):
        L = self.L
        v = args[0]
        x = self.ncl(v, kind)
        length, out = v.shape[2], int(args[1][0])
        if out == 1 and kind == "avg" and self._feeds_head(self.node):
            y = L.GlobalAveragePooling2D(keepdims=False, name=self.name("mean"))(x)
            return V(y, (1, v.shape[1], 1), (0, 1, None))
        if out == 1 and kind == "avg":
            y = L.GlobalAveragePooling2D(keepdims=True, name=self.name("mean"))(x)
        elif length % out == 0:
            k = length // out
            cls = L.MaxPooling2D if kind == "max" else L.AveragePooling2D
            y = cls((1, k), (1, k), padding="valid", name=self.name(f"{kind}pool"))(x)
        else:
            self.fail(f"Adaptive{kind.capitalize()}Pool1d({out}) on length {length}",
                      "the length must be a multiple of the output size")
        return V(y, (1, v.shape[1], out), (0, 3, 2))

    def op_adaptive_avg_pool1d(self, node, args, kwargs):
        return self._adaptive(args, "avg")

    def op_adaptive_max_pool1d(self, node, args, kwargs):
        v = self._adaptive(args, "max")
        return (v, None)

    def edge_pad(self, x, left: int, right: int, mode: str, axis: int = 2):
        """Replicate / reflect / circular padding of Keras axis `axis` from 1-sample slices and a concat."""
        n = int(x.shape[axis])

        def piece(i):
            return self.fn(f"{mode}_pad", lambda t: t[tuple([slice(None)] * axis + [slice(i, i + 1)])], x)

        def run(a, b):
            return self.fn(f"{mode}_pad", lambda t: t[tuple([slice(None)] * axis + [slice(a, b)])], x)

        if mode == "replicate":
            lp = [piece(0)] * left
            rp = [piece(n - 1)] * right
        elif mode == "reflect":
            if left >= n or right >= n:
                self.fail("reflect padding wider than the signal")
            lp = [piece(i) for i in range(left, 0, -1)]
            rp = [piece(n - 2 - i) for i in range(right)]
        elif mode == "circular":
            lp = [run(n - left, n)] if left else []
            rp = [run(0, right)] if right else []
        else:
            self.fail(f"{mode} padding")
        return self.concat(lp + [x] + rp, axis, f"{mode}_pad")

    def op_pad(self, node, args, kwargs):
        v = args[0]
        pads, mode, value = self._pad_args(node)
        if mode == "constant" and value != 0:
            self.fail(f"constant padding with {value}", "only zero padding")
        if len(pads) not in (2, 4) or len(v.shape) != 3:
            self.fail(f"F.pad {pads} on shape {list(v.shape)}", "pad the time axis (or channels with zeros)")
        x = self.ncl(v, "pad")
        tl, tr = int(pads[0]), int(pads[1])
        cl, cr = (int(pads[2]), int(pads[3])) if len(pads) == 4 else (0, 0)
        if min(tl, tr, cl, cr) < 0:
            self.fail("negative padding (cropping)")
        L = self.L
        if mode == "constant":
            if (cl, cr) != (0, 0):
                keras = self.keras
                x = self.fn("channel_pad", lambda t: keras.ops.pad(t, [[0, 0], [0, 0], [0, 0], [cl, cr]]), x)
            if (tl, tr) != (0, 0):
                x = L.ZeroPadding2D(((0, 0), (tl, tr)), name=self.name("pad"))(x)
        else:
            if (cl, cr) != (0, 0):
                self.fail(f"{mode} padding of channels")
            x = self.edge_pad(x, tl, tr, "reflect" if mode == "reflect" else mode)
        return V(x, (1, v.shape[1] + cl + cr, v.shape[2] + tl + tr), (0, 3, 2))

    op_constant_pad_nd = op_pad
    op_reflection_pad1d = op_pad
    op_replication_pad1d = op_pad


def to_keras(gm, window_samples: int, name: str = "ecgedge"):
    """(Keras model [1, 1, W, 1] -> [1, n_outputs], info) for a canonical graph. info: "layers" (Keras
    layer name -> torch module path, class, op) and "transposes" (where the model asked for one)."""
    c = _Converter(gm, window_samples, name)
    try:
        model = c.run()
    except ModelError:
        raise
    except Exception as e:
        node = c.node
        path = node.meta.get("ecg_path", "") if node is not None else ""
        raise ModelError(f"converting {'module ' + repr(path) if path else 'the model'} to Keras failed: "
                         f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}") from e
    return model, {"layers": c.layers, "transposes": c.transposes}


def max_abs_difference(gm, keras_model, x: np.ndarray) -> float:
    """Largest |torch - keras| over windows x [B, 1, W] (model units)."""
    import torch
    with torch.no_grad():
        ref = gm.eval()(torch.from_numpy(np.asarray(x, np.float32))).numpy()
    got = np.concatenate([keras_model(np.asarray(x[i:i + 1], np.float32).reshape(1, 1, -1, 1), training=False)
                          .numpy() for i in range(len(x))])
    return float(np.max(np.abs(ref.reshape(got.shape) - got)))
