package bf16_test

import (
	"testing"

	"github.com/alexnet-go/trainer/gpu/bf16"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/gpu/gputest"
)

// The bf16 pass of the conformance suite on the CPU device, wrapped.
func TestConformanceCPU(t *testing.T) {
	gputest.RunBF16(t, bf16.Wrap(cpu.New(cpu.Options{Threads: 2})))
}
