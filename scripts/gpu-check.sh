#!/usr/bin/env bash
# gpu-check.sh: check the CUDA backend on a machine with a GPU and no Go.
#
#   scripts/gpu-check.sh [DIR]
#
# DIR (default build/gpu) holds what `make gpu-check` built elsewhere with
# CGO_ENABLED=0: the `trainer` binary and test binaries (cuda.test,
# parallel.test, …; built with `go test -c`). The script
#
#   1. lists the NVIDIA libraries on the machine (driver, cuBLAS, cuDNN,
#      NVRTC, in system folders, CUDA toolkits and Python's
#      site-packages/nvidia/*/lib) and puts their folders on LD_LIBRARY_PATH;
#   2. runs `trainer devices --open` (loads the libraries, compiles the kernels);
#   3. runs cuda.test: the conformance suite on the CUDA device, two streams
#      on one GPU, and the two-tower net on --gpus 0,0 against cpu,cpu;
#   4. runs every other *.test in DIR;
#   5. trains alexnet-small on Fashion-MNIST for one short epoch on --gpus 0,0
#      (if the data set is at $DATA, default /usr/share/datasets/fashion-mnist);
#   6. runs the speed benchmark on placements "0;0,0";
#
# and prints a table of each step's result and time. Logs go to
# $OUT (default DIR/check-<time>). It exits non-zero if any step failed.
# Environment: DATA, OUT, TIMEOUT (seconds per step, default 240: a GPU session has 15 minutes in all),
# NETS (benchmark nets, default alexnet-small,alexnet), BATCH (default 128).
set -u
dir=${1:-build/gpu}
dir=$(cd "$dir" 2>/dev/null && pwd) || { echo "gpu-check: no folder ${1:-build/gpu}; build it with make gpu-check" >&2; exit 2; }
out=${OUT:-$dir/check-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
timeout_s=${TIMEOUT:-240}
data=${DATA:-/usr/share/datasets/fashion-mnist}
nets=${NETS:-alexnet-small,alexnet}
batch=${BATCH:-128}

names=(); results=(); times=()
# step NAME CMD…: run CMD with a timeout, log to $out/NAME.log, record result.
step() {
	local name=$1; shift
	local log="$out/$name.log" t0 t1 rc
	echo "=== $name: $*" | tee "$log"
	t0=$(date +%s.%N)
	timeout "$timeout_s" "$@" >>"$log" 2>&1
	rc=$?
	t1=$(date +%s.%N)
	tail -n 40 "$log"
	names+=("$name"); times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')")
	case $rc in
	0) results+=("pass") ;;
	124) results+=("TIMEOUT") ;;
	*) results+=("FAIL($rc)") ;;
	esac
}
skip() { names+=("$1"); results+=("skip: $2"); times+=("-"); echo "=== $1: skipped: $2"; }

echo "gpu-check: $dir, logs in $out"
{
	date -u
	uname -a
	command -v nvidia-smi >/dev/null && nvidia-smi || echo "no nvidia-smi"
} >"$out/machine.log" 2>&1
cat "$out/machine.log"

# 1. Libraries. The pip wheels' folders go on LD_LIBRARY_PATH so that the
# libraries' own dlopen calls (cuDNN's sub-libraries, NVRTC's builtins)
# find their siblings.
echo "=== libraries"
find / -xdev \( -path /proc -o -path /sys \) -prune -o \
	\( -name 'libcuda.so*' -o -name 'libcudnn.so*' -o -name 'libcudnn_cnn.so*' -o -name 'libcublas.so*' \
	-o -name 'libcublasLt.so*' -o -name 'libnvrtc.so*' -o -name 'libnvrtc-builtins.so*' \) -print 2>/dev/null |
	sort | tee "$out/libraries.log"
extra=$(grep -E '/(libcudnn|libcublas|libnvrtc)\.so' "$out/libraries.log" | xargs -r -n1 dirname | sort -u | paste -sd: -)
if [ -n "$extra" ]; then
	export LD_LIBRARY_PATH="$extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"

# 2. Devices.
if [ -x "$dir/trainer" ]; then
	step devices "$dir/trainer" devices --open
else
	skip devices "no $dir/trainer"
fi

# 3. The CUDA backend's tests, verbose: conformance, pair, whole-net parity.
if [ -x "$dir/cuda.test" ]; then
	step cuda.test "$dir/cuda.test" -test.v -test.timeout "${timeout_s}s"
	grep -E '^(--- |ok|FAIL|PASS)' "$out/cuda.test.log" | grep -vE '^    ' >"$out/cuda.summary" || true
	grep -E -- '--- (FAIL|SKIP)' "$out/cuda.test.log" | head -40
else
	skip cuda.test "no $dir/cuda.test"
fi

# 4. Every other test binary (CPU tests, on this machine's cores).
for t in "$dir"/*.test; do
	[ -x "$t" ] || continue
	b=$(basename "$t")
	[ "$b" = cuda.test ] && continue
	step "$b" "$t" -test.timeout "${timeout_s}s"
done

# 5. A short training run on one GPU, both towers.
if [ -x "$dir/trainer" ] && [ -d "$data" ]; then
	step train-0,0 "$dir/trainer" train --gpus 0,0 --epochs 1 --limit 2048 --data "$data" --out "$out/run-0,0"
else
	skip train-0,0 "no trainer or no data at $data (set DATA)"
fi

# 6. Throughput.
if [ -x "$dir/trainer" ]; then
	step bench-speed "$dir/trainer" bench speed --placements "0;0,0" --nets "$nets" --batch "$batch" --out "$out/speed"
else
	skip bench-speed "no $dir/trainer"
fi

echo
echo "=== summary ($out)"
printf '%-28s %-14s %10s\n' step result seconds
failed=0
for i in "${!names[@]}"; do
	printf '%-28s %-14s %10s\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
	case ${results[$i]} in pass | skip*) ;; *) failed=1 ;; esac
done
if [ -f "$out/cuda.summary" ]; then
	echo
	echo "cuda.test:"
	cat "$out/cuda.summary"
fi
exit $failed
