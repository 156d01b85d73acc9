#!/usr/bin/env bash
# gpu-runs.sh: the convergence benchmarks (bench error, bench ablate) on one
# GPU, as concurrent processes, one per seed, within a deadline.
#
#   bench/gpu-runs.sh TRAINER DATA OUTDIR
#
# A small net leaves an H100/H200 mostly idle, so the runs of each seed
# (and each ablation) go in a process of their own, all sharing the GPU. Each process writes its
# runs under OUTDIR/error/runs and OUTDIR/ablate/*/runs; a finished run is
# reused by a later `trainer bench error|ablate` with the same --out, so
# the reports are made afterwards, anywhere, from the runs' config.json and
# metrics.jsonl alone (no GPU needed), as this script does itself at the
# end when every run finished in time:
#
#   trainer bench error  --gpus "0;0,0" --limit 0 --epochs E --seeds 1,2,3 --out OUTDIR/error
#   trainer bench ablate --gpus 0,0     --limit 0 --epochs A --seeds 1,2,3 --out OUTDIR/ablate
#
# At DEADLINE seconds the processes still running get SIGINT: each saves its
# checkpoint and exits, and its finished epochs stay in metrics.jsonl (a
# report with fewer --epochs uses them). Environment: EPOCHS_ERROR
# (default 12), EPOCHS_ABLATE (6), SEEDS ("1 2 3"), DEADLINE (420), GPUS
# (the two-tower placement, default 0,0), TANH_LRS (extra tanh runs at
# these learning rates, seed 1, for Figure 1's "rates chosen per net";
# default "0.001 0.0001"; "" for none), JOBS (default "error ablate"),
# LIMIT (training images, default 0: all).
set -u
T=${1:?usage: gpu-runs.sh TRAINER DATA OUTDIR}
data=${2:?usage: gpu-runs.sh TRAINER DATA OUTDIR}
out=${3:?usage: gpu-runs.sh TRAINER DATA OUTDIR}
ee=${EPOCHS_ERROR:-12}
ea=${EPOCHS_ABLATE:-6}
seeds=${SEEDS:-1 2 3}
deadline=${DEADLINE:-420}
gpus=${GPUS:-0,0}
one=${gpus%%,*}
tanh_lrs=${TANH_LRS-0.001 0.0001}
jobs=${JOBS:-error ablate}
limit=${LIMIT:-0}
mkdir -p "$out/logs"
rm -f "$out/.stop"
started=$(date +%s)

pids=()
for s in $seeds; do
	case " $jobs " in *" error "*) ;; *) continue ;; esac
	"$T" bench error --gpus "$one;$gpus" --data "$data" --limit "$limit" --epochs "$ee" --seeds "$s" --out "$out/error" >"$out/logs/error-seed$s.log" 2>&1 &
	pids+=($!)
done
for s in $seeds; do
	case " $jobs " in *" ablate "*) ;; *) continue ;; esac
	for a in relu lrn pool; do
		"$T" bench ablate --only "$a" --gpus "$gpus" --data "$data" --limit "$limit" --epochs "$ea" --seeds "$s" --out "$out/ablate" >"$out/logs/ablate-$a-seed$s.log" 2>&1 &
		pids+=($!)
	done
done
if [ -n "$tanh_lrs" ]; then
	(
		for lr in $tanh_lrs; do
			[ -e "$out/.stop" ] && break
			"$T" train --gpus "$gpus" --data "$data" --limit "$limit" --epochs "$ea" --seed 1 --batch 64 --activation tanh --lr "$lr" --out "$out/tanh/lr$lr"
		done
	) >"$out/logs/tanh.log" 2>&1 &
	pids+=($!)
fi
echo "gpu-runs: ${#pids[@]} processes on --gpus $gpus, deadline ${deadline}s"

# Wait for all, or the deadline.
while :; do
	alive=0
	for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
	[ "$alive" = 0 ] && break
	if [ $(($(date +%s) - started)) -ge "$deadline" ]; then
		echo "gpu-runs: deadline: interrupting $alive process(es)"
		touch "$out/.stop"
		pkill -INT -f "$T (bench|train)" 2>/dev/null
		sleep 15
		pkill -KILL -f "$T (bench|train)" 2>/dev/null
		break
	fi
	sleep 5
done
wait 2>/dev/null

# The reports, from the finished runs (reused, not retrained), unless the
# deadline cut runs short: then make them elsewhere, with fewer --epochs.
if [ ! -e "$out/.stop" ]; then
	all=$(echo $seeds | tr ' ' ,)
	case " $jobs " in *" error "*)
		"$T" bench error --gpus "$one;$gpus" --data "$data" --limit "$limit" --epochs "$ee" --seeds "$all" --out "$out/error" >"$out/logs/error-report.log" 2>&1 &&
			echo "gpu-runs: wrote $out/error/report.md" ;;
	esac
	case " $jobs " in *" ablate "*)
		"$T" bench ablate --gpus "$gpus" --data "$data" --limit "$limit" --epochs "$ea" --seeds "$all" --out "$out/ablate" >"$out/logs/ablate-report.log" 2>&1 &&
			echo "gpu-runs: wrote $out/ablate/ablate.md" ;;
	esac
fi

# Epochs finished per run, with the last validation error.
echo "gpu-runs: $(($(date +%s) - started)) s"
find "$out" -name metrics.jsonl | sort | while read -r m; do
	printf '%-60s %3d epochs  last: %s\n' "${m#"$out"/}" "$(wc -l <"$m")" "$(tail -n 1 "$m" | grep -o '"val_top1_err":[^,]*' | head -1)"
done
