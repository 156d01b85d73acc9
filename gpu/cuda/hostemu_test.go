package cuda_test

import (
	_ "embed"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/kernels"
)

//go:embed testdata/hostemu.cpp
var hostemu string

// TestKernelsOnHost compiles the kernels of package kernels as C++ with a
// shim (testdata/hostemu.cpp), runs them single-threaded on the host, and
// checks them against the CPU device: bit for bit where the CPU device
// rounds in the same order (pooling with ties, dropout's mask, SGD,
// softmax, augmentation, bias, ReLU, concat), to float32 tolerance
// elsewhere. It checks the kernels' math and indexing without a GPU; what
// it cannot check (NVRTC, launches, parallel reductions) the conformance
// suite does on one. It skips without a C++ compiler.
func TestKernelsOnHost(t *testing.T) {
	cxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("no g++ to compile the kernels for the host")
	}
	dir := t.TempDir()
	for _, s := range kernels.Sources() {
		if err := os.WriteFile(filepath.Join(dir, s.Name), []byte(s.Code), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "hostemu.cpp"), []byte(hostemu), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cxx, "-O1", "-ffp-contract=off", "-o", filepath.Join(dir, "hostemu"), filepath.Join(dir, "hostemu.cpp")).CombinedOutput(); err != nil {
		t.Fatalf("g++: %v\n%s", err, out)
	}

	h := &hostRun{t: t, dir: dir, rng: rand.New(rand.NewPCG(1, 2)), d: cpu.New(cpu.Options{Threads: 1})}
	lx, ldy := h.input("lrn_x", h.normal(210)), h.input("lrn_dy", h.normal(210))
	l2x, l2dy := h.input("lrn2_x", h.normal(36)), h.input("lrn2_dy", h.normal(36))
	ca, cb := h.input("cat_a", h.normal(12)), h.input("cat_b", h.normal(6))
	ax, ady := h.input("act_x", h.normal(50)), h.input("act_dy", h.normal(50))
	px := make([]float32, 3*81)
	for i := range px {
		px[i] = float32(h.rng.IntN(3)) // ties everywhere
	}
	h.input("pool_x", px)
	pdy := h.input("pool_dy", h.normal(48))
	dx := h.input("drop_x", h.normal(1000))
	sw, sv, sg := h.input("sgd_w", h.normal(100)), h.input("sgd_v", h.normal(100)), h.input("sgd_g", h.normal(100))
	z := h.normal(30)
	z[3] = 80 // e^80 overflows float32
	h.input("sm_z", z)
	sl := h.input("sm_l", []float32{3, 0, 9})
	bdy, bb := h.input("bias_dy", h.normal(48)), h.input("bias_b", h.normal(4))
	raw := make([]uint8, 2*3*64)
	for i := range raw {
		raw[i] = uint8(h.rng.IntN(256))
	}
	asrc := h.input("aug_src", gpu.PackBytes(raw))
	amean := h.input("aug_mean", h.normal(3*64))
	apar := h.input("aug_par", []float32{1, 3, 0, 0.5, -0.25, 1.5, 3, 0, 1, -1, 2, 0.125})

	run := exec.Command(filepath.Join(dir, "hostemu"))
	run.Dir = dir
	if out, err := run.CombinedOutput(); err != nil {
		t.Fatalf("hostemu: %v\n%s", err, out)
	}

	d := h.d
	ls := gpu.LRNShape{N: 2, C: 7, H: 3, W: 5, Size: 5, Alpha: 1e-2, Beta: 0.75, K: 2}
	ly, ldx := h.out(210), h.out(210)
	must(t, d.LRN(ly, h.buf(lx), ls), d.LRNBackward(ldx, h.buf(ldy), h.buf(lx), ly, ls))
	h.check("lrn_y", ly, 1e-6)
	h.check("lrn_dx", ldx, 1e-5)
	ls2 := gpu.LRNShape{N: 1, C: 6, H: 2, W: 3, Size: 3, Alpha: 0.5, Beta: 0.75, K: 1}
	l2y, l2dx := h.out(36), h.out(36)
	must(t, d.LRN(l2y, h.buf(l2x), ls2), d.LRNBackward(l2dx, h.buf(l2dy), h.buf(l2x), l2y, ls2))
	h.check("lrn2_y", l2y, 1e-6)
	h.check("lrn2_dx", l2dx, 1e-5)

	cs := gpu.ConcatShape{N: 3, Sizes: []int{4, 2}}
	cd, ca2, cb2 := h.out(18), h.out(12), h.out(6)
	must(t, d.Concat(cd, []gpu.Buffer{h.buf(ca), h.buf(cb)}, cs), d.Split([]gpu.Buffer{ca2, cb2}, cd, cs))
	h.check("cat_d", cd, 0)
	h.check("cat_a2", ca2, 0)
	h.check("cat_b2", cb2, 0)

	ry, rdx, ty, tdx := h.out(50), h.out(50), h.out(50), h.out(50)
	must(t, d.ReLU(ry, h.buf(ax), 50), d.ReLUBackward(rdx, h.buf(ady), ry, 50), d.Tanh(ty, h.buf(ax), 50), d.TanhBackward(tdx, h.buf(ady), ty, 50))
	h.check("relu_y", ry, 0)
	h.check("relu_dx", rdx, 0)
	h.check("tanh_y", ty, 1e-6)
	h.check("tanh_dx", tdx, 1e-6)

	ps := gpu.PoolShape{N: 1, C: 3, H: 9, W: 9, Size: 3, Stride: 2}
	py, pdx := h.out(48), h.out(243)
	must(t, d.MaxPool(py, h.buf(px), ps), d.MaxPoolBackward(pdx, h.buf(pdy), h.buf(px), py, ps))
	h.check("pool_y", py, 0)
	h.check("pool_dx", pdx, 0)

	dy, dm := h.out(1000), h.out(1000)
	must(t, d.Dropout(dy, dm, h.buf(dx), gpu.DropoutShape{N: 1000, P: 0.3, Seed: 12345678901}))
	h.check("drop_y", dy, 0)
	h.check("drop_m", dm, 0)

	w, v := h.buf(sw), h.buf(sv)
	must(t, d.SGD(w, v, h.buf(sg), gpu.SGDShape{N: 100, LR: 0.01, Momentum: 0.9, WeightDecay: 5e-4}))
	h.check("sgd_w2", w, 0)
	h.check("sgd_v2", v, 0)

	ss := gpu.SoftmaxShape{N: 3, Classes: 10}
	p, l, dz := h.out(30), h.out(3), h.out(30)
	must(t, d.SoftmaxCrossEntropy(p, l, h.buf(z), h.buf(sl), ss), d.SoftmaxCrossEntropyBackward(dz, p, h.buf(sl), ss))
	h.check("sm_p", p, 0)
	h.check("sm_loss", l, 0)
	h.check("sm_dz", dz, 0)

	bs := gpu.BiasShape{N: 2, C: 4, Inner: 6}
	db, by := h.out(4), h.buf(bdy)
	must(t, d.BiasBackward(db, h.buf(bdy), bs), d.AddBias(by, h.buf(bb), bs))
	h.check("bias_db", db, 1e-7)
	h.check("bias_y", by, 0)

	ad := h.out(150)
	must(t, d.Augment(ad, h.buf(asrc), h.buf(amean), h.buf(apar), gpu.AugmentShape{N: 2, C: 3, Size: 8, Crop: 5}))
	h.check("aug_dst", ad, 0)
}

