package cuda

import (
	"slices"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
)

// Every kernel-backed operation launches the kernels it should, with
// arguments that match their CUDA signatures (launch checks them), on the
// host GPU with its launches recorded, not run.
func TestOpsLaunchKernels(t *testing.T) {
	g := newHostGPU(t, nil, 2)
	d := g.open(Options{})
	const n = 4096
	b := func(int) gpu.Buffer {
		buf, err := d.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		return buf
	}
	cases := []struct {
		op   string
		run  func() error
		want []string
	}{
		{"AddBias", func() error { return d.AddBias(b(n), b(n), gpu.BiasShape{N: 2, C: 3, Inner: 5}) }, []string{"bias_add"}},
		{"BiasBackward", func() error { return d.BiasBackward(b(n), b(n), gpu.BiasShape{N: 2, C: 3, Inner: 5}) }, []string{"bias_backward"}},
		{"ReLU", func() error { return d.ReLU(b(n), b(n), 100) }, []string{"relu_forward"}},
		{"ReLUBackward", func() error { return d.ReLUBackward(b(n), b(n), b(n), 100) }, []string{"relu_backward"}},
		{"Tanh", func() error { return d.Tanh(b(n), b(n), 100) }, []string{"tanh_forward"}},
		{"TanhBackward", func() error { return d.TanhBackward(b(n), b(n), b(n), 100) }, []string{"tanh_backward"}},
		{"LRN", func() error {
			return d.LRN(b(n), b(n), gpu.LRNShape{N: 2, C: 8, H: 3, W: 3, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2})
		}, []string{"lrn_forward"}},
		{"LRNBackward", func() error {
			return d.LRNBackward(b(n), b(n), b(n), b(n), gpu.LRNShape{N: 2, C: 8, H: 3, W: 3, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2})
		}, []string{"lrn_backward"}},
		{"MaxPool", func() error { return d.MaxPool(b(n), b(n), gpu.PoolShape{N: 2, C: 3, H: 9, W: 9, Size: 3, Stride: 2}) }, []string{"maxpool_forward"}},
		{"MaxPoolBackward", func() error {
			return d.MaxPoolBackward(b(n), b(n), b(n), b(n), gpu.PoolShape{N: 2, C: 3, H: 9, W: 9, Size: 3, Stride: 2})
		}, []string{"maxpool_backward"}},
		{"Dropout", func() error { return d.Dropout(b(n), b(n), b(n), gpu.DropoutShape{N: 100, P: 0.5, Seed: 7}) }, []string{"dropout_forward"}},
		{"DropoutBackward", func() error { return d.DropoutBackward(b(n), b(n), b(n), 100) }, []string{"dropout_backward"}},
		{"SoftmaxCrossEntropy", func() error {
			return d.SoftmaxCrossEntropy(b(n), b(n), b(n), b(n), gpu.SoftmaxShape{N: 4, Classes: 10})
		}, []string{"softmax_xent"}},
		{"SoftmaxCrossEntropyBackward", func() error {
			return d.SoftmaxCrossEntropyBackward(b(n), b(n), b(n), gpu.SoftmaxShape{N: 4, Classes: 10})
		}, []string{"softmax_xent_backward"}},
		{"Add", func() error { return d.Add(b(n), b(n), 100) }, []string{"add_inplace"}},
		{"Concat", func() error {
			return d.Concat(b(n), []gpu.Buffer{b(n), b(n)}, gpu.ConcatShape{N: 2, Sizes: []int{3, 4}})
		}, []string{"concat_rows", "concat_rows"}},
		{"Split", func() error {
			return d.Split([]gpu.Buffer{b(n), b(n)}, b(n), gpu.ConcatShape{N: 2, Sizes: []int{3, 4}})
		}, []string{"split_rows", "split_rows"}},
		{"SGD", func() error {
			return d.SGD(b(n), b(n), b(n), gpu.SGDShape{N: 100, LR: 0.01, Momentum: 0.9, WeightDecay: 5e-4})
		}, []string{"sgd_update"}},
		{"SGDMulti", func() error {
			s := gpu.SGDMultiShape{Sizes: []int{100, 7, 0}, WeightDecays: []float32{5e-4, 0, 0}, LR: 0.01, Momentum: 0.9}
			return d.SGDMulti([]gpu.Buffer{b(n), b(n), b(n)}, []gpu.Buffer{b(n), b(n), b(n)}, []gpu.Buffer{b(n), b(n), b(n)}, s)
		}, []string{"sgd_multi"}},
		{"SGDMulti of nothing", func() error {
			return d.SGDMulti(nil, nil, nil, gpu.SGDMultiShape{LR: 0.01})
		}, nil},
		{"Augment", func() error {
			return d.Augment(b(n), b(n), b(n), b(n), gpu.AugmentShape{N: 2, C: 3, Size: 8, Crop: 5})
		}, []string{"augment"}},
		{"RoundBF16", func() error { return d.RoundBF16(b(n), b(n), 100) }, []string{"round_bf16"}},
		{"ReLU of nothing", func() error { return d.ReLU(b(n), b(n), 0) }, nil},
	}
	for _, c := range cases {
		g.takeCalls()
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s panicked: %v", c.op, r)
				}
			}()
			if err := c.run(); err != nil {
				t.Errorf("%s: %v", c.op, err)
			}
		}()
		var launched []string
		for _, call := range g.takeCalls() {
			launched = append(launched, call[:strings.Index(call, "<<<")])
		}
		if !slices.Equal(launched, c.want) {
			t.Errorf("%s launched %q; want %q", c.op, launched, c.want)
		}
	}
}

func TestCheckArgs(t *testing.T) {
	buf := &Buffer{n: 1}
	checkArgs("add_inplace", []any{1, buf, buf})
	for _, bad := range [][]any{
		{1, buf},               // too few
		{float32(1), buf, buf}, // float for int
		{1, buf, 2},            // int for a pointer
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("checkArgs(add_inplace, %v) did not panic", bad)
				}
			}()
			checkArgs("add_inplace", bad)
		}()
	}
	sig := signatures()["dropout_forward"]
	if string(sig) != "iffuppp" {
		t.Errorf("dropout_forward's parameters parse as %q; want iffuppp", sig)
	}
}
