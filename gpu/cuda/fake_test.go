package cuda

import (
	"slices"
	"testing"
	"unsafe"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/kernels"
)

// fakeDevice is a Device over a driver made of Go functions: launches are
// recorded, not run. It checks what can be checked without a GPU: that
// every kernel-backed operation launches the kernels it should, with
// arguments that match their CUDA signatures.
func fakeDevice(t *testing.T) (*Device, *[]string) {
	t.Helper()
	var launched []string
	names := map[uintptr]string{}
	gc := &gpuContext{funcs: map[string]uintptr{}, info: Info{SMs: 2}}
	for _, s := range kernels.Sources() {
		for _, k := range kernels.Kernels(s.Code) {
			h := uintptr(len(names) + 1)
			gc.funcs[k], names[h] = h, k
		}
	}
	drv := &driver{
		cuCtxSetCurrent: func(uintptr) Result { return 0 },
		cuLaunchKernel: func(f uintptr, gx, gy, gz, bx, by, bz, shmem uint32, stream uintptr, params, extra unsafe.Pointer) Result {
			if gx == 0 || bx == 0 || bx > 1024 || params == nil {
				t.Errorf("launch of %s with grid %d block %d params %v", names[f], gx, bx, params)
			}
			launched = append(launched, names[f])
			return 0
		},
	}
	return &Device{name: "cuda:fake", drv: drv, gc: gc}, &launched
}

func TestOpsLaunchKernels(t *testing.T) {
	d, launched := fakeDevice(t)
	b := func(n int) gpu.Buffer { return &Buffer{dev: d, ptr: 0x10000, n: n} }
	const n = 4096
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
		{"Augment", func() error {
			return d.Augment(b(n), b(n), b(n), b(n), gpu.AugmentShape{N: 2, C: 3, Size: 8, Crop: 5})
		}, []string{"augment"}},
		{"ReLU of nothing", func() error { return d.ReLU(b(n), b(n), 0) }, nil},
	}
	for _, c := range cases {
		*launched = nil
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
		if !slices.Equal(*launched, c.want) {
			t.Errorf("%s launched %q; want %q", c.op, *launched, c.want)
		}
	}
}

func TestCheckArgs(t *testing.T) {
	d, _ := fakeDevice(t)
	buf := &Buffer{dev: d, n: 1}
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
