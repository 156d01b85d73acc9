#!/usr/bin/env python3
"""speed-summary.py: issue #13's speed table from one GPU session.

    python3 speed-summary.py --out speed.json OURS.json... [--torch LOG...]

OURS.json are `trainer bench speed --data` reports (speed.json: a
synthetic and an end-to-end row per net and placement); LOG are outputs
of bench/pytorch/speed.py (JSON lines) from the same run. Writes one row
per net, placement and mode: net, placement, mode, precision,
images_per_s, pytorch_images_per_s (PyTorch's eager fp32 step on the twin
placement: cuda:0 for our 0 and 0,0), ratio (ours over PyTorch's),
data_wait_ms, and prints them. It checks, per net and placement, that the
end-to-end step keeps at least 95% of the synthetic step's images/s, and
that 0,0 is at least as fast as 0 for the same net and mode; it exits 1
if a check fails, 0 otherwise (a missing row is not a failure).
"""
import argparse
import json
import sys

from twinlog import TWIN, pytorch_rows


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("ours", nargs="+")
    p.add_argument("--torch", nargs="*", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--min-e2e", type=float, default=0.95)
    a = p.parse_args(argv)
    torch = {}
    for r in pytorch_rows(a.torch, "speed-summary"):
        if not r.get("grouped") and not r.get("tf32"):
            torch[(r["net"], r["placement"])] = r["images_per_s"]
    rows = []
    for path in a.ours:
        try:
            ours = json.load(open(path))
        except (OSError, ValueError) as e:
            print("speed-summary: %s: %s" % (path, e), file=sys.stderr)
            continue
        for o in ours:
            if o.get("skipped"):
                continue
            pt = torch.get((o["net"], TWIN.get(o["placement"], "")))
            rows.append({"net": o["net"], "placement": o["placement"], "mode": o.get("mode", "synthetic"),
                         "precision": o.get("precision", "fp32"), "images_per_s": round(o["images_per_s"], 2),
                         "pytorch_images_per_s": pt, "ratio": round(o["images_per_s"] / pt, 4) if pt else None,
                         "data_wait_ms": round(o.get("data_wait_ms", 0), 3)})
    with open(a.out, "w") as f:
        json.dump(rows, f, indent=2)
        f.write("\n")
    print("%-14s %-9s %-11s %-9s %10s %10s %8s %12s" % ("net", "placement", "mode", "precision", "images/s", "pytorch", "ratio", "data wait ms"))
    for r in rows:
        print("%-14s %-9s %-11s %-9s %10.1f %10s %8s %12.3f" % (r["net"], r["placement"], r["mode"], r["precision"], r["images_per_s"],
              "%.1f" % r["pytorch_images_per_s"] if r["pytorch_images_per_s"] else "-",
              "%.3f" % r["ratio"] if r["ratio"] else "-", r["data_wait_ms"]))
    by = {(r["net"], r["placement"], r["mode"]): r["images_per_s"] for r in rows}
    failed = False
    for (net, place, mode), ips in sorted(by.items()):
        if mode == "end-to-end" and (net, place, "synthetic") in by:
            syn = by[(net, place, "synthetic")]
            ok = ips >= a.min_e2e * syn
            failed |= not ok
            print("check %s on %s: end to end %.1f images/s = %.1f%% of the synthetic step's %.1f (want >= %.0f%%): %s" % (
                net, place, ips, 100 * ips / syn, syn, 100 * a.min_e2e, "ok" if ok else "FAIL"))
        if place == "0,0" and (net, "0", mode) in by:
            one = by[(net, "0", mode)]
            ok = ips >= one
            failed |= not ok
            print("check %s %s: 0,0 %.1f images/s vs 0 %.1f (want 0,0 >= 0): %s" % (net, mode, ips, one, "ok" if ok else "FAIL"))
    print("wrote %s" % a.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
