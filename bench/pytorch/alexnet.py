"""The PyTorch twin of the Go trainer's nets.

Two parts:

* The layer table (pure Python, no torch needed): `build(name, channels,
  classes, lrn)` returns the same table as model.Build in model/nets.go
  (names, kinds, inputs, towers, shapes, parameter shapes), and
  `Net.describe()` prints it exactly as `trainer inspect` does, so the two
  can be diffed (`python3 alexnet.py --table alexnet`).

* The torch modules (need torch):
  - `AlexNet(name, in_channels, classes, lrn)`: one torch module per row of
    the table, named as the row (conv1a, conv1b, norm1a, ..., fc8), so its
    state_dict keys are our safetensors names one to one
    (`conv1a.weight` <-> module.conv1a.weight). Its forward walks the table
    in order: a layer reading several layers gets them joined along C
    (torch.cat(..., 1)) in the table's order (a then b); a fully-connected
    layer gets each input flattened per image in C,H,W order first. So
    conv3a reads cat([pool2a, pool2b], 1), fc6a reads
    cat([pool5a.flatten(1), pool5b.flatten(1)], 1), fc7a reads
    cat([drop6a, drop6b], 1) and fc8 reads cat([drop7a, drop7b], 1).
    `place(dev_a, dev_b)` puts tower a's layers (and fc8) on one device and
    tower b's on another; the forward then moves each input to its
    layer's device (the cross-tower edges, and the image to tower b).
  - `AlexNetGrouped(name, in_channels, classes, lrn)`: the same function
    written as one wide net for speed: conv2, conv4, conv5 as groups=2
    convolutions, conv1, conv3, fc6, fc7 as one layer with both towers'
    outputs. See `pack_grouped` for how our per-tower tensors map to it.

The ops (the paper, gpu/device.go):

* conv and fc: ReLU after every one but fc8 (tanh with activation="tanh",
  the paper's Figure 1 comparison). Outputs recorded after the activation,
  as `trainer forward --layers` writes them.
* The ablations model.Build offers: lrn="none" (no norm layers: pool1 and
  pool2 read conv1 and conv2), activation="tanh", pool="2/2".
* LRN: ours is y[c] = x[c] / (k + alpha * sum_{j=c-n/2}^{c+n/2} x[j]^2)^beta,
  the sum clipped to the valid channels, n=5, k=2, beta=0.75, with
  alpha = 1e-4 ("paper": alpha on the sum) or 1e-4/5 ("caffe"). PyTorch's
  nn.LocalResponseNorm(size, alpha, beta, k) computes
  x / (k + alpha * avg)^beta where avg is the mean of x^2 over a window of
  `size` channels: it zero-pads the channel axis by size//2 in front and
  (size-1)//2 behind and average-pools with the divisor always `size`
  (padding counted). So it equals ours with its alpha = n * our alpha:
  5e-4 for "paper", 1e-4 for "caffe". For odd n the padding is symmetric
  (2 and 2 for n=5) and the zero padding adds nothing to the sum, which is
  exactly our clipping. `parity.py --self-test` checks this equivalence on
  numbers with a transcription of PyTorch's algorithm.
* Max pooling 3x3 stride 2, no padding (nn.MaxPool2d(3, 2)); 2x2 stride 2
  with pool="2/2".
* Dropout p=0.5 on fc6 and fc7: nn.Dropout is inverted dropout (kept values
  scaled by 1/(1-p) in training, identity in eval), as ours.
"""

import argparse
import sys

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # the layer table and its checks need no torch
    torch = nn = F = None

