package parallel_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
)

// logDevice is a CPU device that logs, in order, its backward passes'
// input gradients ("data conv3a"), weight gradients ("filter conv3a",
// "weights fc8") and the events it records for another device ("send"),
// naming the layer of its tower by the call's shape.
type logDevice struct {
	*cpu.Device
	net   *model.Net
	tower int
	log   []string
}

func (d *logDevice) layer(kind model.Kind, k, c int) string {
	var names []string
	for _, l := range d.net.Layers {
		in := l.In.C
		if kind == model.Linear {
			in = l.In.Len()
		}
		if l.Kind == kind && l.Filters == k && in == c && (l.Tower == d.tower || l.Name == "fc8") {
			names = append(names, l.Name)
		}
	}
	if len(names) != 1 {
		return fmt.Sprintf("one of %v", names)
	}
	return names[0]
}

func (d *logDevice) ConvBackwardData(dx, dy, w gpu.Buffer, s gpu.ConvShape) error {
	d.log = append(d.log, "data "+d.layer(model.Conv, s.K, s.C))
	return d.Device.ConvBackwardData(dx, dy, w, s)
}

func (d *logDevice) ConvBackwardFilter(dw, dy, x gpu.Buffer, s gpu.ConvShape) error {
	d.log = append(d.log, "filter "+d.layer(model.Conv, s.K, s.C))
	return d.Device.ConvBackwardFilter(dw, dy, x, s)
}

func (d *logDevice) LinearBackwardData(dx, dy, w gpu.Buffer, s gpu.LinearShape) error {
	d.log = append(d.log, "data "+d.layer(model.Linear, s.Out, s.In))
	return d.Device.LinearBackwardData(dx, dy, w, s)
}

func (d *logDevice) LinearBackwardWeights(dw, db, dy, x gpu.Buffer, s gpu.LinearShape) error {
	d.log = append(d.log, "weights "+d.layer(model.Linear, s.Out, s.In))
	return d.Device.LinearBackwardWeights(dw, db, dy, x, s)
}

func (d *logDevice) Record() (gpu.Event, error) {
	d.log = append(d.log, "send")
	return d.Device.Record()
}

// sendAfter returns the index in log of the first "send" after entry, or -1.
func sendAfter(t *testing.T, log []string, entry string) int {
	t.Helper()
	i := slices.Index(log, entry)
	if i < 0 {
		t.Fatalf("no %q in %v", entry, log)
	}
	if j := slices.Index(log[i:], "send"); j >= 0 {
		return i + j
	}
	return -1
}

// On two devices a tower sends the input gradients the other waits for
// before it computes the weight gradients above that wait: fc8's weight
// gradient follows its gradient for drop7b, and conv3, conv4 and conv5's
// filter gradients follow conv3's gradient for the other tower's pool2.
// With device timing on each layer's backward stays one call after
// another, filter before data, as on one device.
func TestWeightGradientsAfterSends(t *testing.T) {
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	w := model.Init(net, 1)
	for _, timing := range []bool{false, true} {
		a := &logDevice{Device: cpu.New(cpu.Options{Index: 0, Threads: 1}), net: net, tower: 0}
		b := &logDevice{Device: cpu.New(cpu.Options{Index: 1, Threads: 1}), net: net, tower: 1}
		r := newRunner(t, net, w, a, b)
		r.SetDeviceTiming(timing)
		if _, err := r.Train(batch(net, 8, 1), 0.01); err != nil {
			t.Fatal(err)
		}
		for _, d := range []*logDevice{a, b} {
			sfx := string(rune('a' + d.tower))
			checks := [][2]string{{"data conv3" + sfx, "filter conv3" + sfx}, {"data conv3" + sfx, "filter conv4" + sfx}, {"data conv3" + sfx, "filter conv5" + sfx}}
			if d.tower == 0 {
				checks = append(checks, [2]string{"data fc8", "weights fc8"})
			}
			for _, c := range checks {
				send, wt := sendAfter(t, d.log, c[0]), slices.Index(d.log, c[1])
				if wt < 0 {
					t.Fatalf("no %q in %v", c[1], d.log)
				}
				if later := send >= 0 && wt > send; later == timing {
					t.Errorf("device timing %v, tower %d: %q at %d, the send after %q at %d; log %v", timing, d.tower, c[1], wt, c[0], send, d.log)
				}
			}
		}
	}
}

// slowDevice is a CPU device whose forward convolutions each take at
// least delay longer.
type slowDevice struct {
	*cpu.Device
	delay time.Duration
}

func (d *slowDevice) Conv(y, x, w gpu.Buffer, s gpu.ConvShape) error {
	time.Sleep(d.delay)
	return d.Device.Conv(y, x, w, s)
}

// WorkerTimes charges a wait to the worker that waits: with tower b's
// forward convolutions slowed by 100 ms each, tower a waits at the joins
// (conv3, fc6) for most of that in each step, tower b hardly at all, and
// each worker's times add up to the steps' wall time.
func TestWorkerTimes(t *testing.T) {
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	a := cpu.New(cpu.Options{Index: 0, Threads: 1})
	b := &slowDevice{Device: cpu.New(cpu.Options{Index: 1, Threads: 1}), delay: 100 * time.Millisecond}
	r := newRunner(t, net, model.Init(net, 1), a, b)
	in := batch(net, 8, 1)
	if _, err := r.Train(in, 0.01); err != nil {
		t.Fatal(err)
	}
	r.ResetProfile()
	const steps = 2
	for range steps {
		if _, err := r.Train(in, 0.01); err != nil {
			t.Fatal(err)
		}
	}
	ws := r.WorkerTimes()
	if len(ws) != 2 || ws[0].Device != a.Name() || ws[1].Device != b.Name() {
		t.Fatalf("worker times %+v, want one for %s and one for %s", ws, a.Name(), b.Name())
	}
	for _, w := range ws {
		if sum := w.Work + w.WaitForward + w.WaitBackward + w.Done; sum != w.Wall || w.Work <= 0 {
			t.Errorf("%s: %+v adds up to %v, not the wall time", w.Device, w, sum)
		}
	}
	// b's five slowed convolutions (conv1b to conv5b) make the wall
	// time; a waits for conv2b's output, then for conv3b to conv5b's.
	if min := steps * 150 * time.Millisecond; ws[0].WaitForward < min || ws[1].WaitForward > ws[0].WaitForward/4 {
		t.Errorf("forward waits %v on %s and %v on the slowed %s; want at least %v on the first, a quarter of that at most on the second",
			ws[0].WaitForward, ws[0].Device, ws[1].WaitForward, ws[1].Device, min)
	}
}
