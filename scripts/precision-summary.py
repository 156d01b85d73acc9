#!/usr/bin/env python3
"""precision-summary.py: issue #12's speed rows, ours against PyTorch's best, per precision.

    python3 precision-summary.py --out speed-precision.json OURS.json... [--torch LOG...] [--min-ratio 1.3]

OURS.json are `trainer bench speed --precision P` reports (speed.json);
LOG are outputs of bench/pytorch/speed.py --precision P (JSON lines) from
the same run. For each of our synthetic rows it finds PyTorch's fastest
formulation of the same net on the twin placement in the same precision
(explicit towers or groups=2, compiled or eager, whichever ran fastest)
and writes one row: net, placement, precision, images_per_s,
pytorch_images_per_s, pytorch_formulation, ratio (ours over PyTorch's).
It prints them and exits 1 if a row with a PyTorch twin has a ratio under
--min-ratio (the issue's 1.3), 0 otherwise (a missing twin is not a
failure: the row has no ratio).
"""
import argparse
import json
import sys

from twinlog import TWIN, pytorch_rows


def torch_rows(paths):
    best = {}
    for r in pytorch_rows(paths, "precision-summary"):
        prec = r.get("precision") or ("tf32" if r.get("tf32") else "fp32")
        key = (r["net"], r["placement"], prec)
        form = ("groups=2" if r.get("grouped") else "explicit towers") + (", compiled" if r.get("compiled") else "")
        if key not in best or r["images_per_s"] > best[key][0]:
            best[key] = (r["images_per_s"], form)
    return best


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("ours", nargs="+")
    p.add_argument("--torch", nargs="*", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--min-ratio", type=float, default=1.3)
    a = p.parse_args(argv)
    best = torch_rows(a.torch)
    rows = []
    for path in a.ours:
        try:
            ours = json.load(open(path))
        except (OSError, ValueError) as e:
            print("precision-summary: %s: %s" % (path, e), file=sys.stderr)
            continue
        for o in ours:
            if o.get("skipped") or o.get("mode", "synthetic") != "synthetic":
                continue
            prec = o.get("precision", "fp32")
            pt = best.get((o["net"], TWIN.get(o["placement"], ""), prec))
            rows.append({"net": o["net"], "placement": o["placement"], "precision": prec,
                         "images_per_s": round(o["images_per_s"], 2),
                         "pytorch_images_per_s": pt[0] if pt else None, "pytorch_formulation": pt[1] if pt else None,
                         "ratio": round(o["images_per_s"] / pt[0], 4) if pt else None})
    with open(a.out, "w") as f:
        json.dump(rows, f, indent=2)
        f.write("\n")
    print("%-14s %-9s %-9s %10s %10s %8s  %s" % ("net", "placement", "precision", "images/s", "pytorch", "ratio", "pytorch's best"))
    failed = False
    for r in rows:
        ok = r["ratio"] is None or r["ratio"] >= a.min_ratio
        failed |= not ok
        print("%-14s %-9s %-9s %10.1f %10s %8s  %s%s" % (
            r["net"], r["placement"], r["precision"], r["images_per_s"],
            "%.1f" % r["pytorch_images_per_s"] if r["pytorch_images_per_s"] else "-",
            "%.3f" % r["ratio"] if r["ratio"] else "-", r["pytorch_formulation"] or "-",
            "" if ok else "   FAIL: under %.2f" % a.min_ratio))
    print("wrote %s" % a.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