# model/nets.go's arch table. conv: per tower (filters, kernel, stride, pad)
# of conv1..conv5; fc: per tower outputs of fc6 and fc7; rgb: the input is
# always 3 channels.
NETS = {
    "alexnet": dict(towers=2, size=227, rgb=True,
                    conv=[(48, 11, 4, 0), (128, 5, 1, 2), (192, 3, 1, 1), (192, 3, 1, 1), (128, 3, 1, 1)],
                    fc=(2048, 2048)),
    "alexnet-1gpu": dict(towers=1, size=227, rgb=True,
                         conv=[(48, 11, 4, 0), (128, 5, 1, 2), (192, 3, 1, 1), (192, 3, 1, 1), (256, 3, 1, 1)],
                         fc=(4096, 4096)),
    "alexnet-small": dict(towers=2, size=32, rgb=False,
                          conv=[(16, 5, 1, 2), (32, 5, 1, 2), (48, 3, 1, 1), (48, 3, 1, 1), (32, 3, 1, 1)],
                          fc=(256, 256)),
    "alexnet-small-1gpu": dict(towers=1, size=32, rgb=False,
                               conv=[(16, 5, 1, 2), (32, 5, 1, 2), (48, 3, 1, 1), (48, 3, 1, 1), (64, 3, 1, 1)],
                               fc=(512, 512)),
}

LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0
DROP_P = 0.5


def torch_lrn_alpha(alpha_on_sum, size=LRN_SIZE):
    """PyTorch's `alpha` for our coefficient on the sum (see the module doc)."""
    return alpha_on_sum * size


class Layer:
    """One row of the table, as model.Layer."""

    def __init__(self, name, kind, inputs, tower, filters=0, kernel=0, stride=0, pad=0, act=None):
        self.name, self.kind, self.inputs, self.tower = name, kind, list(inputs), tower
        self.filters, self.kernel, self.stride, self.pad = filters, kernel, stride, pad
        self.act = act  # conv and fc: None, "relu" or "tanh", applied to the output
        self.alpha = self.beta = self.k = self.p = 0.0
        self.in_shape = self.out_shape = None  # (C, H, W)

    def has_params(self):
        return self.kind in ("conv", "fc")

    def in_len(self):
        c, h, w = self.in_shape
        return c * h * w

    def weight_shape(self):
        if self.kind == "conv":
            return [self.filters, self.in_shape[0], self.kernel, self.kernel]
        if self.kind == "fc":
            return [self.filters, self.in_len()]
        return None

    def param_shapes(self):
        """{"<name>.weight": shape, "<name>.bias": shape}, or {}."""
        if not self.has_params():
            return {}
        return {self.name + ".weight": self.weight_shape(), self.name + ".bias": [self.filters]}

    def params(self):
        n = 0
        for shape in self.param_shapes().values():
            m = 1
            for d in shape:
                m *= d
            n += m
        return n

    def output_shape(self, n):
        """The shape `trainer forward --layers` writes for n images."""
        c, h, w = self.out_shape
        return [n, c] if h == 1 and w == 1 else [n, c, h, w]


class Net:
    def __init__(self, name, input_shape, classes, towers, lrn, activation, pool, layers):
        self.name, self.input, self.classes, self.towers, self.lrn = name, input_shape, classes, towers, lrn
        self.activation, self.pool = activation, pool
        self.layers = layers
        self.by_name = {l.name: l for l in layers}

    def layer(self, name):
        return self.by_name.get(name)

    def params(self):
        return sum(l.params() for l in self.layers)

    def param_shapes(self):
        out = {}
        for l in self.layers:
            out.update(l.param_shapes())
        return out

    def cross_edges(self):
        out = []
        for l in self.layers:
            for i in l.inputs:
                src = self.by_name[i]
                if src.kind != "input" and src.tower != l.tower:
                    out.append(i + "\u2192" + l.name)
        return out

    def describe(self):
        """The text of `trainer inspect` (model.Net.Describe), byte for byte."""
        lrn = "none" if self.lrn == "none" else '\u03b1 convention "%s"' % self.lrn
        lines = ["%s: input %s, %d classes, %d tower(s), LRN %s, activation %s, max pooling %s" % (
            self.name, _shape_str(self.input), self.classes, self.towers, lrn, self.activation, self.pool), ""]
        row = "%-8s %-10s %-7s %-24s %-12s %12s"
        lines.append(row % ("layer", "kind", "device", "inputs", "output", "parameters"))
        for l in self.layers:
            if l.kind == "input":
                continue
            kind = l.kind + ("+" + l.act if l.act else "")
            lines.append(row % (l.name, kind, l.tower, ",".join(l.inputs), _shape_str(l.out_shape),
                                "{:,}".format(l.params())))
        lines.append(row % ("total", "", "", "", "", "{:,}".format(self.params())))
        edges = self.cross_edges()
        if edges:
            lines += ["", "cross-device edges: " + " ".join(edges)]
        return "\n".join(lines) + "\n"


