#!/usr/bin/env bash
# gpu-check.sh: check the CUDA backend on a machine with a GPU and no Go.
#
#   scripts/gpu-check.sh [DIR]
#
# DIR (default build/gpu) holds what `make gpu-check` built elsewhere with
# CGO_ENABLED=0: the `trainer` binary and the test binary cuda.test (and
# optionally a copy of the Fashion-MNIST files in DIR/fashion-mnist). The
# script
#
#   1. lists the NVIDIA libraries on the machine (driver, cuBLAS, cuDNN,
#      NVRTC, in system folders, CUDA toolkits and Python's
#      site-packages/nvidia/*/lib) and puts their folders on LD_LIBRARY_PATH;
#   2. runs `trainer devices --open` (loads the libraries, compiles the kernels);
#   3. runs cuda.test, one test per step so that one failure or hang does
#      not hide the others: the conformance suite on the CUDA device, two
#      streams on one GPU, the two-tower net on --gpus 0,0 against
#      cpu,cpu, timing events, memory sharing between streams, and
#      devices opened and closed in a loop (the driver's free memory must
#      not fall), and cuDNN's LRN and pooling against the CPU device's;
#      then the NCCL group (one rank; four ranks on one GPU where NCCL
#      allows; the device-copy fallback), two replicas on 0,0,0,0 against
#      one on 0,0 through open.Reducers, and, where the trainer has it,
#      `trainer bench scale --gpus 0,0,0,0 --quick` (JSON in $LOGS/scale);
#   4. trains alexnet-small on Fashion-MNIST for one short epoch on --gpus 0,0;
#   5. runs the speed benchmark on placements "0;0,0", and the kernel
#      benchmark (LRN and max pooling against cuDNN's and a device copy's
#      bandwidth, conv1's and conv2's shapes at $BATCH) on GPU 0;
#   5b. end to end (E2E=1, the default): generates E2E_IMAGES (3000)
#      256×256 images (scripts/synth-images.py), prepares them, and times
#      alexnet on 0 and 0,0 and alexnet-1gpu on 0 from the shards through
#      the loader beside the synthetic step, with PyTorch's eager fp32
#      step; scripts/speed-summary.py writes $LOGS/speed.json (net,
#      placement, mode, precision, images_per_s, pytorch_images_per_s,
#      ratio, data_wait_ms) and fails if end to end keeps under 95% of the
#      synthetic images/s or 0,0 is slower than 0. E2E_RUNS overrides the
#      runs ("net:placements net:placements", e.g. for a dry run on CPUs);
#   6. where python3 has PyTorch with CUDA (PYTORCH=1, the default): the
#      PyTorch twin's parity against our forward pass (CPU and CUDA devices)
#      and its training-step speed beside ours, from the same run;
#   7. the precisions (issue #12): the bf16 tests of cuda.test, a step of
#      PREC_NETS (alexnet) on 0 and 0,0 in each of fp32 (step 5's rows),
#      PRECISIONS (tf32 bf16) beside PyTorch's best formulation in the same
#      precision (scripts/precision-summary.py writes
#      $LOGS/speed-precision.json and fails a ratio under 1.3), and
#      alexnet-small trained in fp32 and bf16, three seeds each
#      (scripts/precision-convergence.sh, CONVERGENCE=0 skips it; it gets
#      what is left of the budget, at most CONV_DEADLINE=240 s). A trainer
#      without `bench speed --precision` skips it. Dry run without a GPU:
#      PREC_PLACEMENTS='cpu;cpu,cpu' PREC_NETS=alexnet-small
#      PREC_TORCH_DEVICE=cpu CONV_GPUS=cpu,cpu CONV_LIMIT=512 CONV_EPOCHS=1;
#
# and prints a table of each step's result and time. Logs go to
# $LOGS (default DIR/check-<time>). It exits non-zero if any step failed.
# Environment: DATA (default DIR/fashion-mnist, else
# /usr/share/datasets/fashion-mnist), LOGS, TIMEOUT (seconds per step,
# default 120), BUDGET (seconds for the whole script, default 480: steps
# that would start after it are skipped; a GPU session has 15 minutes in
# all), NETS (benchmark nets, default alexnet-small,alexnet), BATCH
# (default 128), REPEATS (timed steps, default 20), PYTORCH (1 or 0).
set -u
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-build/gpu}
dir=$(cd "$dir" 2>/dev/null && pwd) || { echo "gpu-check: no folder ${1:-build/gpu}; build it with make gpu-check" >&2; exit 2; }
out=${LOGS:-$dir/check-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
timeout_s=${TIMEOUT:-120}
budget=${BUDGET:-480}
data=${DATA:-}
if [ -z "$data" ]; then
	data=/usr/share/datasets/fashion-mnist
	[ -d "$dir/fashion-mnist" ] && data=$dir/fashion-mnist
fi
nets=${NETS:-alexnet-small,alexnet}
batch=${BATCH:-128}
repeats=${REPEATS:-20}
started=$(date +%s)
# SECTIONS: which parts run, separated by commas (default all): tests (the
# cuda.test steps of 3, NCCL and replicas included), scale (3c), train (4),
# speed (5), e2e (5b), kernels, pytorch (6), precision (7's tests and
# speeds), convergence (7's runs). The devices step always runs. A 15-minute
# GPU session fits the whole check in two runs, e.g.
# SECTIONS=tests,kernels,scale,train,speed then
# SECTIONS=e2e,pytorch,precision,convergence, each with BUDGET=540.
sections=",${SECTIONS:-all},"
want() { [[ $sections == *,all,* || $sections == *",$1,"* ]]; }

names=(); results=(); times=()
# step NAME [-t SECONDS] CMD…: run CMD with a timeout, log to $out/NAME.log,
# record the result. Skipped once the budget is spent.
step() {
	local name=$1; shift
	local limit=$timeout_s
	if [ "${1:-}" = -t ]; then limit=$2; shift 2; fi
	local left=$((budget - ($(date +%s) - started)))
	if [ "$left" -lt 10 ]; then
		skip "$name" "budget of ${budget}s spent"
		return
	fi
	[ "$limit" -gt "$left" ] && limit=$left
	local log="$out/$name.log" t0 t1 rc
	echo "=== $name (limit ${limit}s): $*" | tee "$log"
	t0=$(date +%s.%N)
	timeout -k 5 "$limit" "$@" >>"$log" 2>&1
	rc=$?
	t1=$(date +%s.%N)
	tail -n 25 "$log"
	names+=("$name"); times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')")
	case $rc in
	0) results+=("pass") ;;
	124 | 137) results+=("TIMEOUT") ;;
	*) results+=("FAIL($rc)") ;;
	esac
}
skip() { names+=("$1"); results+=("skip: $2"); times+=("-"); echo "=== $1: skipped: $2"; }
passed() { # passed NAME: whether step NAME passed
	local i
	for i in "${!names[@]}"; do [ "${names[$i]}" = "$1" ] && [ "${results[$i]}" = pass ] && return 0; done
	return 1
}

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
	-o -name 'libcublasLt.so*' -o -name 'libnvrtc.so*' -o -name 'libnvrtc-builtins.so*' -o -name 'libnccl.so*' \) -print 2>/dev/null |
	sort | tee "$out/libraries.log"
