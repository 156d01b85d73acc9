// Package bench holds the project's benchmarks and their reports. Speed is
// measured by `go test -bench` here, never asserted by a test:
//
//	go test -run x -bench . -benchtime 3x ./bench/
//
// BenchmarkStep reports the images/s and achieved GFLOP/s of one training
// step (forward, backward, update) of a net at batch 128 on each CPU
// placement; BenchmarkGEMM reports the raw single-precision GEMM rate the
// CPU device reaches on the same shapes, the ceiling the step is compared
// against. Results from real machines go in bench/results/ with the
// machine, the date and the commit.
package bench
