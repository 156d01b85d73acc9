"""PyTorch's training step for our nets: the twin of `trainer bench speed`.

    python3 speed.py --net alexnet [--device cuda] [--placement auto|one|two] [--grouped] [--trainer ./trainer]

Times one training step (forward, cross-entropy, backward, SGD with
momentum 0.9 and weight decay 5e-4 on the weights, not the biases, as ours)
at batch 128 on random N(0, 50^2) images and random labels, after --warmup
untimed steps; each timed step is bracketed by torch.cuda.synchronize on
every device it uses, and the median of --repeats steps is reported.

Placements: "cuda:0", both towers on one GPU, each tower's layers one after
the other on PyTorch's one stream (the twin of our `--gpus 0,0` and
`--gpus 0`); "cuda:0,cuda:1", tower a (and fc8) on GPU 0 and tower b on GPU 1,
the cross-tower inputs (and the image, for tower b) moved by the forward
pass, which is model parallelism as the paper's (run when 2 GPUs are
visible); "cpu" with --device cpu. --grouped also times the grouped-
convolution twin on one device (alexnet.AlexNetGrouped), the usual fast way
to write the two-tower net in one framework.

--precision is the arithmetic, as our trainer's --precision:

  fp32  float32, TF32 off (allow_tf32 False for matmuls and cuDNN): the
        twin of our fp32;
  tf32  float32 with TF32 tensor cores allowed in matmuls and convolutions
        (--tf32 is an alias);
  bf16  autocast to bfloat16 (torch.autocast, fp32 master weights, the
        loss in fp32, the backward pass outside autocast as PyTorch
        recommends), the model and the images in channels_last, TF32
        allowed for what autocast leaves in float32, and the step under
        torch.compile where it works (--compile auto: on a GPU, when
        torch has torch.compile and compiling and running the step
        succeed; otherwise eager, and the row says so). On the CPU
        (Debian's torch 1.13) autocast to bf16 exists and runs.

Prints one JSON line per measurement: net, impl, placement, twin_of,
grouped, precision, autocast, channels_last, compiled, batch,
images_per_s, ms_per_step (median), ms_min, repeats, device, torch, cuda,
cudnn, tf32, cudnn_benchmark, max_memory_bytes.

--trainer PATH also runs `PATH bench speed` for the same net, batch,
placements and precision in this run (if that subcommand exists, with
--precision if it has one; otherwise a note), reads its speed.json and
prints a JSON line per pair with ours_over_pytorch, the ratio of images/s
from the same machine and the same run.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import alexnet  # noqa: E402

# Our `--gpus` placements each PyTorch placement is the twin of.
TWIN = {"cpu": ["cpu"], "cuda:0": ["0,0", "0"], "cuda:0,cuda:1": ["0,1"]}


def emit(obj):
    print(json.dumps(obj, sort_keys=False), flush=True)


def note(msg):
    print("speed.py: " + msg, file=sys.stderr, flush=True)


def net_options(name, channels, classes):
    """As bench.Speed: 1 channel and 10 classes for the small nets, 3 and 1000 for alexnet*."""
    big = alexnet.NETS[name]["size"] > 32
    return channels or (3 if big else 1), classes or (1000 if big else 10)


def placements(args, towers, torch):
    if args.device == "cpu":
        return [("cpu", "cpu", "cpu")]
    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch.cuda.is_available() is False")
    n = torch.cuda.device_count()
    out = []
    if args.placement in ("auto", "one"):
        out.append(("cuda:0", "cuda:0", "cuda:0"))
    if args.placement in ("auto", "two"):
        if towers == 1:
            note("%s has one tower: no two-GPU placement" % args.net)
        elif n < 2:
            if args.placement == "two":
                raise RuntimeError("--placement two: %d GPU visible" % n)
            note("one GPU visible: the two-GPU placement is not run")
        else:
            out.append(("cuda:0,cuda:1", "cuda:0", "cuda:1"))
    return out


def time_step(args, torch, F, name, channels, classes, dev_a, dev_b, grouped):
    torch.manual_seed(args.seed)
    m = alexnet.make(name, channels, classes, args.lrn, args.activation, args.pool, grouped=grouped)
    if grouped:
        m.to(dev_a)
    else:
        m.place(dev_a, dev_b)
    bf16 = args.precision == "bf16"
    if bf16:
        m.to(memory_format=torch.channels_last)
    m.train()
    decay = [p for n, p in m.named_parameters() if n.endswith(".weight")]
    plain = [p for n, p in m.named_parameters() if not n.endswith(".weight")]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                           {"params": plain, "weight_decay": 0.0}], lr=args.lr, momentum=args.momentum)
    c, h, w = m.net.input
    x = (torch.randn(args.batch, c, h, w) * 50).to(dev_a)
    if bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (args.batch,)).to(dev_a)  # fc8 sits on tower a
    devs = sorted({torch.device(d) for d in (dev_a, dev_b) if torch.device(d).type == "cuda"}, key=str)
    kind = torch.device(dev_a).type

    def sync():
        for d in devs:
            torch.cuda.synchronize(d)

    def loss_of(model):
        if not bf16:
            return F.cross_entropy(model(x), y)
        with torch.autocast(device_type=kind, dtype=torch.bfloat16):
            logits = model(x)
        return F.cross_entropy(logits.float(), y)  # the loss in float32, as autocast's own list does

    fwd = m
    compiled = False
    if bf16 and want_compile(args, torch, kind):
        try:
            fwd = torch.compile(m)
            opt.zero_grad(set_to_none=True)
            loss_of(fwd).backward()  # compile now, and fail here if it cannot
            compiled = True
        except Exception as e:  # noqa: BLE001 - any failure means eager
            note("torch.compile failed on %s (%s: %s): timing the eager step" % (dev_a, type(e).__name__, str(e)[:300]))
            fwd = m

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_of(fwd)
        loss.backward()
        opt.step()

    for d in devs:
        torch.cuda.reset_peak_memory_stats(d)
    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.repeats):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"ms_per_step": med * 1e3, "ms_min": min(times) * 1e3, "images_per_s": args.batch / med,
            "max_memory_bytes": {str(d): torch.cuda.max_memory_allocated(d) for d in devs}, "compiled": compiled}


def want_compile(args, torch, kind):
    """Whether to try torch.compile: --compile on, or auto on a GPU with a torch that has it."""
    if args.compile == "off":
        return False
    if not hasattr(torch, "compile"):
        note("torch %s has no torch.compile: the eager step" % torch.__version__)
        return False
    return args.compile == "on" or kind == "cuda"


def device_name(torch, place):
    if place == "cpu":
        return "%s (%s, %d torch threads)" % (platform.processor() or platform.machine(), platform.machine(),
                                             torch.get_num_threads())
    return ", ".join(torch.cuda.get_device_name(torch.device(d)) for d in place.split(","))


def run_ours(trainer, net, batch, repeats, gpus, timeout, precision="fp32"):
    """Runs `trainer bench speed`; returns its rows, or None after a note."""
    try:
        h = subprocess.run([trainer, "bench", "speed", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=60)
    except OSError as e:
        note("--trainer %s: %s" % (trainer, e))
        return None
    if h.returncode != 0 or "--placements" not in h.stdout:
        emit({"note": "%s has no `bench speed` subcommand (or one without --placements): no ratio to our trainer" % trainer})
        return None
    out = tempfile.mkdtemp(prefix="ours-speed-")
    try:
        cmd = [trainer, "bench", "speed", "--nets", net, "--placements", ";".join(gpus), "--batch", str(batch),
               "--repeats", str(repeats), "--out", out]
        if "--precision" in h.stdout:
            cmd += ["--precision", precision]
        elif precision != "fp32":
            emit({"note": "%s bench speed has no --precision: no %s ratio to our trainer" % (trainer, precision)})
            return None
        note("$ " + " ".join(cmd))
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                           timeout=timeout)
        sys.stderr.write(p.stdout[-4000:])
        if p.returncode != 0:
            emit({"note": "`trainer bench speed` exited with status %d" % p.returncode})
            return None
        try:
            with open(os.path.join(out, "speed.json")) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            emit({"note": "could not read the trainer's speed.json: %s" % e})
            return None
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(description="Time PyTorch's training step of one of our nets.")
    p.add_argument("--net", default="alexnet", choices=sorted(alexnet.NETS))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--placement", default="auto", choices=["auto", "one", "two"],
                   help="one GPU, towers on GPUs 0 and 1, or both where possible (default)")
    p.add_argument("--grouped", action="store_true", help="also time the grouped-convolution twin on one device")
    p.add_argument("--channels", type=int, help="input channels (default: 1 for the small nets, 3 for alexnet*)")
    p.add_argument("--classes", type=int, help="classes (default: 10 for the small nets, 1000 for alexnet*)")
    p.add_argument("--lrn", default="paper", choices=["paper", "caffe", "none"])
    p.add_argument("--activation", default="relu", choices=["relu", "tanh"])
    p.add_argument("--pool", default="3/2", choices=["3/2", "2/2"])
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=20, help="timed steps; the median is reported")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16"],
                   help="fp32 (TF32 off, the default), tf32, or bf16 (autocast, channels_last, torch.compile where it works)")
    p.add_argument("--tf32", action="store_true", help="the same as --precision tf32 (kept as an alias)")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="torch.compile the bf16 step: auto (on a GPU, where torch has it), on, off")
    p.add_argument("--no-cudnn-benchmark", action="store_true", help="do not let cuDNN pick algorithms by timing them")
    p.add_argument("--trainer", help="our trainer binary: also run its `bench speed` and report the ratio")
    p.add_argument("--trainer-repeats", type=int, default=5, help="our bench speed's --repeats")
    p.add_argument("--trainer-timeout", type=int, default=1800, help="seconds for our bench speed")
    a = p.parse_args(argv)
    if a.batch < 1 or a.repeats < 1 or a.warmup < 0:
        p.error("--batch and --repeats must be at least 1, --warmup at least 0")
    if a.tf32 and a.precision not in (None, "tf32"):
        p.error("--tf32 with --precision %s: --tf32 is --precision tf32; give one of them" % a.precision)
    a.precision = a.precision or ("tf32" if a.tf32 else "fp32")
    a.tf32 = a.precision in ("tf32", "bf16")  # bf16: TF32 for what autocast leaves in float32
    a.channels, a.classes = net_options(a.net, a.channels, a.classes)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("speed.py: PyTorch is not installed here", file=sys.stderr)
        return 2
    towers = alexnet.build(a.net, a.channels, a.classes, a.lrn, a.activation, a.pool).towers
    try:
        places = placements(a, towers, torch)
    except RuntimeError as e:
        print("speed.py: %s" % e, file=sys.stderr)
        return 2
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
        torch.backends.cudnn.benchmark = not a.no_cudnn_benchmark
    common = {"torch": torch.__version__, "cuda": torch.version.cuda,
              "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
              "tf32": a.tf32 and a.device == "cuda", "cudnn_benchmark": a.device == "cuda" and not a.no_cudnn_benchmark}
    runs = [(place, da, db, False) for place, da, db in places]
    if a.grouped:
        if towers == 2:
            runs.append((places[0][0], places[0][1], places[0][1], True))
        else:
            note("%s has one tower: no grouped twin" % a.net)
    rows = []
    for place, da, db, grouped in runs:
        if grouped and "," in place:
            continue
        note("timing %s on %s%s: %d warm-up and %d timed steps at batch %d" % (
            a.net, place, " (grouped)" if grouped else "", a.warmup, a.repeats, a.batch))
        r = time_step(a, torch, F, a.net, a.channels, a.classes, da, db, grouped)
        row = {"net": a.net, "impl": "pytorch", "placement": place,
               "twin_of": " or ".join("--gpus " + g for g in TWIN[place]), "grouped": grouped,
               "precision": a.precision, "autocast": "bfloat16" if a.precision == "bf16" else None,
               "channels_last": a.precision == "bf16", "compiled": r["compiled"], "batch": a.batch,
               "images_per_s": round(r["images_per_s"], 2), "ms_per_step": round(r["ms_per_step"], 3),
               "ms_min": round(r["ms_min"], 3), "repeats": a.repeats, "device": device_name(torch, place)}
        row.update(common)
        row["max_memory_bytes"] = r["max_memory_bytes"]
        emit(row)
        rows.append(row)
        del r
        if a.device == "cuda":
            torch.cuda.empty_cache()

    if a.trainer:
        gpus = []
        for place, _, _ in places:
            gpus += [g for g in TWIN[place] if g not in gpus]
        ours = run_ours(a.trainer, a.net, a.batch, a.trainer_repeats, gpus, a.trainer_timeout, a.precision)
        for o in ours or []:
            if o.get("skipped"):
                emit({"note": "our %s on --gpus %s skipped: %s" % (o.get("net"), o.get("placement"), o["skipped"])})
                continue
            for row in rows:
                if (o.get("placement") in TWIN[row["placement"]] and o.get("net") == row["net"]
                        and o.get("precision", "fp32") == a.precision):
                    emit({"net": row["net"], "pytorch_placement": row["placement"], "grouped": row["grouped"],
                          "precision": a.precision, "compiled": row["compiled"],
                          "ours_placement": o["placement"], "batch": a.batch,
                          "pytorch_images_per_s": row["images_per_s"], "ours_images_per_s": round(o["images_per_s"], 2),
                          "ours_over_pytorch": round(o["images_per_s"] / row["images_per_s"], 4),
                          "device": row["device"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