def _shape_str(s):
    c, h, w = s
    return "%d" % c if h == 1 and w == 1 else "%d\u00d7%d\u00d7%d" % (c, h, w)


def build(name, channels=3, classes=1000, lrn="paper", activation="relu", pool="3/2"):
    """The table of model.Build(name, Options{Channels, Classes, LRN, Activation, Pool});
    None or "" is the paper's choice, as there."""
    if name not in NETS:
        raise ValueError("unknown net %r (known: %s)" % (name, ", ".join(sorted(NETS))))
    if classes < 2:
        raise ValueError("%s needs at least 2 classes, got %d" % (name, classes))
    a = NETS[name]
    ch = 3 if a["rgb"] or not channels else channels
    if lrn in ("", None, "paper"):
        lrn, alpha = "paper", LRN_ALPHA
    elif lrn == "caffe":
        alpha = LRN_ALPHA / LRN_SIZE
    elif lrn == "none":
        alpha = 0.0
    else:
        raise ValueError("unknown LRN convention %r (use paper, caffe or none)" % lrn)
    activation = activation or "relu"
    if activation not in ("relu", "tanh"):
        raise ValueError("unknown activation %r (use relu or tanh)" % activation)
    pool = pool or "3/2"
    if pool not in ("3/2", "2/2"):
        raise ValueError("unknown pooling %r (use 3/2 or 2/2, window/stride)" % pool)
    window, stride = (3, 2) if pool == "3/2" else (2, 2)
    towers = a["towers"]
    layers = []

    def sfx(t):
        return "" if towers == 1 else "ab"[t]

    def every(base):
        return [base + sfx(t) for t in range(towers)]

    def conv(i, t, inputs):
        f, k, s, p = a["conv"][i]
        layers.append(Layer("conv%d%s" % (i + 1, sfx(t)), "conv", inputs, t, f, k, s, p, act=activation))

    def norm(i, t):  # adds norm(i) after conv(i); returns what pool(i) reads
        if lrn == "none":
            return "conv%d" % i
        l = Layer("norm%d%s" % (i, sfx(t)), "lrn", ["conv%d%s" % (i, sfx(t))], t, kernel=LRN_SIZE)
        l.alpha, l.beta, l.k = alpha, LRN_BETA, LRN_K
        layers.append(l)
        return "norm%d" % i

    def maxpool(i, t, src):
        layers.append(Layer("pool%d%s" % (i, sfx(t)), "pool", [src + sfx(t)], t, kernel=window, stride=stride))

    def fc(i, t, inputs):
        layers.append(Layer("fc%d%s" % (i, sfx(t)), "fc", inputs, t, filters=a["fc"][i - 6], act=activation))
        d = Layer("drop%d%s" % (i, sfx(t)), "dropout", ["fc%d%s" % (i, sfx(t))], t)
        d.p = DROP_P
        layers.append(d)

    layers.append(Layer("data", "input", [], 0))
    for t in range(towers):
        conv(0, t, ["data"])
        maxpool(1, t, norm(1, t))
        conv(1, t, ["pool1" + sfx(t)])
        maxpool(2, t, norm(2, t))
    for t in range(towers):
        conv(2, t, every("pool2"))
        conv(3, t, ["conv3" + sfx(t)])
        conv(4, t, ["conv4" + sfx(t)])
        maxpool(5, t, "conv5")
    for t in range(towers):
        fc(6, t, every("pool5"))
    for t in range(towers):
        fc(7, t, every("drop6"))
    layers.append(Layer("fc8", "fc", every("drop7"), 0, filters=classes))

    net = Net(name, (ch, a["size"], a["size"]), classes, towers, lrn, activation, pool, layers)
    _infer_shapes(net)
    return net


