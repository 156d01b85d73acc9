"""Parity of our trainer's forward pass with PyTorch's, layer by layer.

    python3 parity.py --trainer ./trainer --net alexnet-small [--weights W] [--device cuda] [--grouped]
    python3 parity.py --self-test [--trainer ./trainer] [--weights W ...]

The run: take our weights (--weights; else seeded random weights written
here: He-scaled N(0, 2/fan-in) weights, N(0, 1) biases), write a seeded
input of N(0, 50^2) images of the net's input shape, run
`trainer forward --net NET --weights W --input X --output Y --layers`, run
the same input through alexnet.py's twin in PyTorch (float32, eval mode, TF32
off on CUDA), and compare every layer's output, the logits and the softmax:
an element mismatches when |ours - pytorch| > 1e-3*max|pytorch| + 1e-3*|pytorch|.
Prints per layer the largest |pytorch|, the largest absolute error and the
largest relative error (over elements with |pytorch| above the absolute
tolerance); on a mismatch, the first 10 mismatching elements of each failing
layer, and exits 1. Exit 2: it could not run (no torch, a bad file, the
trainer failed).

--self-test needs no PyTorch and no numpy (it uses numpy too if present):
the layer tables against the README's numbers (and against `trainer inspect`
with --trainer), the safetensors reader and writer, PyTorch's LRN algorithm
against ours, Go-written weights files, and, with --trainer, the same
comparison as the real run with a pure-Python reference forward pass in
place of PyTorch on alexnet-small and alexnet-small-1gpu.
"""

import argparse
import glob
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import alexnet  # noqa: E402
import stio  # noqa: E402

ATOL_FRAC, RTOL, SHOW = 1e-3, 1e-3, 10
INPUT_STD = 50.0


# ---------------------------------------------------------------- inputs, weights

def make_input(net, n, seed):
    """n images of the net's input shape, N(0, 50^2), from Python's own seeded RNG."""
    rng = random.Random(seed)
    c, h, w = net.input
    shape = [n, c, h, w]
    return stio.from_floats(shape, [rng.gauss(0.0, INPUT_STD) for _ in range(stio.numel(shape))])


