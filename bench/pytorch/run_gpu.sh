#!/usr/bin/env bash
# The PyTorch twin's checks for a GPU machine, in one go: parity of every
# net (explicit towers and grouped), then the speed of a training step.
# Needs python3 with PyTorch (CUDA); no network, no Go. Our trainer binary
# is built elsewhere and copied along:
#
#   bench/pytorch/run_gpu.sh [TRAINER]        # default ./trainer
#
# Logs go to $OUT (or /tmp) as pytorch-NAME.log. Exit 1 if any check failed.
set -u
cd "$(dirname "$0")/../.."
T=${1:-./trainer}
LOG=${OUT:-/tmp}
PY=${PYTHON:-python3}
status=0

run() {
  local name=$1
  shift
  echo "== $name: $*"
  timeout 300 "$@" 2>&1 | tee "$LOG/pytorch-$name.log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc"
  [ "$rc" = 0 ] || status=1
}

$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "gpus", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])' || exit 1
[ -x "$T" ] || { echo "no trainer binary at $T"; exit 1; }

P="$PY bench/pytorch/parity.py --trainer $T --device cuda"
run parity-small $P --net alexnet-small
run parity-small-grouped $P --net alexnet-small --grouped
run parity-small-caffe $P --net alexnet-small --lrn caffe
run parity-small-nolrn $P --net alexnet-small --lrn none
run parity-small-1gpu $P --net alexnet-small-1gpu
run parity-alexnet $P --net alexnet
run parity-alexnet-grouped $P --net alexnet --grouped
run parity-alexnet-1gpu $P --net alexnet-1gpu

S="$PY bench/pytorch/speed.py --device cuda --trainer $T"
run speed-alexnet $S --net alexnet --grouped
run speed-alexnet-1gpu $S --net alexnet-1gpu
run speed-small $S --net alexnet-small --grouped
run speed-small-1gpu $S --net alexnet-small-1gpu
for prec in tf32 bf16; do # fp32 above; the same twins in the other precisions
  run speed-alexnet-$prec $S --net alexnet --grouped --precision $prec
  run speed-small-$prec $S --net alexnet-small --grouped --precision $prec
done
exit $status
