package parallel_test

import (
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// updateCounter is a CPU device that counts its SGD and SGDMulti calls.
type updateCounter struct {
	*cpu.Device
	sgd, multi, tensors int
}

func (d *updateCounter) SGD(w, v, dw gpu.Buffer, s gpu.SGDShape) error {
	d.sgd++
	return d.Device.SGD(w, v, dw, s)
}

func (d *updateCounter) SGDMulti(ws, vs, dws []gpu.Buffer, s gpu.SGDMultiShape) error {
	d.multi++
	d.tensors += len(ws)
	return d.Device.SGDMulti(ws, vs, dws, s)
}

// A step ends with one SGDMulti per device, covering every weight and
// bias of the device's layers, and gives the same bits as one SGD per
// tensor with the step's gradients (the weights decayed, the biases not).
func TestUpdateIsOneSGDMultiPerDevice(t *testing.T) {
	net, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	w := model.Init(net, 1)
	devs := []*updateCounter{{Device: cpu.New(cpu.Options{Index: 0, Threads: 1})}, {Device: cpu.New(cpu.Options{Index: 1, Threads: 1})}}
	const momentum, decay, lr = 0.9, 5e-4, 0.01
	r, err := parallel.New(net, []gpu.Device{devs[0], devs[1]}, w, parallel.Options{Batch: 4, Seed: 1, Momentum: momentum, WeightDecay: decay})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ref := cpu.New(cpu.Options{Threads: 1})
	b := batch(net, 4, 1)
	for step := 1; step <= 2; step++ {
		w0, err := r.Weights()
		if err != nil {
			t.Fatal(err)
		}
		v0, err := r.Momentum()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Train(b, lr); err != nil {
			t.Fatal(err)
		}
		w1, _ := r.Weights()
		v1, _ := r.Momentum()
		g, _ := r.Grads()
		for name, t0 := range w0 {
			n := len(t0.Data)
			wd := float32(decay)
			if strings.HasSuffix(name, ".bias") {
				wd = 0
			}
			bw, bv, bg := upload(t, ref, t0.Data), upload(t, ref, v0[name].Data), upload(t, ref, g[name].Data)
			if err := ref.SGD(bw, bv, bg, gpu.SGDShape{N: n, LR: lr, Momentum: momentum, WeightDecay: wd}); err != nil {
				t.Fatal(err)
			}
			wantW, wantV := make([]float32, n), make([]float32, n)
			_ = ref.Download(wantW, bw)
			_ = ref.Download(wantV, bv)
			if i := firstDiff(w1[name].Data, wantW); i >= 0 {
				t.Errorf("step %d: %s[%d] = %g, one SGD on the tensor gives %g", step, name, i, w1[name].Data[i], wantW[i])
			}
			if i := firstDiff(v1[name].Data, wantV); i >= 0 {
				t.Errorf("step %d: momentum of %s[%d] = %g, one SGD on the tensor gives %g", step, name, i, v1[name].Data[i], wantV[i])
			}
		}
	}
	total := 0
	for _, d := range devs {
		if d.sgd != 0 || d.multi != 2 {
			t.Errorf("%s: %d SGD and %d SGDMulti calls in 2 steps; want 0 and 2", d.Name(), d.sgd, d.multi)
		}
		total += d.tensors
	}
	if params := 2 * 2 * countParamLayers(net); total != params {
		t.Errorf("the SGDMulti calls of 2 steps covered %d tensors; the net has %d per step", total, params/2)
	}
}

func countParamLayers(net *model.Net) int {
	n := 0
	for _, l := range net.Layers {
		if l.Kind == model.Conv || l.Kind == model.Linear {
			n++
		}
	}
	return n
}

func upload(t *testing.T, d gpu.Device, v []float32) gpu.Buffer {
	t.Helper()
	b, err := d.Alloc(len(v))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Upload(b, v); err != nil {
		t.Fatal(err)
	}
	return b
}
