package parallel_test

import (
	"fmt"
	"maps"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// unfused is a CPU device that counts the activation, bias and LRN calls
// made on it and runs each fused op as its unfused sequence of calls.
type unfused struct {
	*cpu.Device
	calls map[string]int
}

func (d *unfused) ReLU(y, x gpu.Buffer, n int) error {
	d.calls["ReLU"]++
	return d.Device.ReLU(y, x, n)
}

func (d *unfused) ReLUBackward(dx, dy, y gpu.Buffer, n int) error {
	d.calls["ReLUBackward"]++
	return d.Device.ReLUBackward(dx, dy, y, n)
}

func (d *unfused) AddBias(y, b gpu.Buffer, s gpu.BiasShape) error {
	d.calls["AddBias"]++
	return d.Device.AddBias(y, b, s)
}

func (d *unfused) BiasBackward(db, dy gpu.Buffer, s gpu.BiasShape) error {
	d.calls["BiasBackward"]++
	return d.Device.BiasBackward(db, dy, s)
}

func (d *unfused) LRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	d.calls["LRN"]++
	return d.Device.LRN(y, x, s)
}

func (d *unfused) Linear(y, x, w, b gpu.Buffer, s gpu.LinearShape) error {
	d.calls["Linear"]++
	return d.Device.Linear(y, x, w, b, s)
}

func (d *unfused) BiasReLU(y, b gpu.Buffer, s gpu.BiasShape) error {
	d.calls["BiasReLU"]++
	return first(d.Device.AddBias(y, b, s), d.Device.ReLU(y, y, s.Len()))
}

func (d *unfused) ReLUBiasBackward(dx, db, dy, y gpu.Buffer, s gpu.BiasShape) error {
	d.calls["ReLUBiasBackward"]++
	return first(d.Device.ReLUBackward(dx, dy, y, s.Len()), d.Device.BiasBackward(db, dx, s))
}

func (d *unfused) LinearReLU(y, x, w, b gpu.Buffer, s gpu.LinearShape) error {
	d.calls["LinearReLU"]++
	return first(d.Device.Linear(y, x, w, b, s), d.Device.ReLU(y, y, s.N*s.Out))
}

func (d *unfused) LinearReLUBackward(dx, dw, db, dy, x, w, y gpu.Buffer, s gpu.LinearShape) error {
	d.calls["LinearReLUBackward"]++
	err := first(d.Device.ReLUBackward(dy, dy, y, s.N*s.Out), d.Device.LinearBackwardWeights(dw, db, dy, x, s))
	if err == nil && dx != nil {
		err = d.Device.LinearBackwardData(dx, dy, w, s)
	}
	return err
}

func (d *unfused) ReLULRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	d.calls["ReLULRN"]++
	r, err := d.Device.Alloc(s.Len()) // LRN does not run in place
	if err != nil {
		return err
	}
	defer d.Device.Free(r)
	return first(d.Device.ReLU(r, x, s.Len()), d.Device.LRN(y, r, s))
}

func (d *unfused) ReLULRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	d.calls["ReLULRNBackward"]++
	r, err := d.Device.Alloc(s.Len())
	if err != nil {
		return err
	}
	defer d.Device.Free(r)
	return first(d.Device.ReLU(r, x, s.Len()), d.Device.LRNBackward(dx, dy, r, y, s), d.Device.ReLUBackward(dx, dx, r, s.Len()))
}

func first(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// A training step uses the fused ops wherever the layer table has a conv
// or FC layer followed by a ReLU (and an LRN), and nothing of what they
// replace; and it trains to the same bits as the unfused calls.
func TestStepUsesFusedOps(t *testing.T) {
	// Per tower of alexnet-small: conv1, conv2 → ReLU → LRN; conv3–conv5
	// → ReLU; fc6, fc7 → ReLU; fc8 (on tower a) has no ReLU.
	for _, tc := range []struct {
		o    model.Options
		want map[string]int
	}{
		{model.Options{Channels: 1, Classes: 10}, map[string]int{
			"ReLULRN": 4, "ReLULRNBackward": 4, "AddBias": 4, "BiasBackward": 4,
			"BiasReLU": 6, "ReLUBiasBackward": 6, "LinearReLU": 4, "LinearReLUBackward": 4, "Linear": 1}},
		{model.Options{Channels: 1, Classes: 10, LRN: "none"}, map[string]int{
			"BiasReLU": 10, "ReLUBiasBackward": 10, "LinearReLU": 4, "LinearReLUBackward": 4, "Linear": 1}},
	} {
		t.Run(fmt.Sprintf("lrn=%q", tc.o.LRN), func(t *testing.T) {
			net, err := model.Build("alexnet-small", tc.o)
			if err != nil {
				t.Fatal(err)
			}
			w := model.Init(net, 1)
			d := &unfused{Device: cpu.New(cpu.Options{Threads: 1}), calls: map[string]int{}}
			opt := parallel.Options{Batch: 4, Seed: 1, Momentum: 0.9, WeightDecay: 5e-4}
			counted, err := parallel.New(net, []gpu.Device{d}, w, opt)
			if err != nil {
				t.Fatal(err)
			}
			defer counted.Close()
			plain, err := parallel.New(net, []gpu.Device{cpu.New(cpu.Options{Threads: 1})}, w, opt)
			if err != nil {
				t.Fatal(err)
			}
			defer plain.Close()
			for step := range 2 {
				b := batch(net, 4, uint64(step))
				if _, err := counted.Train(b, 0.05); err != nil {
					t.Fatal(err)
				}
				if step == 0 && !maps.Equal(d.calls, tc.want) {
					t.Errorf("one step's calls: %v\nwant %v", d.calls, tc.want)
				}
				if _, err := plain.Train(b, 0.05); err != nil {
					t.Fatal(err)
				}
			}
			w1, _ := counted.Weights()
			w2, _ := plain.Weights()
			for name, v := range w1 {
				if i := firstDiff(v.Data, w2[name].Data); i >= 0 {
					t.Errorf("%s[%d] = %g with the unfused calls, %g with the fused ones", name, i, v.Data[i], w2[name].Data[i])
				}
			}
		})
	}
}