def _infer_shapes(net):
    """model.Net.finish: joined input shapes and output shapes."""
    for l in net.layers:
        if l.kind == "input":
            l.out_shape = net.input
            continue
        ins = [net.by_name[i].out_shape for i in l.inputs]
        if l.kind == "fc":
            l.in_shape = (sum(c * h * w for c, h, w in ins), 1, 1)
        else:
            c, h, w = ins[0]
            for s in ins[1:]:
                if s[1:] != (h, w):
                    raise ValueError("%s: %s joins maps of different sizes" % (net.name, l.name))
                c += s[0]
            l.in_shape = (c, h, w)
        c, h, w = l.in_shape
        if l.kind == "conv":
            l.out_shape = (l.filters, (h + 2 * l.pad - l.kernel) // l.stride + 1,
                           (w + 2 * l.pad - l.kernel) // l.stride + 1)
        elif l.kind == "pool":
            l.out_shape = (c, (h - l.kernel) // l.stride + 1, (w - l.kernel) // l.stride + 1)
        elif l.kind == "fc":
            l.out_shape = (l.filters, 1, 1)
        else:
            l.out_shape = l.in_shape


def check_weights(net, shapes):
    """model.Weights.Check: shapes is {name: shape}. Returns a list of problems."""
    want = net.param_shapes()
    errs = []
    for name in sorted(want):
        if name not in shapes:
            errs.append("weights lack %s %s that net %s needs" % (name, want[name], net.name))
        elif list(shapes[name]) != want[name]:
            errs.append("weights hold %s as %s, net %s needs %s" % (name, list(shapes[name]), net.name, want[name]))
    for name in sorted(shapes):
        if name not in want:
            errs.append("weights hold %s, which net %s does not have" % (name, net.name))
    return errs


def net_for_weights(name, shapes, lrn="paper", activation="relu", pool="3/2"):
    """The net the weights belong to: channels from conv1's, classes from fc8's, as trainer forward."""
    conv1 = shapes.get("conv1a.weight", shapes.get("conv1.weight"))
    fc8 = shapes.get("fc8.weight")
    if conv1 is None or fc8 is None or len(conv1) != 4 or len(fc8) != 2:
        raise ValueError("no conv1 weight and fc8.weight (classes, in): not the weights of an AlexNet")
    return build(name, conv1[1], fc8[0], lrn, activation, pool)


def run_table(net, x, ops, keep=True):
    """Runs the table's layers in order on x (N,C,H,W); returns {name: output}.

    ops supplies the arithmetic (torch modules, or parity.py's pure-Python
    reference): apply(layer, x) computes the layer without its activation,
    act(y, "relu" or "tanh"), flatten(y) to (N, C*H*W) in C,H,W order, cat(list) along
    axis 1, and to(y, layer) moves y to the layer's device.
    With keep False, outputs no later layer reads are dropped as it goes.
    """
    outs = {"data": x}
    last_use = {}
    for i, l in enumerate(net.layers):
        for src in l.inputs:
            last_use[src] = i
    for i, l in enumerate(net.layers):
        if l.kind == "input":
            continue
        xs = [outs[src] for src in l.inputs]
        if l.kind == "fc":
            xs = [ops.flatten(v) for v in xs]
        xs = [ops.to(v, l) for v in xs]
        y = ops.apply(l, xs[0] if len(xs) == 1 else ops.cat(xs))
        if l.act:
            y = ops.act(y, l.act)
        outs[l.name] = y
        if not keep:
            for src in l.inputs:
                if last_use[src] == i:
                    del outs[src]
    return outs


_Module = nn.Module if nn is not None else object


def _full_device(d):
    """torch.device with its index: "cuda" -> cuda:<current>, so device checks compare equal."""
    d = torch.device(d)
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device())
    return d


class _TorchOps:
    """run_table's ops for an AlexNet module."""

    def __init__(self, module):
        self.m = module

    def apply(self, l, x):
        return getattr(self.m, l.name)(x)

    def act(self, y, kind):
        return F.relu(y) if kind == "relu" else torch.tanh(y)

    def flatten(self, y):
        return y.flatten(1)

    def cat(self, xs):
        return torch.cat(xs, 1)

    def to(self, y, l):
        dev = self.m.layer_device.get(l.name)
        return y if dev is None or y.device == dev else y.to(dev)


class AlexNet(_Module):
    """Our net as a torch module: one submodule per table row, named as the row."""

    def __init__(self, name, in_channels=3, classes=1000, lrn="paper", activation="relu", pool="3/2"):
        if torch is None:
            raise RuntimeError("AlexNet needs PyTorch")
        super().__init__()
        self.net = build(name, in_channels, classes, lrn, activation, pool)
        self.layer_device = {}  # layer name -> device, set by place
        for l in self.net.layers:
            if l.kind == "conv":
                m = nn.Conv2d(l.in_shape[0], l.filters, l.kernel, stride=l.stride, padding=l.pad)
            elif l.kind == "fc":
                m = nn.Linear(l.in_len(), l.filters)
            elif l.kind == "lrn":
                m = nn.LocalResponseNorm(l.kernel, alpha=torch_lrn_alpha(l.alpha, l.kernel), beta=l.beta, k=l.k)
            elif l.kind == "pool":
                m = nn.MaxPool2d(l.kernel, stride=l.stride)
            elif l.kind == "dropout":
                m = nn.Dropout(l.p)
            else:
                continue
            self.add_module(l.name, m)

    def place(self, dev_a, dev_b=None):
        """Tower a (and fc8) on dev_a, tower b on dev_b (default dev_a)."""
        devs = [_full_device(dev_a), _full_device(dev_b if dev_b is not None else dev_a)]
        for l in self.net.layers:
            if l.kind == "input":
                continue
            self.layer_device[l.name] = devs[l.tower]
            getattr(self, l.name).to(devs[l.tower])
        return self

    def forward(self, x, layers=False):
        """The logits; with layers, (logits, {layer name: output})."""
        outs = run_table(self.net, x, _TorchOps(self), keep=layers)
        logits = outs["fc8"]
        if layers:
            del outs["data"]
            return logits, outs
        return logits

    def load_ours(self, tensors):
        """Loads our tensors {name: torch tensor}; names and shapes must match exactly."""
        errs = check_weights(self.net, {k: list(v.shape) for k, v in tensors.items()})
        if errs:
            raise ValueError("; ".join(errs))
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.copy_(tensors[name])


# The grouped formulation. Tower a's and tower b's outputs of a layer are one
# tensor, a's channels (or features) first, then b's. A groups=2 convolution
# of weight (2K, C, R, S) computes its first K outputs from the first C input
# channels with rows 0..K-1 of the weight, its last K from the last C with
# rows K..2K-1. So, for every two-tower layer L:
#
#   L.weight = cat([La.weight, Lb.weight], 0)    L.bias = cat([La.bias, Lb.bias], 0)
#
# conv2, conv4, conv5 (own tower only): groups=2, weight (2K, C_tower, R, S).
# conv1 (both towers read the image), conv3 (both read cat(pool2a, pool2b)),
# fc6 (both read cat(pool5a, pool5b) flattened, which is pool5 flattened,
# since pool5 = cat(pool5a, pool5b) along C) and fc7: one ordinary layer with
# the two towers' rows stacked. fc8 is unchanged. LRN works across channels
# and ours never crosses a tower, so it runs on each half separately (a
# grouped Caffe AlexNet normalizes across the boundary: that is not ours).
GROUPED = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


def pack_grouped(tensors):
    """Our per-tower tensors -> AlexNetGrouped's state dict."""
    out = {"fc8.weight": tensors["fc8.weight"], "fc8.bias": tensors["fc8.bias"]}
    for base in GROUPED:
        for kind in ("weight", "bias"):
            out[base + "." + kind] = torch.cat([tensors[base + "a." + kind], tensors[base + "b." + kind]], 0)
    return out


def unpack_grouped(state):
    """AlexNetGrouped's state dict -> our per-tower tensors."""
    out = {"fc8.weight": state["fc8.weight"], "fc8.bias": state["fc8.bias"]}
    for base in GROUPED:
        for kind in ("weight", "bias"):
            a, b = state[base + "." + kind].chunk(2, 0)
            out[base + "a." + kind], out[base + "b." + kind] = a, b
    return out


class AlexNetGrouped(_Module):
    """A two-tower net as one wide net with grouped convolutions (see above)."""

    def __init__(self, name, in_channels=3, classes=1000, lrn="paper", activation="relu", pool="3/2"):
        if torch is None:
            raise RuntimeError("AlexNetGrouped needs PyTorch")
        super().__init__()
        net = self.net = build(name, in_channels, classes, lrn, activation, pool)
        if net.towers != 2:
            raise ValueError("%s has one tower: --grouped is for the two-tower nets" % name)
        L = net.by_name

        def conv(base, groups):
            l = L[base + "a"]
            cin = l.in_shape[0] * (2 if groups == 2 else 1)
            return nn.Conv2d(cin, 2 * l.filters, l.kernel, stride=l.stride, padding=l.pad, groups=groups)

        self.conv1, self.conv2, self.conv3 = conv("conv1", 1), conv("conv2", 2), conv("conv3", 1)
        self.conv4, self.conv5 = conv("conv4", 2), conv("conv5", 2)
        n1 = L.get("norm1a")
        self.lrn = None if n1 is None else nn.LocalResponseNorm(
            n1.kernel, alpha=torch_lrn_alpha(n1.alpha, n1.kernel), beta=n1.beta, k=n1.k)
        p1 = L["pool1a"]
        self.pool = nn.MaxPool2d(p1.kernel, stride=p1.stride)
        self.fc6 = nn.Linear(L["fc6a"].in_len(), 2 * L["fc6a"].filters)
        self.fc7 = nn.Linear(L["fc7a"].in_len(), 2 * L["fc7a"].filters)
        self.fc8 = nn.Linear(L["fc8"].in_len(), classes)
        self.drop = nn.Dropout(DROP_P)
        self.act = F.relu if net.activation == "relu" else torch.tanh

    def forward(self, x, layers=False):
        o = {}

        def norm(i, y):  # LRN within each tower's half, as ours
            if self.lrn is None:
                return y
            o["norm%d" % i] = y = torch.cat([self.lrn(h) for h in y.chunk(2, 1)], 1)
            return y

        o["conv1"] = y = self.act(self.conv1(x))
        o["pool1"] = y = self.pool(norm(1, y))
        o["conv2"] = y = self.act(self.conv2(y))
        o["pool2"] = y = self.pool(norm(2, y))
        o["conv3"] = y = self.act(self.conv3(y))
        o["conv4"] = y = self.act(self.conv4(y))
        o["conv5"] = y = self.act(self.conv5(y))
        o["pool5"] = y = self.pool(y)
        o["fc6"] = y = self.act(self.fc6(y.flatten(1)))
        o["drop6"] = y = self.drop(y)
        o["fc7"] = y = self.act(self.fc7(y))
        o["drop7"] = y = self.drop(y)
        logits = self.fc8(y)
        if not layers:
            return logits
        outs = {"fc8": logits}
        for base, y in o.items():  # back to our per-tower names
            outs[base + "a"], outs[base + "b"] = y.chunk(2, 1)
        return logits, outs

    def load_ours(self, tensors):
        errs = check_weights(self.net, {k: list(v.shape) for k, v in tensors.items()})
        if errs:
            raise ValueError("; ".join(errs))
        self.load_state_dict(pack_grouped(tensors), strict=True)


def make(name, in_channels=3, classes=1000, lrn="paper", activation="relu", pool="3/2", grouped=False):
    return (AlexNetGrouped if grouped else AlexNet)(name, in_channels, classes, lrn, activation, pool)


def main(argv=None):
    p = argparse.ArgumentParser(description="Print a net's layer table as `trainer inspect` does.")
    p.add_argument("--table", metavar="NET", required=True, choices=sorted(NETS))
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--lrn", default="paper", choices=["paper", "caffe", "none"])
    p.add_argument("--activation", default="relu", choices=["relu", "tanh"])
    p.add_argument("--pool", default="3/2", choices=["3/2", "2/2"])
    a = p.parse_args(argv)
    sys.stdout.write(build(a.table, a.channels, a.classes, a.lrn, a.activation, a.pool).describe())


if __name__ == "__main__":
    main()