def random_weights(net, seed, use_torch):
    """Seeded weights that keep activations at the input's scale: N(0, 2/fan-in)
    weights, N(0, 1) biases. {name: Raw}."""
    out = {}
    for i, l in enumerate(net.layers):
        if not l.has_params():
            continue
        wshape = l.weight_shape()
        std = math.sqrt(2.0 / (stio.numel(wshape) // wshape[0]))
        if use_torch:
            import torch
            g = torch.Generator().manual_seed(seed * 1000 + i)
            out[l.name + ".weight"] = stio.from_torch(torch.randn(wshape, generator=g) * std)
            out[l.name + ".bias"] = stio.from_torch(torch.randn([l.filters], generator=g))
        else:
            rng = random.Random(seed * 1000 + i)
            out[l.name + ".weight"] = stio.from_floats(wshape, [rng.gauss(0.0, std) for _ in range(stio.numel(wshape))])
            out[l.name + ".bias"] = stio.from_floats([l.filters], [rng.gauss(0.0, 1.0) for _ in range(l.filters)])
    return out


# ---------------------------------------------------------------- comparison

def compare(ref, ours):
    """ref, ours: flat sequences. Returns the statistics and the first mismatches."""
    max_ref = 0.0
    for r in ref:
        a = abs(r)
        if a > max_ref:
            max_ref = a
    atol = ATOL_FRAC * max_ref
    max_abs = max_rel = 0.0
    bad, first = 0, []
    for i in range(len(ref)):
        r, o = ref[i], ours[i]
        d = abs(o - r)
        tol = atol + RTOL * abs(r)
        if not d <= tol:  # NaN too
            bad += 1
            if len(first) < SHOW:
                first.append((i, r, o, d, tol))
        if d != d or r != r:
            max_abs = float("nan")
        elif d > max_abs:
            max_abs = d
        if abs(r) > atol and abs(r) > 0 and d / abs(r) > max_rel:
            max_rel = d / abs(r)
    return {"max_ref": max_ref, "max_abs": max_abs, "max_rel": max_rel, "bad": bad, "first": first}


def unravel(i, shape):
    idx = []
    for d in reversed(shape):
        idx.append(i % d)
        i //= d
    return list(reversed(idx))


def expected_outputs(net, n):
    """{name: shape} of what `trainer forward --layers` writes."""
    out = {l.name: l.output_shape(n) for l in net.layers if l.kind != "input"}
    out["logits"] = [n, net.classes]
    out["prob"] = [n, net.classes]
    return out


def softmax_rows(flat, n, classes):
    out = []
    for i in range(n):
        row = flat[i * classes:(i + 1) * classes]
        m = max(row)
        e = [math.exp(v - m) for v in row]
        s = sum(e)
        out += [v / s for v in e]
    return out


def report(net, n, ours, refs, ref_name="pytorch"):
    """ours: {name: Raw} read from the trainer's output; refs: {name: flat list}.
    Prints the table and the mismatches; returns True when everything matches."""
    want = expected_outputs(net, n)
    ok = True
    failing = []
    print("%-8s %-16s %12s %10s %10s %9s  %s" % ("layer", "shape", "max|ref|", "max abs", "max rel", "mismatch", ""))
    for name, shape in want.items():
        if name not in ours or name not in refs:
            print("%-8s %-16s  missing from the %s output" % (name, shape, "trainer's" if name not in ours else "reference"))
            ok = False
            continue
        if ours[name].shape != shape or len(refs[name]) != stio.numel(shape):
            print("%-8s trainer's shape %s, expected %s (reference has %d values)" % (
                name, ours[name].shape, shape, len(refs[name])))
            ok = False
            continue
        st = compare(refs[name], stio.as_floats(ours[name]))
        good = st["bad"] == 0
        print("%-8s %-16s %12.5g %10.3g %10.3g %9d  %s" % (
            name, "x".join(map(str, shape)), st["max_ref"], st["max_abs"], st["max_rel"], st["bad"],
            "ok" if good else "MISMATCH"))
        if not good:
            ok = False
            failing.append((name, shape, st))
    extra = sorted(set(ours) - set(want))
    if extra:
        print("(the trainer also wrote: %s)" % ", ".join(extra))
    for name, shape, st in failing:
        print("\n%s: %d of %d values mismatch; the first %d:" % (name, st["bad"], stio.numel(shape), len(st["first"])))
        for i, r, o, d, tol in st["first"]:
            print("  MISMATCH AT %s[%s]: %s %.6f ours %.6f (|diff| %.3g > tol %.3g)" % (
                name, ",".join(map(str, unravel(i, shape))), ref_name, r, o, d, tol))
    if failing:
        print("\nthe first layer that differs is %s: later layers inherit its error" % failing[0][0])
    return ok


def forward_flags(trainer):
    """The flags `trainer forward --help` lists."""
    p = subprocess.run([trainer, "forward", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    return set(w.rstrip(",") for w in p.stdout.split() if w.startswith("--"))


def variant_flags(trainer, net):
    """--activation and --pool for a net that is not the paper's, where the
    trainer's forward takes them; a warning where it does not."""
    flags = forward_flags(trainer)
    out = []
    for flag, value, default in (("--activation", net.activation, "relu"), ("--pool", net.pool, "3/2")):
        if flag in flags:
            out += [flag, value]
        elif value != default:
            print("WARNING: `trainer forward` has no %s flag: it may run %s %s rather than %s" % (
                flag, flag[2:], default, value))
    return out


def run_trainer(trainer, net, weights, x_raw, workdir, gpus, lrn=None, timeout=1200):
    """Writes the input, runs `trainer forward --layers`, returns {name: Raw} and its metadata."""
    xin = os.path.join(workdir, "input.safetensors")
    yout = os.path.join(workdir, "output.safetensors")
    stio.write(xin, {"input": x_raw})
    if os.path.exists(yout):
        os.remove(yout)
    cmd = [trainer, "forward", "--net", net.name, "--weights", weights, "--input", xin,
           "--output", yout, "--layers", "--gpus", gpus]
    if lrn:
        cmd += ["--lrn", lrn]
    cmd += variant_flags(trainer, net)
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout)
    sys.stdout.write(p.stdout)
    if p.returncode != 0:
        raise RuntimeError("the trainer exited with status %d" % p.returncode)
    return stio.read(yout)


# ---------------------------------------------------------------- the PyTorch run

def torch_outputs(net, tensors, x_raw, device, grouped):
    import torch
    import torch.nn.functional as F
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device %s: torch.cuda.is_available() is False" % device)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    m = alexnet.make(net.name, net.input[0], net.classes, net.lrn, net.activation, net.pool, grouped=grouped)
    m.load_ours(tensors)
    m.eval().to(device)
    x = stio.as_torch(x_raw).to(device)
    with torch.no_grad():
        logits, outs = m(x, layers=True)
        outs["logits"] = logits
        outs["prob"] = F.softmax(logits, dim=1)
    return {k: v.detach().float().cpu().flatten().tolist() for k, v in outs.items()}


def run(args):
    try:
        import torch
    except ImportError:
        print("parity.py: PyTorch is not installed here; only --self-test runs without it", file=sys.stderr)
        return 2
    workdir = args.workdir or tempfile.mkdtemp(prefix="parity-")
    os.makedirs(workdir, exist_ok=True)
    if args.weights:
        wpath = args.weights
        tensors, meta = stio.load_torch(wpath, args.reader)
        lrn = args.lrn or meta.get("lrn") or "paper"
        act = args.activation or meta.get("activation") or "relu"
        pool = args.pool or meta.get("pool") or "3/2"
        args.net = args.net or meta.get("net")
        if args.net not in alexnet.NETS:
            raise ValueError("--weights %s: its metadata names no net we know (%r): give --net" % (wpath, args.net))
        net = alexnet.net_for_weights(args.net, {k: list(v.shape) for k, v in tensors.items()}, lrn, act, pool)
    else:
        lrn = args.lrn or "paper"
        args.net = args.net or "alexnet-small"
        big = alexnet.NETS[args.net]["size"] > 100
        net = alexnet.build(args.net, args.channels or (3 if big else 1), args.classes or (1000 if big else 10), lrn,
                            args.activation, args.pool)
        wpath = os.path.join(workdir, "weights.safetensors")
        stio.write(wpath, random_weights(net, args.seed, use_torch=True),
                   {"net": net.name, "lrn": lrn, "activation": net.activation, "pool": net.pool})
        tensors, meta = stio.load_torch(wpath, args.reader)
    errs = alexnet.check_weights(net, {k: list(v.shape) for k, v in tensors.items()})
    if errs:
        print("parity.py: --weights %s: %s" % (wpath, "; ".join(errs)), file=sys.stderr)
        return 2
    n = args.batch or (2 if net.input[1] > 100 else 4)
    print("net %s, %d images %dx%dx%d, LRN %s, activation %s, pooling %s, weights %s, torch %s on %s%s" % (
        net.name, n, net.input[0], net.input[1], net.input[2], lrn, net.activation, net.pool, wpath,
        torch.__version__, args.device, " (grouped)" if args.grouped else ""))
    x_raw = make_input(net, n, args.seed)
    ours, ometa = run_trainer(args.trainer, net, wpath, x_raw, workdir, args.gpus, args.lrn)
    if ometa:
        print("trainer output metadata: %s" % ", ".join("%s=%s" % kv for kv in sorted(ometa.items())))
    refs = torch_outputs(net, tensors, x_raw, args.device, args.grouped)
    ok = report(net, n, ours, refs)
    print("\nPARITY %s: %s, %d layers and logits, tolerance %g*max|ref| + %g*|ref|" % (
        "OK" if ok else "FAILED", net.name, len(net.layers) - 1, ATOL_FRAC, RTOL))
    if not args.workdir and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


# ---------------------------------------------------------------- the pure-Python reference

class PyOps:
    """run_table's ops in plain Python: a tensor is (shape, flat list). The
    same arithmetic as the torch modules, LRN included (PyTorch's algorithm
    with alpha = n * ours), computed in float64."""

    def __init__(self, params):
        self.p = params  # {name: array of floats}

    def apply(self, l, x):
        if l.kind == "conv":
            return _conv(x, self.p[l.name + ".weight"], l.weight_shape(), self.p[l.name + ".bias"], l.stride, l.pad)
        if l.kind == "fc":
            return _linear(x, self.p[l.name + ".weight"], self.p[l.name + ".bias"], l.filters)
        if l.kind == "lrn":
            return torch_style_lrn(x, l.kernel, alexnet.torch_lrn_alpha(l.alpha, l.kernel), l.beta, l.k)
        if l.kind == "pool":
            return _maxpool(x, l.kernel, l.stride)
        if l.kind == "dropout":
            return x  # eval mode: the identity, as nn.Dropout.eval() and our Eval
        raise ValueError(l.kind)

    def act(self, y, kind):
        if kind == "relu":
            return y[0], [v if v > 0 else 0.0 for v in y[1]]
        return y[0], [math.tanh(v) for v in y[1]]

    def flatten(self, y):
        return (y[0][0], stio.numel(y[0][1:])), y[1]

    def cat(self, xs):
        n = xs[0][0][0]
        sizes = [stio.numel(s[1:]) for s, _ in xs]
        out = []
        for i in range(n):
            for (s, v), m in zip(xs, sizes):
                out += v[i * m:(i + 1) * m]
        rest = list(xs[0][0][1:])
        rest[0] = sum(s[1] for s, _ in xs)
        return tuple([n] + rest), out

    def to(self, y, l):
        return y


def _ranges(size, out, k, stride, pad):
    """For each tap t < k: the outputs o with 0 <= o*stride + t - pad < size, as (lo, hi)."""
    r = []
    for t in range(k):
        lo, hi = 0, out
        while lo < hi and lo * stride + t - pad < 0:
            lo += 1
        while hi > lo and (hi - 1) * stride + t - pad >= size:
            hi -= 1
        r.append((lo, hi))
    return r


def _conv(x, w, wshape, b, stride, pad):
    (N, C, H, W), xv = x
    K, C2, R, S = wshape
    assert C == C2, (C, C2)
    P, Q = (H + 2 * pad - R) // stride + 1, (W + 2 * pad - S) // stride + 1
    pr, qr = _ranges(H, P, R, stride, pad), _ranges(W, Q, S, stride, pad)
    y = []
    for n in range(N):
        for k in range(K):
            acc = [float(b[k])] * (P * Q)
            for c in range(C):
                xo = (n * C + c) * H * W
                for r in range(R):
                    plo, phi = pr[r]
                    for s in range(S):
                        wv = w[((k * C + c) * R + r) * S + s]
                        qlo, qhi = qr[s]
                        cnt = qhi - qlo
                        if cnt <= 0:
                            continue
                        for p in range(plo, phi):
                            row = xo + (p * stride + r - pad) * W + qlo * stride + s - pad
                            seg = xv[row:row + (cnt - 1) * stride + 1:stride]
                            base = p * Q + qlo
                            acc[base:base + cnt] = [a + wv * v for a, v in zip(acc[base:base + cnt], seg)]
            y += acc
    return (N, K, P, Q), y


def _linear(x, w, b, out):
    (N, I), xv = x
    y = []
    for n in range(N):
        row = xv[n * I:(n + 1) * I]
        for o in range(out):
            y.append(b[o] + math.fsum(a * v for a, v in zip(w[o * I:(o + 1) * I], row)))
    return (N, out), y


def _maxpool(x, k, stride):
    (N, C, H, W), xv = x
    P, Q = (H - k) // stride + 1, (W - k) // stride + 1
    y = []
    for nc in range(N * C):
        o = nc * H * W
        for p in range(P):
            for q in range(Q):
                y.append(max(xv[o + (p * stride + i) * W + q * stride + j] for i in range(k) for j in range(k)))
    return (N, C, P, Q), y


def torch_style_lrn(x, size, alpha, beta, k):
    """torch.nn.functional.local_response_norm transcribed: the squares
    zero-padded by size//2 channels in front and (size-1)//2 behind,
    averaged over windows of `size` channels (divisor always size),
    then x / (k + alpha*avg)^beta."""
    (N, C, H, W), xv = x
    hw = H * W
    y = []
    for n in range(N):
        sq = [[v * v for v in xv[(n * C + c) * hw:(n * C + c + 1) * hw]] for c in range(C)]
        zero = [0.0] * hw
        padded = [zero] * (size // 2) + sq + [zero] * ((size - 1) // 2)
        for c in range(C):
            win = padded[c:c + size]  # padded channel c + size//2 is channel c
            xs = xv[(n * C + c) * hw:(n * C + c + 1) * hw]
            for i in range(hw):
                avg = sum(plane[i] for plane in win) / size
                y.append(xs[i] / (k + alpha * avg) ** beta)
    return (N, C, H, W), y


def our_lrn(x, size, alpha, beta, k):
    """gpu/device.go's LRN as written there: alpha on the sum over
    j = c - size/2 .. c + size/2, clipped to the valid channels."""
    (N, C, H, W), xv = x
    hw = H * W
    y = []
    for n in range(N):
        for c in range(C):
            for i in range(hw):
                s = sum(xv[(n * C + j) * hw + i] ** 2 for j in range(max(0, c - size // 2), min(C - 1, c + size // 2) + 1))
                y.append(xv[(n * C + c) * hw + i] / (k + alpha * s) ** beta)
    return (N, C, H, W), y


def py_outputs(net, raw_weights, x_raw):
    params = {k: stio.as_floats(v) for k, v in raw_weights.items()}
    outs = alexnet.run_table(net, (tuple(x_raw.shape), list(stio.as_floats(x_raw))), PyOps(params))
    del outs["data"]
    refs = {k: v for k, (s, v) in outs.items()}
    n = x_raw.shape[0]
    refs["logits"] = refs["fc8"]
    refs["prob"] = softmax_rows(refs["fc8"], n, net.classes)
    return refs


def _halves(x):
    """(N, 2C, ...) -> two (N, C, ...): tower a's channels, tower b's."""
    shape, v = x
    n, m = shape[0], stio.numel(shape[1:]) // 2
    half = tuple([n, shape[1] // 2] + list(shape[2:]))
    return [(half, [u for i in range(n) for u in v[(2 * i + t) * m:(2 * i + t + 1) * m]]) for t in (0, 1)]


def py_grouped_outputs(net, raw_weights, x_raw):
    """AlexNetGrouped.forward transcribed in plain Python on pack_grouped's
    weights, for the two-tower nets: checks the packing (cat along dim 0 of
    a row-major tensor is its data a then b) and the grouped formulation
    (groups=2 = each half of the input with its half of the rows, LRN per
    half, pool5 flattened = cat of pool5a, pool5b flattened)."""
    f = {k: list(stio.as_floats(v)) for k, v in raw_weights.items()}
    packed = {"fc8.weight": f["fc8.weight"], "fc8.bias": f["fc8.bias"]}
    for base in alexnet.GROUPED:
        for kind in ("weight", "bias"):
            packed[base + "." + kind] = f[base + "a." + kind] + f[base + "b." + kind]
    ops = PyOps(packed)

    def conv(base, x, groups):
        la = net.layer(base + "a")
        w, b, k = packed[base + ".weight"], packed[base + ".bias"], la.filters
        if groups == 1:
            return _conv(x, w, [2 * k] + la.weight_shape()[1:], b, la.stride, la.pad)
        per = stio.numel(la.weight_shape())
        ys = [_conv(h, w[t * per:(t + 1) * per], la.weight_shape(), b[t * k:(t + 1) * k], la.stride, la.pad)
              for t, h in enumerate(_halves(x))]
        return ops.cat(ys)

    def act(y):
        return ops.act(y, net.activation)

    o = {}

    def norm(i, y):
        l = net.layer("norm%da" % i)
        if l is None:
            return y
        o["norm%d" % i] = y = ops.cat([torch_style_lrn(h, l.kernel, alexnet.torch_lrn_alpha(l.alpha), l.beta, l.k)
                                       for h in _halves(y)])
        return y

    p1 = net.layer("pool1a")
    pool = lambda y: _maxpool(y, p1.kernel, p1.stride)  # noqa: E731
    fc = lambda name, y: _linear(y, packed[name + ".weight"], packed[name + ".bias"], len(packed[name + ".bias"]))  # noqa: E731
    x = (tuple(x_raw.shape), list(stio.as_floats(x_raw)))
    o["conv1"] = y = act(conv("conv1", x, 1))
    o["pool1"] = y = pool(norm(1, y))
    o["conv2"] = y = act(conv("conv2", y, 2))
    o["pool2"] = y = pool(norm(2, y))
    o["conv3"] = y = act(conv("conv3", y, 1))
    o["conv4"] = y = act(conv("conv4", y, 2))
    o["conv5"] = y = act(conv("conv5", y, 2))
    o["pool5"] = y = pool(y)
    o["fc6"] = y = act(fc("fc6", ops.flatten(y)))
    o["drop6"] = y
    o["fc7"] = y = act(fc("fc7", y))
    o["drop7"] = y
    logits = fc("fc8", y)
    refs = {"fc8": logits[1], "logits": logits[1], "prob": softmax_rows(logits[1], x_raw.shape[0], net.classes)}
    for base, y in o.items():
        (a_shape, a), (b_shape, b) = _halves(y)
        refs[base + "a"], refs[base + "b"] = a, b
    return refs


# ---------------------------------------------------------------- the self-test

class Checks:
    def __init__(self):
        self.failed = 0
        self.passed = 0

    def __call__(self, cond, what):
        if cond:
            self.passed += 1
            print("  ok    " + what)
        else:
            self.failed += 1
            print("  FAIL  " + what)
        return cond


def self_test(args):
    check = Checks()
    try:
        import numpy
    except ImportError:
        numpy = None
    print("self-test (python %s, numpy %s, torch %s)" % (
        sys.version.split()[0], numpy.__version__ if numpy else "absent",
        alexnet.torch.__version__ if alexnet.torch else "absent"))

    print("\nlayer tables (README.md, the paper):")
    a = alexnet.build("alexnet", 3, 1000)
    check(a.params() == 60965224, "alexnet has %d parameters (60,965,224)" % a.params())
    per = {}
    for l in a.layers:
        if l.has_params():
            base = l.name.rstrip("ab")
            per[base] = per.get(base, 0) + l.params()
    paper = {"conv1": 34944, "conv2": 307456, "conv3": 885120, "conv4": 663936, "conv5": 442624,
             "fc6": 37752832, "fc7": 16781312, "fc8": 4097000}
    check(per == paper, "alexnet per layer, both towers: %s" % per)
    check(a.layer("conv3a").weight_shape() == [192, 256, 3, 3] and a.layer("fc6a").weight_shape() == [2048, 9216]
          and a.layer("fc8").weight_shape() == [1000, 4096] and a.layer("conv1a").weight_shape() == [48, 3, 11, 11],
          "alexnet conv1a (48,3,11,11), conv3a (192,256,3,3), fc6a (2048,9216), fc8 (1000,4096)")
    check(a.cross_edges() == ["pool2b\u2192conv3a", "pool2a\u2192conv3b", "pool5b\u2192fc6a", "pool5a\u2192fc6b",
                              "drop6b\u2192fc7a", "drop6a\u2192fc7b", "drop7b\u2192fc8"], "alexnet cross-device edges as the README")
    check(a.layer("pool5a").out_shape == (128, 6, 6) and a.layer("conv1a").out_shape == (48, 55, 55),
          "alexnet conv1a 48x55x55, pool5a 128x6x6")
    s = alexnet.build("alexnet-small", 1, 10)
    check(s.params() == 714378, "alexnet-small (1 channel, 10 classes) has %d parameters (714,378)" % s.params())
    s1 = alexnet.build("alexnet-small-1gpu", 1, 10)
    check(s1.params() == 638826, "alexnet-small-1gpu has %d parameters (638,826)" % s1.params())
    g = alexnet.build("alexnet-1gpu", 3, 1000)
    check([l.filters for l in g.layers if l.has_params()] == [48, 128, 192, 192, 256, 4096, 4096, 1000],
          "alexnet-1gpu: half conv1-4, full conv5 and fc")
    check(abs(a.layer("norm1a").alpha - 1e-4) < 1e-12 and abs(alexnet.torch_lrn_alpha(a.layer("norm1a").alpha) - 5e-4) < 1e-12
          and abs(alexnet.torch_lrn_alpha(alexnet.build("alexnet", lrn="caffe").layer("norm1a").alpha) - 1e-4) < 1e-12,
          "LRN: torch alpha 5e-4 for paper, 1e-4 for caffe")

    if args.go_table:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        exe = os.path.join(tempfile.mkdtemp(prefix="gotable-"), "gotable")
        p = subprocess.run(["go", "build", "-o", exe, os.path.join("bench", "pytorch", "gotable.go")], cwd=root,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        if check(p.returncode == 0, "go build bench/pytorch/gotable.go" + (": " + p.stdout if p.returncode else "")):
            print("\nthe tables against model.Build, every net and option (gotable.go):")
            n = same = 0
            for name in sorted(alexnet.NETS):
                for ch, cl in ((3, 1000), (1, 10)):
                    for lrn in ("paper", "caffe", "none"):
                        for act in ("relu", "tanh"):
                            for pool in ("3/2", "2/2"):
                                g = subprocess.run([exe, name, str(ch), str(cl), lrn, act, pool], stdout=subprocess.PIPE,
                                                   stderr=subprocess.STDOUT, universal_newlines=True)
                                mine = alexnet.build(name, ch, cl, lrn, act, pool).describe()
                                n += 1
                                if g.returncode == 0 and g.stdout == mine:
                                    same += 1
                                else:
                                    print("  differs: %s %d %d %s %s %s\n%s\n%s" % (name, ch, cl, lrn, act, pool, g.stdout, mine))
            check(same == n, "%d of %d tables identical to model.Build's Describe" % (same, n))
        shutil.rmtree(os.path.dirname(exe), ignore_errors=True)

    if args.trainer:
        print("\nthe tables against `%s inspect`:" % args.trainer)
        for name in sorted(alexnet.NETS):
            for ch, cl, lrn in ((3, 1000, "paper"), (1, 10, "caffe"), (3, 7, "paper")):
                cmd = [args.trainer, "inspect", "--net", name, "--channels", str(ch), "--classes", str(cl), "--lrn", lrn]
                p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
                mine = alexnet.build(name, ch, cl, lrn).describe()
                same = p.returncode == 0 and p.stdout == mine
                check(same, "%s --channels %d --classes %d --lrn %s: identical text" % (name, ch, cl, lrn))
                if not same:
                    print(p.stdout)
                    print(mine)

    print("\nsafetensors reader and writer:")
    tmp = tempfile.mkdtemp(prefix="parity-selftest-")
    try:
        rng = random.Random(7)
        ts = {"b": stio.from_floats([2, 3], [rng.gauss(0, 1) for _ in range(6)]),
              "a.weight": stio.from_floats([4, 1, 2, 2], [rng.gauss(0, 1) for _ in range(16)]),
              "scalar": stio.from_floats([], [3.5]), "empty": stio.from_floats([0, 5], []),
              "odd": stio.from_floats([3], [float("inf"), -0.0, 1e-40])}
        path = os.path.join(tmp, "t.safetensors")
        stio.write(path, ts, {"lrn": "caffe", "net": "x"})
        back, meta = stio.read(path)
        check(meta == {"lrn": "caffe", "net": "x"}, "metadata round trip")
        check(sorted(back) == sorted(ts) and all(back[k].shape == ts[k].shape and back[k].data == ts[k].data for k in ts),
              "tensors round trip bit for bit (shapes [], [0,5], inf, -0, a subnormal)")
        with open(path, "rb") as f:
            buf = f.read()
        hl = int.from_bytes(buf[:8], "little")
        check(hl % 8 == 0 and buf[8:9] == b"{", "header length %d is a multiple of 8, JSON follows" % hl)
        for what, data in (("truncated data", buf[:-4]), ("truncated header", buf[:12]), ("7 bytes", buf[:7]),
                           ("F16 dtype", buf.replace(b'"F32"', b'"F16"', 1))):
            bad = os.path.join(tmp, "bad.safetensors")
            with open(bad, "wb") as f:
                f.write(data)
            try:
                stio.read(bad)
                check(False, "%s is refused" % what)
            except stio.FormatError as e:
                check(True, "%s is refused: %s" % (what, str(e).split(": ", 1)[1]))
        if numpy is not None:
            arr = stio.as_numpy(back["a.weight"])
            check(arr.shape == (4, 1, 2, 2) and arr.tobytes() == ts["a.weight"].data, "numpy view of a read tensor")
        else:
            print("  (numpy absent: the numpy conversion is not checked)")

        print("\nPyTorch's LRN algorithm (transcribed) against ours, alpha_torch = 5 * alpha:")
        x = ((2, 7, 2, 3), [rng.gauss(0, 50) for _ in range(2 * 7 * 6)])
        for conv, alpha in (("paper", 1e-4), ("caffe", 2e-5)):
            ref = our_lrn(x, 5, alpha, 0.75, 2.0)[1]
            got = torch_style_lrn(x, 5, alexnet.torch_lrn_alpha(alpha), 0.75, 2.0)[1]
            err = max(abs(u - v) / max(abs(u), 1e-30) for u, v in zip(ref, got))
            check(err < 1e-12, "%s: max relative difference %.2g over 7 channels (the edges clipped)" % (conv, err))
        wrong = torch_style_lrn(x, 5, 1e-4, 0.75, 2.0)[1]
        ref = our_lrn(x, 5, 1e-4, 0.75, 2.0)[1]
        check(max(abs(u - v) / max(abs(u), 1e-30) for u, v in zip(ref, wrong)) > 1e-2,
              "passing alpha 1e-4 unscaled for paper differs (the check can fail)")

        paths = list(args.weights or []) or sorted(glob.glob("/tmp/docruns/*/weights.safetensors"))
        if paths:
            print("\nweights files written by the trainer:")
        for path in paths:
            raw, meta = stio.read(path)
            name = meta.get("net", "")
            try:
                net = alexnet.net_for_weights(name, {k: v.shape for k, v in raw.items()}, meta.get("lrn") or "paper",
                                              meta.get("activation") or "relu", meta.get("pool") or "3/2")
                errs = alexnet.check_weights(net, {k: v.shape for k, v in raw.items()})
            except ValueError as e:
                net, errs = None, [str(e)]
            check(not errs, "%s: net %s, %d tensors, names and shapes as the table%s" % (
                path, name, len(raw), (": " + "; ".join(errs)) if errs else ""))

        if args.trainer:
            print("\nend to end: trainer forward --layers against the pure-Python reference:")
            cases = [("alexnet-small", None, "paper", "relu", "3/2", 1), ("alexnet-small-1gpu", None, "caffe", "relu", "3/2", 2),
                     ("alexnet-small", None, "none", "relu", "3/2", 4)]
            flags = forward_flags(args.trainer)
            if "--activation" in flags and "--pool" in flags:
                cases += [("alexnet-small", None, "paper", "tanh", "2/2", 5)]
            else:
                print("  (`trainer forward` takes no --activation/--pool: the tanh and 2/2 variants are not run)")
            cases += [(stio.read(p)[1].get("net", ""), p, None, None, None, 3) for p in paths]
            for name, wpath, lrn, act, pool, seed in cases:
                if name not in alexnet.NETS:
                    continue
                if wpath:
                    raw, meta = stio.read(wpath)
                    net = alexnet.net_for_weights(name, {k: v.shape for k, v in raw.items()}, meta.get("lrn") or "paper",
                                                  meta.get("activation") or "relu", meta.get("pool") or "3/2")
                else:
                    net = alexnet.build(name, 1, 10, lrn, act, pool)
                    raw = random_weights(net, seed, use_torch=False)
                    wpath = os.path.join(tmp, "w.safetensors")
                    stio.write(wpath, raw, {"net": name, "lrn": lrn, "activation": act, "pool": pool})
                print("\n%s, LRN %s, activation %s, pooling %s, weights %s:" % (name, net.lrn, net.activation, net.pool, wpath))
                x_raw = make_input(net, 2, seed)
                ours, _ = run_trainer(args.trainer, net, wpath, x_raw, tmp, "cpu")
                ok = report(net, 2, ours, py_outputs(net, raw, x_raw), "python")
                check(ok, "%s: every layer, the logits and the softmax within tolerance" % name)
                if net.towers == 2:
                    print("\nthe same, with the grouped formulation (pack_grouped's weights):")
                    ok = report(net, 2, ours, py_grouped_outputs(net, raw, x_raw), "grouped")
                    check(ok, "%s grouped: every layer, the logits and the softmax within tolerance" % name)
            # the comparison must be able to fail: perturb one conv3 weight
            raw = dict(raw)
            l3 = "conv3a.weight" if "conv3a.weight" in raw else "conv3.weight"
            vals = stio.as_floats(raw[l3])
            vals[0] += 0.5
            raw[l3] = stio.Raw(raw[l3].shape, vals.tobytes())
            print("\nthe last case with %s[0,0,0,0] changed by 0.5 in the reference only (must mismatch):" % l3)
            still_ok = report(net, 2, ours, py_outputs(net, raw, x_raw), "python")
            check(not still_ok, "a changed weight is reported as a mismatch")
        else:
            print("\n(no --trainer: the inspect and end-to-end checks are skipped)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nself-test: %d passed, %d failed" % (check.passed, check.failed))
    return 1 if check.failed else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trainer", help="our trainer binary (required except for --self-test)")
    p.add_argument("--net", choices=sorted(alexnet.NETS),
                   help="the net (default: the weights' metadata, else alexnet-small)")
    p.add_argument("--weights", action="append",
                   help="our safetensors weights (default: seeded random ones); with --self-test, may repeat")
    p.add_argument("--lrn", choices=["paper", "caffe", "none"],
                   help="LRN alpha convention (default: the weights' metadata, else paper), passed to the trainer too")
    p.add_argument("--activation", choices=["relu", "tanh"], help="default: the weights' metadata, else relu")
    p.add_argument("--pool", choices=["3/2", "2/2"], help="max pooling window/stride (default: the weights' metadata, else 3/2)")
    p.add_argument("--channels", type=int, help="input channels of generated weights (default 3 for alexnet*, 1 for the small nets)")
    p.add_argument("--classes", type=int, help="classes of generated weights (default 1000 for alexnet*, 10 for the small nets)")
    p.add_argument("--batch", type=int, help="images (default 2 for alexnet*, 4 for the small nets)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu", help="where PyTorch runs: cpu, cuda, cuda:1 (TF32 off)")
    p.add_argument("--grouped", action="store_true", help="use the grouped-convolution twin (two-tower nets)")
    p.add_argument("--gpus", default="cpu", help="our trainer's --gpus for the forward pass (default cpu)")
    p.add_argument("--reader", default="auto", choices=["auto", "package", "ours"],
                   help="how to read the weights into torch: the safetensors package, ours, or the package if present")
    p.add_argument("--workdir", help="keep the input, weights and output files here")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--self-test", action="store_true", help="check what needs no PyTorch (see the module doc)")
    p.add_argument("--go-table", action="store_true",
                   help="with --self-test: compare the tables with model.Build's for every option (needs go, run from the repo)")
    a = p.parse_args(argv)
    if a.self_test:
        return self_test(a)
    if not a.trainer:
        p.error("--trainer is required (the path of our trainer binary)")
    if a.weights and len(a.weights) > 1:
        p.error("one --weights file per run")
    a.weights = a.weights[0] if a.weights else None
    try:
        return run(a)
    except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as e:
        print("parity.py: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