// hostRun holds the files of one TestKernelsOnHost run.
type hostRun struct {
	t   *testing.T
	dir string
	rng *rand.Rand
	d   *cpu.Device
}

func (h *hostRun) normal(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(h.rng.NormFloat64())
	}
	return v
}

// input writes v as the kernels' input file name and returns it.
func (h *hostRun) input(name string, v []float32) []float32 {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	if err := os.WriteFile(filepath.Join(h.dir, name), b, 0o644); err != nil {
		h.t.Fatal(err)
	}
	return v
}

func (h *hostRun) buf(v []float32) gpu.Buffer {
	b, _ := h.d.Alloc(len(v))
	must(h.t, h.d.Upload(b, v))
	return b
}

func (h *hostRun) out(n int) gpu.Buffer { b, _ := h.d.Alloc(n); return b }

// check compares the kernels' output file name with the CPU device's
// result want: |got − want| ≤ tol·(1 + |want|), at most 10 mismatches
// listed.
func (h *hostRun) check(name string, want gpu.Buffer, tol float64) {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, name))
	if err != nil {
		h.t.Fatal(err)
	}
	w := make([]float32, want.Len())
	must(h.t, h.d.Download(w, want))
	if len(b) != 4*len(w) {
		h.t.Fatalf("%s: %d values from the kernel, %d from the CPU device", name, len(b)/4, len(w))
	}
	bad := 0
	for i, x := range w {
		got := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		e := math.Abs(float64(got) - float64(x))
		if !(e <= tol*(1+math.Abs(float64(x)))) && !(math.IsNaN(float64(got)) && math.IsNaN(float64(x))) {
			if bad++; bad <= 10 {
				h.t.Errorf("%s[%d] = %v on the host-run kernel, %v on the CPU device", name, i, got, x)
			}
		}
	}
	if bad > 10 {
		h.t.Errorf("%s: %d mismatches in all", name, bad)
	}
}

func must(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(fmt.Sprint(err))
		}
	}
}
