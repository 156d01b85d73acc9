# The README's two commands are `make run` and `make test`.
GO ?= go
export CGO_ENABLED = 0

.PHONY: build run test check bench fuzz

build:
	$(GO) build -o trainer ./cmd/trainer

# Train alexnet-small on Fashion-MNIST with its towers on two CPU devices.
run: build
	./trainer train --gpus cpu,cpu

# Static checks and the whole test suite (about 5 minutes on 2 cores).
test: check
	$(GO) test -timeout 20m ./...
	$(GO) test -run '^$$' -fuzz FuzzReadIDXImages -fuzztime 10s ./data/
	$(GO) test -run '^$$' -fuzz FuzzReadSafetensors -fuzztime 10s ./model/

check:
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt needed"; exit 1)
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 60m ./bench/ ./gpu/cpu/
