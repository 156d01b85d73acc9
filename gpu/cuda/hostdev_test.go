package cuda

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/bf16"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/gpu/gputest"
)

var update = flag.Bool("update", false, "rewrite testdata/hostcalls.golden with the calls made")

// hostConfigs are the block sizes and GPU sizes the host GPU runs the
// conformance suite at: the block size ops.go uses, and smaller ones (the
// reductions need a power of two); one multiprocessor caps a grid-stride
// kernel's grid at 32 blocks, so the big cases loop.
var hostConfigs = []struct {
	block, sms int
}{
	{256, 1},
	{64, 2},
	{32, 1},
}

// The conformance suite on the real Device over the host GPU: every
// operation through the code a GPU runs, the kernels launched with the
// arguments ops.go passes and run with every thread of every block, the
// cuBLAS and cuDNN calls computed from their arguments as documented.
// Mistakes it was seen to fail on: α and β, or y and x, swapped in the
// lrn_forward launch; y and x swapped in add_inplace's; SGEMM's transposes
// swapped; padding and stride swapped, or CUDNN_CONVOLUTION for
// cross-correlation, in the convolution descriptor; a __syncthreads
// dropped from bias_backward's tree; N+1 images passed to lrn_forward;
// round_bf16 truncating instead of rounding to nearest even.
func TestConformanceOnHostGPU(t *testing.T) {
	k := loadHostKernels(t)
	for _, c := range hostConfigs {
		t.Run(fmt.Sprintf("block%d_sms%d", c.block, c.sms), func(t *testing.T) {
			defer func(b int) { threads = b }(threads)
			threads = c.block
			g := newHostGPU(t, k, c.sms)
			d := g.open(Options{})
			gputest.Run(t, d)
			// The bf16 precision over the same device: round_bf16 after
			// each op, and the float32 kernels on bf16 values.
			t.Run("bf16", func(t *testing.T) { gputest.RunBF16(t, bf16.Wrap(d)) })
			g.checkAllLaunched(t)
		})
	}
}

// Deterministic picks another cuDNN algorithm; the results stay right.
func TestConformanceOnHostGPUDeterministic(t *testing.T) {
	k := loadHostKernels(t)
	g := newHostGPU(t, k, 2)
	gputest.Run(t, g.open(Options{Deterministic: true}))
}

// Two logical devices on the host GPU, and one with a CPU device.
func TestConformancePairOnHostGPU(t *testing.T) {
	k := loadHostKernels(t)
	g := newHostGPU(t, k, 2)
	a, b := g.open(Options{}), g.open(Options{})
	gputest.RunPair(t, a, b)
	gputest.RunPair(t, a, cpu.New(cpu.Options{Index: 1, Threads: 1}))
}

const goldenHeader = `# The cuBLAS and cuDNN calls and kernel launches of each operation of the
# CUDA Device, recorded by TestLibraryCalls (hostdev_test.go) on the host
# GPU. Regenerate with go test ./gpu/cuda -run TestLibraryCalls -update and
# review the diff against the cuBLAS and cuDNN API references.
#
# cublasSgemm_v2 is column-major: a row-major matrix is its transpose, so
# row-major C (m×n) = op(A)·op(B) is called as Cᵀ = op(B)ᵀ·op(A)ᵀ, with m
# and n, and A and B, swapped. Linear, y (N×Out) = x (N×In)·wᵀ: T, N,
# m=Out, n=N, k=In, A=w (lda=In), B=x (ldb=In), C=y (ldc=Out).
# Buffers are named by the test (x, w, …) or memK (the K-th allocation).
`