extra=$(grep -E '/(libcudnn|libcublas|libnvrtc|libnccl)\.so' "$out/libraries.log" | xargs -r -n1 dirname | sort -u | paste -sd: -)
if [ -n "$extra" ]; then
	export LD_LIBRARY_PATH="$extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"

# 2. Devices.
if [ -x "$dir/trainer" ]; then
	step devices -t 60 "$dir/trainer" devices --open
else
	skip devices "no $dir/trainer"
fi

# 3. The CUDA backend's tests, verbose, one per step.
if ! want tests; then
	skip cuda.test "not in SECTIONS"
elif [ -x "$dir/cuda.test" ]; then
	for t in TestConformance TestConformancePair TestTwoTowersMatchCPU TestTimer TestSharesMemory TestDeterministic TestOpenCloseLoop TestVendorOps; do
		step "$t" "$dir/cuda.test" -test.v -test.run "^$t\$" -test.timeout "${timeout_s}s"
		grep -E -- '--- FAIL' "$out/$t.log" | head -30
	done
	# 3b. NCCL (issue #16; libnccl.so.2 from pip's nvidia-nccl-cu13, found
	# above): a one-rank communicator by ncclCommInitAll and by a unique
	# id, four ranks on one GPU where this NCCL allows it (2.30 or later,
	# with NCCL_MULTI_RANK_GPU_ENABLE=1, which the test sets; else it
	# skips, saying why), and the device-copy reduction that replaces it.
	step TestNCCL -t 35 "$dir/cuda.test" -test.v -test.run '^TestNCCL(OneRank|MultiRankOneGPU|Fallback)$' -test.timeout 30s
	grep -E -- '--- (FAIL|SKIP)|NCCL [0-9]|device copies' "$out/TestNCCL.log" | head -12
	# 3b'. Two replicas on one GPU (0,0,0,0) against one (0,0), reducing
	# through open.Reducers as the trainer does: NCCL where it takes four
	# ranks on the GPU, else device copies (the log line says which).
	step TestReplicasOnOneGPU -t 65 "$dir/cuda.test" -test.v -test.run '^TestReplicasOnOneGPU$' -test.timeout 60s
	grep -E -- '--- (FAIL|SKIP)|reduction:|differs|loss' "$out/TestReplicasOnOneGPU.log" | head -8
	grep -E -- '--- (FAIL|SKIP)' "$out"/Test*.log >"$out/cuda.summary" 2>/dev/null || true
