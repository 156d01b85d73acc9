#!/usr/bin/env bash
# precision-convergence.sh: does alexnet-small trained in bf16 reach the
# fp32 run's test error, within the spread of seeds? (issue #12)
#
#   scripts/precision-convergence.sh TRAINER DATA OUTDIR
#
# Trains NET (alexnet-small) for EPOCHS (4) epochs on DATA once per seed
# (SEEDS, "1 2 3") and precision (PRECISIONS, "fp32 bf16"), all runs at
# once on GPUS (0,0; a small net leaves an H200 mostly idle), each in
# OUTDIR/<precision>-seed<s>. At DEADLINE seconds (240) the runs still
# going get SIGINT: each saves a checkpoint and keeps its finished epochs.
# Then, at the last epoch every run finished, it compares the precisions'
# test top-1 errors: it passes when each precision's mean lies within the
# fp32 seeds' range widened by the other precision's spread (so within
# the spread of seeds), writes OUTDIR/convergence.json and exits 1 if not,
# 2 if some run finished no epoch. LIMIT (0: all images) and BATCH (128)
# pass on; for a dry run on a machine without a GPU:
#
#   GPUS=cpu,cpu LIMIT=512 EPOCHS=1 SEEDS="1 2" scripts/precision-convergence.sh ./trainer DATA /tmp/conv
set -u
T=${1:?usage: precision-convergence.sh TRAINER DATA OUTDIR}
data=${2:?usage: precision-convergence.sh TRAINER DATA OUTDIR}
out=${3:?usage: precision-convergence.sh TRAINER DATA OUTDIR}
net=${NET:-alexnet-small}
epochs=${EPOCHS:-4}
seeds=${SEEDS:-1 2 3}
precs=${PRECISIONS:-fp32 bf16}
gpus=${GPUS:-0,0}
deadline=${DEADLINE:-240}
limit=${LIMIT:-0}
batch=${BATCH:-128}
py=${PYTHON:-python3}
mkdir -p "$out"
pids=()
for p in $precs; do
	for s in $seeds; do
		run="$out/$p-seed$s"
		rm -rf "$run"
		"$T" train --net "$net" --gpus "$gpus" --precision "$p" --seed "$s" --epochs "$epochs" --limit "$limit" \
			--batch "$batch" --data "$data" --out "$run" >"$run.log" 2>&1 &
		pids+=($!)
	done
done
started=$(date +%s)
while :; do
	alive=0
	for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
	[ "$alive" = 0 ] && break
	if [ $(($(date +%s) - started)) -ge "$deadline" ]; then
		echo "precision-convergence: ${deadline}s: stopping the runs still going (SIGINT)"
		for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null; done
		wait
		break
	fi
	sleep 2
done
wait
"$py" - "$out" "$precs" "$seeds" <<'PY'
import json, os, statistics, sys
out, precs, seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
errs = {}  # (precision, seed) -> {epoch: test top-1 error}
for p in precs:
    for s in seeds:
        path = os.path.join(out, "%s-seed%s" % (p, s), "metrics.jsonl")
        e = {}
        try:
            for line in open(path):
                row = json.loads(line)
                if row.get("test_top1_err") is not None:
                    e[row["epoch"]] = row["test_top1_err"]
        except (OSError, ValueError) as err:
            print("precision-convergence: %s: %s" % (path, err))
        errs[(p, s)] = e
common = set.intersection(*(set(e) for e in errs.values())) if errs else set()
if not common:
    print("precision-convergence: no epoch that every run finished (see the logs in %s)" % out)
    sys.exit(2)
epoch = max(common)
at = {p: [errs[(p, s)][epoch] for s in seeds] for p in precs}
ref = at[precs[0]]
rows, ok = [], True
for p in precs:
    v = at[p]
    mean = statistics.mean(v)
    slack = (max(v) - min(v)) if len(v) > 1 else 0
    lo, hi = min(ref) - slack, max(ref) + slack
    good = lo <= mean <= hi
    ok &= good
    rows.append({"precision": p, "epoch": epoch, "test_top1_err": v, "mean": round(mean, 5),
                 "within": [round(lo, 5), round(hi, 5)], "ok": good})
    print("%-5s epoch %d: test top-1 error %s, mean %.2f%%, %s %.2f%%..%.2f%% (%s's seeds, widened by %s's spread)" % (
        p, epoch, " ".join("%.2f%%" % (100 * x) for x in v), 100 * mean, "within" if good else "OUTSIDE",
        100 * lo, 100 * hi, precs[0], p))
json.dump(rows, open(os.path.join(out, "convergence.json"), "w"), indent=2)
sys.exit(0 if ok else 1)
PY
