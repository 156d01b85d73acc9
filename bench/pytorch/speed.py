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

Prints one JSON line per measurement: net, impl, placement, twin_of,
grouped, batch, images_per_s, ms_per_step (median), ms_min, repeats,
device, torch, cuda, cudnn, tf32, cudnn_benchmark, max_memory_bytes.
TF32 is off unless --tf32, so the numbers are fp32 as ours.

--trainer PATH also runs `PATH bench speed` for the same net, batch and
placements in this run (if that subcommand exists; otherwise a note), reads
its speed.json and prints a JSON line per pair with ours_over_pytorch, the
ratio of images/s from the same machine and the same run.
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
    m.train()
    decay = [p for n, p in m.named_parameters() if n.endswith(".weight")]
    plain = [p for n, p in m.named_parameters() if not n.endswith(".weight")]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                           {"params": plain, "weight_decay": 0.0}], lr=args.lr, momentum=args.momentum)
    c, h, w = m.net.input
    x = (torch.randn(args.batch, c, h, w) * 50).to(dev_a)
    y = torch.randint(0, classes, (args.batch,)).to(dev_a)  # fc8 sits on tower a
    devs = sorted({torch.device(d) for d in (dev_a, dev_b) if torch.device(d).type == "cuda"}, key=str)

    def sync():
        for d in devs:
            torch.cuda.synchronize(d)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(m(x), y)
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
            "max_memory_bytes": {str(d): torch.cuda.max_memory_allocated(d) for d in devs}}


def device_name(torch, place):
    if place == "cpu":
        return "%s (%s, %d torch threads)" % (platform.processor() or platform.machine(), platform.machine(),
                                             torch.get_num_threads())
    return ", ".join(torch.cuda.get_device_name(torch.device(d)) for d in place.split(","))


def run_ours(trainer, net, batch, repeats, gpus, timeout):
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
    p.add_argument("--tf32", action="store_true", help="allow TF32 in matmuls and convolutions (default: off, fp32)")
    p.add_argument("--no-cudnn-benchmark", action="store_true", help="do not let cuDNN pick algorithms by timing them")
    p.add_argument("--trainer", help="our trainer binary: also run its `bench speed` and report the ratio")
    p.add_argument("--trainer-repeats", type=int, default=5, help="our bench speed's --repeats")
    p.add_argument("--trainer-timeout", type=int, default=1800, help="seconds for our bench speed")
    a = p.parse_args(argv)
    if a.batch < 1 or a.repeats < 1 or a.warmup < 0:
        p.error("--batch and --repeats must be at least 1, --warmup at least 0")
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
              "tf32": a.tf32, "cudnn_benchmark": a.device == "cuda" and not a.no_cudnn_benchmark}
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
               "twin_of": " or ".join("--gpus " + g for g in TWIN[place]), "grouped": grouped, "batch": a.batch,
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
        ours = run_ours(a.trainer, a.net, a.batch, a.trainer_repeats, gpus, a.trainer_timeout)
        for o in ours or []:
            if o.get("skipped"):
                emit({"note": "our %s on --gpus %s skipped: %s" % (o.get("net"), o.get("placement"), o["skipped"])})
                continue
            for row in rows:
                if o.get("placement") in TWIN[row["placement"]] and o.get("net") == row["net"]:
                    emit({"net": row["net"], "pytorch_placement": row["placement"], "grouped": row["grouped"],
                          "ours_placement": o["placement"], "batch": a.batch,
                          "pytorch_images_per_s": row["images_per_s"], "ours_images_per_s": round(o["images_per_s"], 2),
                          "ours_over_pytorch": round(o["images_per_s"] / row["images_per_s"], 4),
                          "device": row["device"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