else
	skip cuda.test "no $dir/cuda.test"
fi

# has_gpu: the devices step passed and found a CUDA driver.
has_gpu() { passed devices && ! grep -q "no CUDA driver" "$out/devices.log"; }

# 3c. Replicas (issue #16), where the trainer has `bench scale`: two
# replicas of the two-tower net on one GPU (--gpus 0,0,0,0) against one,
# its JSON in $out/scale.
if want scale && [ -x "$dir/trainer" ] && has_gpu && "$dir/trainer" bench --help 2>&1 | grep -qE '^[[:space:]]+scale([[:space:]]|,)'; then
	step bench-scale -t 25 "$dir/trainer" bench scale --gpus 0,0,0,0 --quick --out "$out/scale"
	ls "$out/scale" 2>/dev/null
else
	skip bench-scale "not in SECTIONS, no trainer with bench scale, or no GPU found"
fi

# 4. A short training run on one GPU, both towers.
if want train && [ -x "$dir/trainer" ] && [ -d "$data" ] && has_gpu; then
	step train-0,0 "$dir/trainer" train --gpus 0,0 --epochs 1 --limit 8192 --data "$data" --out "$out/run-0,0"
else
	skip train-0,0 "not in SECTIONS, no trainer, no data at $data (set DATA), or no GPU found"
fi

# 5. Throughput.
if want speed && [ -x "$dir/trainer" ] && has_gpu; then
	step bench-speed "$dir/trainer" bench speed --placements "0;0,0" --nets "$nets" --batch "$batch" --repeats "$repeats" --out "$out/speed"
	[ -f "$out/speed/speed.md" ] && cat "$out/speed/speed.md" | head -20
else
	skip bench-speed "not in SECTIONS, no $dir/trainer, or no GPU found"
fi

