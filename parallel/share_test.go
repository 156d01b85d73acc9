package parallel_test

import (
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
)

// sharedDevice is a CPU device that claims to share memory with the other
// sharedDevices of its group (as two streams of one GPU do), and counts
// its uploads.
type sharedDevice struct {
	*cpu.Device
	group   int
	uploads int
}

func (d *sharedDevice) SharesMemory(o gpu.Device) bool {
	s, ok := o.(*sharedDevice)
	return ok && s != d && s.group == d.group
}

func (d *sharedDevice) Upload(dst gpu.Buffer, src []float32) error {
	d.uploads++
	return d.Device.Upload(dst, src)
}

// Two devices that share memory get the image by one upload and a copy
// on the device; the numbers are exactly those of two separate devices,
// and the copy is not counted among the net's cross-tower bytes.
func TestSharedMemoryUploadsOnce(t *testing.T) {
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	w := model.Init(net, 1)
	a := &sharedDevice{Device: cpu.New(cpu.Options{Index: 0, Threads: 1})}
	b := &sharedDevice{Device: cpu.New(cpu.Options{Index: 1, Threads: 1})}
	shared := newRunner(t, net, w, a, b)
	apart := newRunner(t, net, w, cpu.New(cpu.Options{Index: 0, Threads: 1}), cpu.New(cpu.Options{Index: 1, Threads: 1}))
	if shared.CrossingBytes() != apart.CrossingBytes() {
		t.Fatalf("crossing bytes %d shared, %d apart", shared.CrossingBytes(), apart.CrossingBytes())
	}
	a.uploads, b.uploads = 0, 0
	const steps = 3
	for step := range steps {
		in := batch(net, 8, uint64(step))
		r1, err := apart.Train(in, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := shared.Train(in, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		if r1.Loss != r2.Loss {
			t.Fatalf("step %d: loss %v apart, %v shared", step, r1.Loss, r2.Loss)
		}
		if m, want := shared.MovedBytes(), shared.CrossingBytes(); m != want {
			t.Errorf("step %d: moved %d bytes, the plan's crossings are %d", step, m, want)
		}
	}
	// Per step: the image once (by the first device), the labels once (by
	// the logits' device, a); b uploads nothing.
	if a.uploads != 2*steps || b.uploads != 0 {
		t.Errorf("uploads in %d steps: %d on a, %d on b; want %d and 0", steps, a.uploads, b.uploads, 2*steps)
	}
	w1, _ := apart.Weights()
	w2, _ := shared.Weights()
	for name := range w1 {
		for i, v := range w1[name].Data {
			if v != w2[name].Data[i] {
				t.Fatalf("%s[%d] = %g apart, %g shared", name, i, v, w2[name].Data[i])
			}
		}
	}
	// Evaluation reads the copy too.
	in := batch(net, 5, 9)
	e1, err := apart.Eval(in)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := shared.Eval(in)
	if err != nil {
		t.Fatal(err)
	}
	if e1.Loss != e2.Loss {
		t.Errorf("eval loss %v apart, %v shared", e1.Loss, e2.Loss)
	}
}
