# The README's two commands are `make run` and `make test`.
GO ?= go
export CGO_ENABLED = 0

.PHONY: build run test check bench gpu-check

build:
	$(GO) build -o trainer ./cmd/trainer

# Train alexnet-small on Fashion-MNIST with its towers on two CPU devices,
# for 10 epochs: the paper's 90 (train's default) take hours on a CPU.
run: build
	./trainer train --gpus cpu,cpu --epochs 10

# Every reader's fuzz target, with its execution budget. Budgets are counts,
# not durations: a -fuzztime duration trips a race in Go 1.26's fuzzing
# coordinator (golang/go#75804) and fails at the deadline with no crasher.
FUZZ = data:FuzzReadIDXImages:100000x data:FuzzReadIDXLabels:100000x \
       data:FuzzReadCIFAR:50000x data:FuzzReadShard:50000x data:FuzzDecodeImage:20000x \
       model:FuzzReadSafetensors:5000x

# Static checks, the whole test suite and a short run of every fuzz target
# (a few minutes on 2 cores; go test's own limit is 20 minutes).
test: check
	$(GO) test -timeout 20m ./...
	@set -e; for f in $(FUZZ); do \
	  pkg=$${f%%:*}; rest=$${f#*:}; name=$${rest%%:*}; n=$${rest#*:}; \
	  echo "fuzz $$name ($$n) in ./$$pkg"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $$n ./$$pkg/ > /tmp/fuzz-$$name.log 2>&1 || { cat /tmp/fuzz-$$name.log; exit 1; }; \
	done

check:
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt needed"; exit 1)
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 60m ./bench/ ./gpu/cpu/

# What scripts/gpu-check.sh runs on a GPU machine that has no Go toolchain:
# the trainer and the CUDA test binary (stripped), built here into
# $(GPU_DIR), with a copy of Fashion-MNIST when it is installed here (the
# GPU machine may have no network). Then, on the GPU machine:
# scripts/gpu-check.sh $(GPU_DIR)
GPU_DIR ?= build/gpu
DATA ?= /usr/share/datasets/fashion-mnist
gpu-check:
	mkdir -p $(GPU_DIR)
	$(GO) build -ldflags=-s -o $(GPU_DIR)/trainer ./cmd/trainer
	$(GO) test -c -ldflags=-s -o $(GPU_DIR)/cuda.test ./gpu/cuda
	if [ -d $(DATA) ]; then mkdir -p $(GPU_DIR)/fashion-mnist && cp $(DATA)/*.gz $(GPU_DIR)/fashion-mnist/; fi
	@echo "on the GPU machine: scripts/gpu-check.sh $(GPU_DIR)"
