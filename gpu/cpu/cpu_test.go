package cpu_test

import (
	"testing"

	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/gpu/gputest"
)

func TestConformance(t *testing.T) {
	gputest.Run(t, cpu.New(cpu.Options{Threads: 2}))
}

func TestConformanceOneThread(t *testing.T) {
	gputest.Run(t, cpu.New(cpu.Options{Threads: 1}))
}

func TestConformancePair(t *testing.T) {
	gputest.RunPair(t, cpu.New(cpu.Options{Index: 0, Threads: 1}), cpu.New(cpu.Options{Index: 1, Threads: 1}))
}