py=${PYTHON:-python3}
has_torch() { $py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

# 5b. End to end (issue #13): a few thousand 256×256 images generated here,
# prepared into shards, trained from through the real loader (uint8
# uploaded, augmented on the GPU, the next batch staged during the step)
# beside the synthetic step, with PyTorch's eager fp32 step from the same
# run; speed-summary.py writes $out/speed.json and fails the step if an
# end-to-end row keeps under 95% of its synthetic step's images/s, or if
# 0,0 is slower than 0.
if want e2e && [ "${E2E:-1}" = 1 ] && [ -x "$dir/trainer" ] && { has_gpu || [ -n "${E2E_RUNS:-}" ]; }; then
	synth=${E2E_DIR:-$out/e2e}
	step e2e-images "$py" "$here/synth-images.py" "$synth/src" --train "${E2E_IMAGES:-3000}" --val "${E2E_VAL:-200}" --size 256
	if passed e2e-images; then
		step e2e-prepare "$dir/trainer" prepare --src "$synth/src" --out "$synth/prep" --size 256
	fi
	if passed e2e-prepare; then
		reports=()
		# E2E_RUNS: "net:placement;placement net:placement…" (a dry run on
		# a machine without a GPU: E2E_RUNS='alexnet-small:cpu;cpu,cpu').
		for run in ${E2E_RUNS:-alexnet:0;0,0 alexnet-1gpu:0}; do
			n=${run%%:*} pl=${run#*:}
			step "e2e-$n" "$dir/trainer" bench speed --nets "$n" --placements "$pl" --data "$synth/prep" --batch "$batch" --repeats "$repeats" --out "$out/e2e-$n"
			[ -f "$out/e2e-$n/speed.md" ] && head -8 "$out/e2e-$n/speed.md"
			reports+=("$out/e2e-$n/speed.json")
			if [ "${PYTORCH:-1}" = 1 ] && has_torch; then
				# Eager fp32 (TF32 off), the twin of --gpus 0 and 0,0.
				step "e2e-torch-$n" -t 150 "$py" "$here/../bench/pytorch/speed.py" --net "$n" --device cuda --batch "$batch" --repeats "$repeats"
			fi
		done
		torchlogs=()
		for f in "$out"/e2e-torch-*.log; do [ -f "$f" ] && torchlogs+=("$f"); done
		step e2e-summary -t 30 "$py" "$here/speed-summary.py" --out "$out/speed.json" "${reports[@]}" --torch "${torchlogs[@]}"
	fi
else
	skip e2e "not in SECTIONS, E2E=0, no trainer, or no GPU found (E2E_RUNS='alexnet-small:cpu;cpu,cpu' forces a dry run)"
fi
if want kernels && [ -x "$dir/trainer" ] && has_gpu; then
	step bench-kernels -t 90 "$dir/trainer" bench kernels --gpus 0 --batch "$batch" --repeats "$repeats" --out "$out/kernels"
	[ -f "$out/kernels/kernels.md" ] && cat "$out/kernels/kernels.md"
else
	skip bench-kernels "not in SECTIONS, no $dir/trainer, or devices failed or found no GPU"
fi

# 6. The PyTorch twin (bench/pytorch), where python3 has torch with CUDA.
if want pytorch && [ "${PYTORCH:-1}" = 1 ] && [ -x "$dir/trainer" ] && has_torch; then
	$py -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' | tee "$out/torch.log"
	P="$py $here/../bench/pytorch/parity.py --trainer $dir/trainer --device cuda"
	export PYTHONUNBUFFERED=1
	step parity-small -t 60 $P --net alexnet-small
	if passed devices; then
		step parity-small-gpu -t 60 $P --net alexnet-small --gpus 0,0
		step parity-alexnet-gpu -t 90 $P --net alexnet --grouped --gpus 0,0
	fi
	step parity-alexnet-cpu -t 90 $P --net alexnet
	S="$py $here/../bench/pytorch/speed.py --device cuda --trainer $dir/trainer --trainer-repeats $repeats --trainer-timeout $timeout_s"
	step speed-twin-alexnet -t 150 $S --net alexnet --grouped
	step speed-twin-small -t 90 $S --net alexnet-small --grouped
else
	skip pytorch "not in SECTIONS, PYTORCH=0, no trainer, or no python3 with torch and CUDA"
fi

# 7. Precisions (issue #12): bf16's GPU tests, a training step in each
# precision beside PyTorch's best formulation in the same precision, and
# bf16's convergence against fp32's. Guarded: a trainer from before
# `bench speed --precision` skips it all.
precs=${PRECISIONS:-tf32 bf16}
prec_nets=${PREC_NETS:-alexnet}
if want precision && [ -x "$dir/cuda.test" ] && has_gpu; then
	for t in TestConformanceBF16 TestTwoTowersBF16MatchCPU; do
		step "$t" "$dir/cuda.test" -test.v -test.run "^$t\$" -test.timeout "${timeout_s}s"
		grep -E -- '--- FAIL' "$out/$t.log" | head -30
	done
else
	skip bf16-cuda-tests "not in SECTIONS, no $dir/cuda.test, or no GPU found"
fi
if want precision && [ -x "$dir/trainer" ] && "$dir/trainer" bench speed --help 2>&1 | grep -q -- '--precision' &&
	{ has_gpu || [ -n "${PREC_PLACEMENTS:-}" ]; }; then
	reports=() tlogs=()
	# fp32: step 5's rows and step 6's PyTorch twins where they ran.
	[ -f "$out/speed/speed.json" ] && [ -z "${PREC_PLACEMENTS:-}" ] && reports+=("$out/speed/speed.json")
	for f in "$out"/speed-twin-*.log; do [ -f "$f" ] && tlogs+=("$f"); done
	for p in $precs; do
		step "speed-$p" "$dir/trainer" bench speed --precision "$p" --placements "${PREC_PLACEMENTS:-0;0,0}" --nets "$prec_nets" --batch "$batch" --repeats "$repeats" --out "$out/speed-$p"
		[ -f "$out/speed-$p/speed.json" ] && reports+=("$out/speed-$p/speed.json")
		if [ "${PYTORCH:-1}" = 1 ] && { has_torch || [ -n "${PREC_TORCH_DEVICE:-}" ]; }; then
			for n in ${prec_nets//,/ }; do
				# Both formulations; bf16 under torch.compile where it works.
				step "torch-$n-$p" -t 240 "$py" "$here/../bench/pytorch/speed.py" --net "$n" --device "${PREC_TORCH_DEVICE:-cuda}" --grouped --precision "$p" --batch "$batch" --repeats "$repeats"
				tlogs+=("$out/torch-$n-$p.log")
			done
		fi
	done
	if [ "${#reports[@]}" -gt 0 ]; then
		step precision-summary -t 30 "$py" "$here/precision-summary.py" --out "$out/speed-precision.json" "${reports[@]}" --torch "${tlogs[@]}"
	fi
else
	skip precision-speed "not in SECTIONS, no $dir/trainer, one without bench speed --precision, or no GPU found"
fi
left=$((budget - ($(date +%s) - started)))
conv_deadline=$((left - 60 < ${CONV_DEADLINE:-240} ? left - 60 : ${CONV_DEADLINE:-240}))
if want convergence && [ "${CONVERGENCE:-1}" = 1 ] && [ -x "$dir/trainer" ] && [ -d "$data" ] && { has_gpu || [ -n "${CONV_GPUS:-}" ]; } &&
	"$dir/trainer" train --help 2>&1 | grep -q 'bf16' && [ "$conv_deadline" -ge 60 ]; then
	step bf16-convergence -t $((conv_deadline + 45)) env GPUS="${CONV_GPUS:-0,0}" DEADLINE="$conv_deadline" \
		LIMIT="${CONV_LIMIT:-0}" EPOCHS="${CONV_EPOCHS:-4}" PYTHON="$py" \
		"$here/precision-convergence.sh" "$dir/trainer" "$data" "$out/convergence"
else
	skip bf16-convergence "not in SECTIONS, CONVERGENCE=0, no trainer with --precision bf16, no data at $data, no GPU found, or under 2 minutes of the budget left"
fi

echo
echo "=== summary ($out, $(($(date +%s) - started)) s)"
printf '%-28s %-14s %10s\n' step result seconds
failed=0
for i in "${!names[@]}"; do
	printf '%-28s %-14s %10s\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
	case ${results[$i]} in pass | skip*) ;; *) failed=1 ;; esac
done
if [ -s "$out/cuda.summary" ]; then
	echo
	echo "cuda.test failures and skips:"
	head -40 "$out/cuda.summary"
fi
exit $failed
