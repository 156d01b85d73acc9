package parallel_test

import (
	"testing"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
)

// clockDevice is a CPU device with a gpu.Timer whose clock advances 1 ms
// per mark, so the device time between a layer's two marks is exactly
// 1 ms.
type clockDevice struct {
	*cpu.Device
	ticks int
}

func (d *clockDevice) Mark() (gpu.Mark, error) {
	d.ticks++
	return d.ticks, nil
}

func (d *clockDevice) Elapsed(from, to gpu.Mark) (time.Duration, error) {
	return time.Duration(to.(int)-from.(int)) * time.Millisecond, nil
}

// With device timing on, a Timer device's layers are timed between marks
// on its clock, once per forward and once per backward of each step; a
// device without a Timer keeps host times; off, no marks are taken.
func TestDeviceTiming(t *testing.T) {
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	a := &clockDevice{Device: cpu.New(cpu.Options{Index: 0, Threads: 1})}
	b := cpu.New(cpu.Options{Index: 1, Threads: 1})
	r := newRunner(t, net, model.Init(net, 1), a, b)
	in := batch(net, 8, 1)
	if _, err := r.Train(in, 0.01); err != nil {
		t.Fatal(err)
	}
	if a.ticks != 0 {
		t.Fatalf("%d marks with device timing off", a.ticks)
	}
	r.ResetProfile()
	r.SetDeviceTiming(true)
	const steps = 3
	for range steps {
		if _, err := r.Train(in, 0.01); err != nil {
			t.Fatal(err)
		}
	}
	var onA, onB int
	for _, lt := range r.Profile() {
		switch lt.Device {
		case a.Name():
			onA++
			if lt.Clock != "device" || lt.Forward != steps*time.Millisecond || lt.Backward != steps*time.Millisecond {
				t.Errorf("%s on %s: clock %s, forward %v, backward %v; want device, %v, %v", lt.Layer, lt.Device, lt.Clock, lt.Forward, lt.Backward, steps*time.Millisecond, steps*time.Millisecond)
			}
		case b.Name():
			onB++
			if lt.Clock != "host" || lt.Forward <= 0 {
				t.Errorf("%s on %s: clock %s, forward %v; want host times", lt.Layer, lt.Device, lt.Clock, lt.Forward)
			}
		}
	}
	if onA == 0 || onB == 0 {
		t.Fatalf("layers on %s: %d, on %s: %d", a.Name(), onA, b.Name(), onB)
	}
	r.ResetProfile()
	for _, lt := range r.Profile() {
		if lt.Clock != "host" || lt.Forward != 0 {
			t.Fatalf("after ResetProfile: %+v", lt)
		}
	}
}

// scratchDevice reports scratch memory of its own, as the CUDA device
// reports cuDNN's workspace.
type scratchDevice struct{ *cpu.Device }

func (scratchDevice) ScratchBytes() int64 { return 1 << 20 }

// MemoryBytes adds a device's scratch memory, once per device, to the
// plan's buffers.
func TestMemoryBytesScratch(t *testing.T) {
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	w := model.Init(net, 1)
	plain := newRunner(t, net, w, cpu.New(cpu.Options{Index: 0, Threads: 1}))
	d := scratchDevice{cpu.New(cpu.Options{Index: 0, Threads: 1})}
	with := newRunner(t, net, w, d)
	both := newRunner(t, net, w, d, d)
	p, s, b := plain.MemoryBytes()["cpu:0"], with.MemoryBytes()["cpu:0"], both.MemoryBytes()["cpu:0"]
	if p == 0 || s != p+1<<20 || b != s {
		t.Errorf("memory: plain %d, with 1 MiB scratch %d, both towers on it %d", p, s, b)
	}
}