// TestLibraryCalls records the cuBLAS and cuDNN calls, with their
// descriptors and arguments, and the kernel launches, with their
// arguments, that opening a device and each operation make, and compares
// them with testdata/hostcalls.golden (go test -run TestLibraryCalls
// -update rewrites it: review the diff against the libraries' documents).
// It needs no compiler: the kernels are not run.
func TestLibraryCalls(t *testing.T) {
	g := newHostGPU(t, nil, 2)
	var out strings.Builder
	section := func(title string) {
		fmt.Fprintf(&out, "\n== %s\n", title)
		for _, c := range g.takeCalls() {
			fmt.Fprintln(&out, c)
		}
	}
	d := g.open(Options{})
	section("Open")
	cur := d
	buf := func(name string, n int) gpu.Buffer {
		b, err := cur.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		g.nameBuffer(b, name)
		return b
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// A convolution with H ≠ W, R ≠ S, stride 2 and padding 1.
	cs := gpu.ConvShape{N: 2, C: 3, H: 9, W: 8, K: 4, R: 3, S: 2, Stride: 2, Pad: 1}
	x, w, y := buf("x", cs.XLen()), buf("w", cs.WLen()), buf("y", cs.YLen())
	dx, dw, dy := buf("dx", cs.XLen()), buf("dw", cs.WLen()), buf("dy", cs.YLen())
	must(d.Conv(y, x, w, cs))
	section(fmt.Sprintf("Conv %+v", cs))
	must(d.ConvBackwardData(dx, dy, w, cs))
	section("ConvBackwardData")
	must(d.ConvBackwardFilter(dw, dy, x, cs))
	section("ConvBackwardFilter")
	must(d.Conv(y, x, w, cs))
	section("Conv again: the plan and algorithm are kept")

	ls := gpu.LinearShape{N: 3, In: 5, Out: 4}
	lx, lw, lb, ly := buf("lx", ls.N*ls.In), buf("lw", ls.Out*ls.In), buf("lb", ls.Out), buf("ly", ls.N*ls.Out)
	ldx, ldw, ldb, ldy := buf("ldx", ls.N*ls.In), buf("ldw", ls.Out*ls.In), buf("ldb", ls.Out), buf("ldy", ls.N*ls.Out)
	must(d.Linear(ly, lx, lw, lb, ls))
	section(fmt.Sprintf("Linear %+v", ls))
	must(d.LinearBackwardData(ldx, ldy, lw, ls))
	section("LinearBackwardData")
	must(d.LinearBackwardWeights(ldw, ldb, ldy, lx, ls))
	section("LinearBackwardWeights")

	const n = 1000
	a, b2, c, e := buf("a", n), buf("b", n), buf("c", n), buf("e", n)
	bs := gpu.BiasShape{N: 2, C: 5, Inner: 7}
	must(d.AddBias(a, b2, bs))
	section(fmt.Sprintf("AddBias(a, b) %+v", bs))
	must(d.BiasBackward(a, b2, bs))
	section("BiasBackward(db=a, dy=b)")
	must(d.ReLU(a, b2, 600))
	section("ReLU(y=a, x=b, 600)")
	must(d.ReLUBackward(a, b2, c, 600))
	section("ReLUBackward(dx=a, dy=b, y=c, 600)")
	must(d.Tanh(a, b2, 600))
	section("Tanh(y=a, x=b, 600)")
	must(d.TanhBackward(a, b2, c, 600))
	section("TanhBackward(dx=a, dy=b, y=c, 600)")
	lrn := gpu.LRNShape{N: 2, C: 6, H: 3, W: 5, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2}
	must(d.LRN(a, b2, lrn))
	section(fmt.Sprintf("LRN(y=a, x=b) %+v", lrn))
	must(d.LRNBackward(a, b2, c, e, lrn))
	section("LRNBackward(dx=a, dy=b, x=c, y=e)")
	ps := gpu.PoolShape{N: 2, C: 3, H: 9, W: 7, Size: 3, Stride: 2}
	must(d.MaxPool(a, b2, ps))
	section(fmt.Sprintf("MaxPool(y=a, x=b) %+v", ps))
	must(d.MaxPoolBackward(a, b2, c, e, ps))
	section("MaxPoolBackward(dx=a, dy=b, x=c, y=e)")
	ds := gpu.DropoutShape{N: 600, P: 0.25, Seed: 12345678901}
	must(d.Dropout(a, b2, c, ds))
	section(fmt.Sprintf("Dropout(y=a, mask=b, x=c) %+v", ds))
	must(d.DropoutBackward(a, b2, c, 600))
	section("DropoutBackward(dx=a, dy=b, mask=c, 600)")
	ss := gpu.SoftmaxShape{N: 6, Classes: 10}
	must(d.SoftmaxCrossEntropy(a, b2, c, e, ss))
	section(fmt.Sprintf("SoftmaxCrossEntropy(prob=a, loss=b, logits=c, labels=e) %+v", ss))
	must(d.SoftmaxCrossEntropyBackward(a, b2, c, ss))
	section("SoftmaxCrossEntropyBackward(dlogits=a, prob=b, labels=c)")
	must(d.Add(a, b2, 600))
	section("Add(y=a, x=b, 600)")
	cc := gpu.ConcatShape{N: 3, Sizes: []int{4, 7}}
	must(d.Concat(a, []gpu.Buffer{b2, c}, cc))
	section(fmt.Sprintf("Concat(a, [b, c]) %+v", cc))
	must(d.Split([]gpu.Buffer{b2, c}, a, cc))
	section("Split([b, c], a)")
	sg := gpu.SGDShape{N: 600, LR: 0.01, Momentum: 0.9, WeightDecay: 5e-4}
	must(d.SGD(a, b2, c, sg))
	section(fmt.Sprintf("SGD(w=a, v=b, dw=c) %+v", sg))
	ms := gpu.SGDMultiShape{Sizes: []int{600, 0, 7}, WeightDecays: []float32{5e-4, 0, 0.25}, LR: 0.01, Momentum: 0.9}
	must(d.SGDMulti([]gpu.Buffer{a, b2, c}, []gpu.Buffer{b2, c, e}, []gpu.Buffer{c, e, a}, ms))
	section(fmt.Sprintf("SGDMulti(ws=[a, b, c], vs=[b, c, e], dws=[c, e, a]) %+v: the table's upload, one launch", ms))
	must(d.BiasReLU(a, b2, bs))
	section(fmt.Sprintf("BiasReLU(a, b) %+v: one launch", bs))
	must(d.ReLUBiasBackward(a, b2, c, e, bs))
	section("ReLUBiasBackward(dx=a, db=b, dy=c, y=e): one launch")
	must(d.ReLULRN(a, b2, lrn))
	section("ReLULRN(y=a, x=b)")
	must(d.ReLULRNBackward(a, b2, c, e, lrn))
	section("ReLULRNBackward(dx=a, dy=b, x=c, y=e)")
	must(d.LinearReLU(ly, lx, lw, lb, ls))
	section("LinearReLU: the product, then bias and ReLU in one launch")
	must(d.LinearReLUBackward(ldx, ldw, ldb, ldy, lx, lw, ly, ls))
	section("LinearReLUBackward: dReLU and the bias gradient in one launch, then dw and dx")
	must(d.LinearReLUBackward(nil, ldw, ldb, ldy, lx, lw, ly, ls))
	section("LinearReLUBackward without dx")
	as := gpu.AugmentShape{N: 2, C: 3, Size: 8, Crop: 5}
	must(d.Augment(a, b2, c, e, as))
	section(fmt.Sprintf("Augment(dst=a, src=b, mean=c, params=e) %+v", as))
	must(d.VendorLRN(a, b2, lrn))
	section("VendorLRN(y=a, x=b): cuDNN's, for bench kernels; alpha·Size")
	must(d.VendorLRNBackward(a, b2, c, e, lrn))
	section("VendorLRNBackward(dx=a, dy=b, x=c, y=e)")
	must(d.VendorMaxPool(a, b2, ps))
	section("VendorMaxPool(y=a, x=b)")
	must(d.VendorMaxPoolBackward(a, b2, c, e, ps))
	section("VendorMaxPoolBackward(dx=a, dy=b, x=c, y=e)")
	must(d.RoundBF16(a, b2, 600))
	section("RoundBF16(y=a, x=b, 600)")
	bd := bf16.Wrap(d)
	must(bd.Conv(y, x, w, cs))
	section("bf16: Conv: x and w rounded into working copies (new buffers), the float32 convolution on them, y rounded in place")
	must(bd.ConvBackwardData(dx, dy, w, cs))
	section("bf16: ConvBackwardData: w rounded into its working copy again (SGD may have changed it), dx rounded")
	must(bd.ConvBackwardFilter(dw, dy, x, cs))
	section("bf16: ConvBackwardFilter: x rounded into its working copy; dw stays float32")
	must(bd.Linear(ly, lx, lw, lb, ls))
	section("bf16: Linear: x, w and b rounded into working copies, y rounded")
	must(d.Close())
	section("Close")

	for _, o := range []Options{{TF32: true}, {Deterministic: true}} {
		d := g.open(o)
		cur = d
		x, w, y := buf("x", cs.XLen()), buf("w", cs.WLen()), buf("y", cs.YLen())
		must(d.Conv(y, x, w, cs))
		must(d.Linear(ly, lx, lw, lb, ls))
		section(fmt.Sprintf("Open %+v, Conv, Linear", o))
	}

	g.checkAllLaunched(t)
	path := filepath.Join("testdata", "hostcalls.golden")
	got := goldenHeader + out.String()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run TestLibraryCalls -update writes it)", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		shown := 0
		for i := range max(len(gl), len(wl)) {
			var a, b string
			if i < len(gl) {
				a = gl[i]
			}
			if i < len(wl) {
				b = wl[i]
			}
			if a != b {
				if shown++; shown <= 10 {
					t.Errorf("line %d:\n got  %s\n want %s", i+1, a, b)
				}
			}
		}
		t.Errorf("the calls differ from %s in %d lines (after a reviewed change: go test -run TestLibraryCalls -update)", path, shown)
	}
}
