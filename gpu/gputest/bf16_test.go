package gputest_test

import (
	"math"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/bf16"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/gpu/gputest"
)

// The reference rounding, on values worked by hand (the CPU device's bit
// arithmetic is checked on the same kind of values in gpu/cpu).
func TestBF16Round(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{1, 1},
		{1 + 1.0/256, 1},                  // tie, 1 is even
		{1 + 3.0/256, 1 + 4.0/256},        // tie, odd: up
		{1 + 1.0/256 + 1e-9, 1 + 1.0/128}, // above one half
		{-(1 + 3.0/256), -(1 + 4.0/256)},
		{math.Ldexp(1.5, -133), math.Ldexp(1, -132)}, // subnormal tie, odd: up
		{math.Ldexp(1, -134), 0},                     // subnormal tie to 0
		{math.MaxFloat32, math.Inf(1)},
		{math.Ldexp(255, 120), math.Ldexp(255, 120)}, // bf16's largest
		{math.Inf(-1), math.Inf(-1)},
	} {
		if got := gputest.BF16Round(c.in); got != c.want {
			t.Errorf("bf16Round(%g) = %g, want %g", c.in, got, c.want)
		}
	}
	if !math.IsNaN(gputest.BF16Round(math.NaN())) {
		t.Error("bf16Round(NaN) is not NaN")
	}
}

// truncating rounds toward zero instead of to nearest.
type truncating struct{ *cpu.Device }

func (d truncating) RoundBF16(y, x gpu.Buffer, n int) error {
	a, b := y.(*cpu.Buffer).Data(), x.(*cpu.Buffer).Data()
	for i := range n {
		a[i] = math.Float32frombits(math.Float32bits(b[i]) &^ 0xffff)
	}
	return nil
}

// inner returns the CPU device under a bf16 device.
func inner(d gpu.Device) gpu.Device { return d.(interface{ Unwrap() gpu.Device }).Unwrap() }

// lrnUnrounded forgets to round LRN's output.
type lrnUnrounded struct{ gpu.Device }

func (d lrnUnrounded) LRN(y, x gpu.Buffer, s gpu.LRNShape) error { return inner(d.Device).LRN(y, x, s) }

// linearMaster rounds Linear's output but reads its float32 operands
// (the master weights, the image) as they are.
type linearMaster struct{ gpu.Device }

func (d linearMaster) Linear(y, x, w, b gpu.Buffer, s gpu.LinearShape) error {
	if err := inner(d.Device).Linear(y, x, w, b, s); err != nil {
		return err
	}
	return inner(d.Device).(bf16.Rounder).RoundBF16(y, y, s.N*s.Out)
}

// convInPlace rounds the master weights in place, losing them.
type convInPlace struct{ gpu.Device }

func (d convInPlace) Conv(y, x, w gpu.Buffer, s gpu.ConvShape) error {
	if err := inner(d.Device).(bf16.Rounder).RoundBF16(w, w, s.WLen()); err != nil {
		return err
	}
	return d.Device.Conv(y, x, w, s)
}

// addRounds rounds every Add, a weight gradient's too.
type addRounds struct{ gpu.Device }

func (d addRounds) Add(y, x gpu.Buffer, n int) error {
	if err := d.Device.Add(y, x, n); err != nil {
		return err
	}
	return inner(d.Device).(bf16.Rounder).RoundBF16(y, y, n)
}

// The bf16 pass fails each broken device on the check of what it breaks,
// and the unwrapped CPU device (float32, no rounding) everywhere it
// rounds.
func TestBF16PassFailsBrokenDevices(t *testing.T) {
	good := func() gpu.Device { return bf16.Wrap(cpu.New(cpu.Options{Threads: 2})) }
	for _, tc := range []struct {
		name, check, want string
		dev               gpu.Device
	}{
		{"round toward zero", "Conv", "not the bf16 rounding", bf16.Wrap(truncating{cpu.New(cpu.Options{})})},
		{"round toward zero", "Elementwise", "Tanh y", bf16.Wrap(truncating{cpu.New(cpu.Options{})})},
		{"LRN output not rounded", "LRN", "y[", lrnUnrounded{good()}},
		{"Linear reads the master weights", "Linear", "y[", linearMaster{good()}},
		{"Conv rounds the master in place", "Conv", "w, a float32 operand, was written", convInPlace{good()}},
		{"Add rounds a weight gradient", "Linear", "dw += g (float32)", addRounds{good()}},
		{"float32, no rounding", "Conv", "bits", cpu.New(cpu.Options{})},
		{"float32, no rounding", "Augment", "dst", cpu.New(cpu.Options{})},
	} {
		fails := gputest.FailuresBF16(tc.dev, tc.check)
		if !strings.Contains(strings.Join(fails, "\n"), tc.want) {
			t.Errorf("%s: the %s check reported %d failures, none with %q:\n%s", tc.name, tc.check, len(fails), tc.want, strings.Join(fails, "\n"))
		}
	}
	for _, s := range []string{"Conv", "Linear", "LRN", "Elementwise", "Augment"} {
		if fails := gputest.FailuresBF16(good(), s); len(fails) > 0 {
			t.Errorf("the bf16 CPU device fails %s: %v", s, fails)
		}
	}
}
