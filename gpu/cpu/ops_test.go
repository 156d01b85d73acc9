package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/ebitengine/purego"
)

// Each op is checked against a float64 reference written from the formula
// in its doc comment, on every backend (the loaded BLAS and gonum) and
// several thread counts, with the parallel grains lowered to 1 so that
// small shapes take the parallel paths too, and with the convolutions'
// blocks of images made small so that they take several.

// testDevices returns devices of 1, 2 and 3 threads on the loaded BLAS and
// on gonum, splitting work as finely as they can.
func testDevices() []*Device {
	libs := []*blasLib{loadedBLAS()}
	if !strings.HasPrefix(loadedBLAS().desc, "gonum") {
		libs = append(libs, gonumBLAS("test"))
	}
	var devs []*Device
	for _, lib := range libs {
		for _, t := range []int{1, 2, 3} {
			devs = append(devs, testDevice(t, lib))
		}
	}
	return devs
}

func testDevice(threads int, lib *blasLib) *Device {
	d := New(Options{Threads: threads})
	d.blas, d.grainFLOPs, d.grainElems = lib, 1, 1
	// Blocks of a few images: TestDeterminism's shape takes two of three.
	d.colBudget = 40000
	// Products split into blocks of 16 and more.
	d.gemmTile = 16
	return d
}

// forDevices runs fn as a subtest per device.
func forDevices(t *testing.T, fn func(t *testing.T, d *Device)) {
	for _, d := range testDevices() {
		name := fmt.Sprintf("%s/threads=%d", strings.Fields(d.blas.desc)[0], d.threads)
		t.Run(name, func(t *testing.T) { fn(t, d) })
	}
}

func randSlice(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 2*r.Float32() - 1
	}
	return v
}

func upload(t testing.TB, d *Device, v []float32) gpu.Buffer {
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

// alloc returns a buffer of n values filled with NaN, so that a value an
// op forgets to write fails the comparison.
func alloc(t testing.TB, d *Device, n int) gpu.Buffer {
	t.Helper()
	b, err := d.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	d.Fill(b, float32(math.NaN()))
	return b
}

func data(b gpu.Buffer) []float32 { return b.(*Buffer).Data() }

func f64(v []float32) []float64 {
	w := make([]float64, len(v))
	for i, x := range v {
		w[i] = float64(x)
	}
	return w
}

// closeTo fails t unless |got−want| ≤ atol + rtol·|want| everywhere,
// listing the first 10 mismatches.
func closeTo(t testing.TB, name string, got []float32, want []float64, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	var bad []string
	n := 0
	for i, g := range got {
		w := want[i]
		if d := math.Abs(float64(g) - w); !(d <= atol+rtol*math.Abs(w)) {
			n++
			if len(bad) < 10 {
				bad = append(bad, fmt.Sprintf("  [%d] got %.9g, want %.9g", i, g, w))
			}
		}
	}
	if n > 0 {
		t.Errorf("%s: %d of %d values differ:\n%s", name, n, len(got), strings.Join(bad, "\n"))
	}
}

func TestParallelFor(t *testing.T) {
	for _, n := range []int{0, 1, 2, 5, 17, 100} {
		for _, threads := range []int{1, 2, 3, 8, 200} {
			hits := make([]int, n)
			workers := make([]bool, threads)
			parallelWorkers(n, threads, func(w, lo, hi int) {
				workers[w] = true
				for i := lo; i < hi; i++ {
					hits[i]++
				}
			})
			for i, h := range hits {
				if h != 1 {
					t.Fatalf("n=%d threads=%d: index %d visited %d times", n, threads, i, h)
				}
			}
			if used := len(slices.DeleteFunc(workers, func(b bool) bool { return !b })); used > min(n, threads) {
				t.Errorf("n=%d threads=%d: %d workers", n, threads, used)
			}
		}
	}
}

func TestBLAS(t *testing.T) {
	desc := BLAS()
	t.Logf("BLAS() = %q", desc)
	if !strings.HasPrefix(desc, "OpenBLAS") && !strings.HasPrefix(desc, "gonum (") && !strings.HasPrefix(desc, "CBLAS") {
		t.Errorf("BLAS() = %q: names no implementation", desc)
	}
	if path := os.Getenv(BLASEnv); path != "" {
		// The child of the test below: the override must be obeyed.
		if _, err := os.Stat(path); err != nil && !strings.HasPrefix(desc, "gonum ("+BLASEnv+"="+path) {
			t.Errorf("%s=%s: BLAS() = %q, want gonum naming the path", BLASEnv, path, desc)
		}
		return
	}
	// The environment variable, in a fresh process since loading is once.
	cmd := exec.Command(os.Args[0], "-test.run=^TestBLAS$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), BLASEnv+"=/nonexistent")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `BLAS() = "gonum (`+BLASEnv+`=/nonexistent`) {
		t.Errorf("child with %s=/nonexistent: %v\n%s", BLASEnv, err, out)
	}

	// OpenBLAS must run single-threaded: the device brings the threads.
	if h := loadedBLAS().handle; h != 0 {
		if p, err := purego.Dlsym(h, "openblas_get_num_threads"); err == nil {
			var get func() int32
			purego.RegisterFunc(&get, p)
			if n := get(); n != 1 {
				t.Errorf("openblas_get_num_threads() = %d, want 1", n)
			}
		}
	}

	lib := loadBLAS("/nonexistent/libopenblas.so")
	if !strings.HasPrefix(lib.desc, "gonum (") || !strings.Contains(lib.desc, "/nonexistent/libopenblas.so") {
		t.Errorf("override with a missing path: %q, want gonum naming the path", lib.desc)
	}
	// A library without cblas_sgemm is refused, not a panic.
	if lib := loadBLAS("libm.so.6"); !strings.Contains(lib.desc, "cblas_sgemm") {
		t.Errorf("override with libm: %q, want a missing cblas_sgemm", lib.desc)
	}
}

// refGemm is C = alpha·op(A)·op(B) + beta·C in float64.
func refGemm(transA, transB bool, m, n, k int, alpha float64, a []float32, lda int, b []float32, ldb int, beta float64, c []float32, ldc int) []float64 {
	want := f64(c)
	for i := range m {
		for j := range n {
			var s float64
			for l := range k {
				ai, bi := i*lda+l, l*ldb+j
				if transA {
					ai = l*lda + i
				}
				if transB {
					bi = j*ldb + l
				}
				av, bv := a[ai], b[bi]
				s += float64(av) * float64(bv)
			}
			want[i*ldc+j] = alpha*s + beta*float64(c[i*ldc+j])
		}
	}
	return want
}

func TestSgemm(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, sz := range [][3]int{{1, 1, 1}, {7, 5, 3}, {33, 70, 19}, {100, 37, 65}, {5, 0, 3}, {4, 6, 0}} {
			m, n, k := sz[0], sz[1], sz[2]
			for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
				ta, tb := tr[0], tr[1]
				// Leading dimensions wider than the matrices.
				lda, ldb, ldc := k+2, n+1, n+3
				ar, br := m, k
				if ta {
					lda, ar = m+2, k
				}
				if tb {
					ldb, br = k+1, n
				}
				a, b := randSlice(r, ar*lda), randSlice(r, br*ldb)
				c := randSlice(r, m*ldc)
				for _, ab := range [][2]float32{{1, 0}, {0.5, -1.5}} {
					want := refGemm(ta, tb, m, n, k, float64(ab[0]), a, lda, b, ldb, float64(ab[1]), c, ldc)
					got := slices.Clone(c)
					d.Sgemm(ta, tb, m, n, k, ab[0], a, lda, b, ldb, ab[1], got, ldc)
					closeTo(t, fmt.Sprintf("%dx%dx%d ta=%v tb=%v alpha=%v beta=%v", m, n, k, ta, tb, ab[0], ab[1]), got, want, 1e-5, 1e-5)
				}
			}
		}
	})
}

func TestSgemmChecks(t *testing.T) {
	d := New(Options{Threads: 1})
	mustPanic(t, "short a", func() {
		d.Sgemm(false, false, 4, 4, 4, 1, make([]float32, 15), 4, make([]float32, 16), 4, 0, make([]float32, 16), 4)
	})
	mustPanic(t, "lda < k", func() {
		d.Sgemm(false, false, 4, 4, 4, 1, make([]float32, 16), 3, make([]float32, 16), 4, 0, make([]float32, 16), 4)
	})
}

func mustPanic(t *testing.T, name string, fn func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", name)
		}
	}()
	fn()
}

var convShapes = []gpu.ConvShape{
	{N: 3, C: 5, H: 9, W: 7, K: 4, R: 3, S: 2, Stride: 2, Pad: 1},
	{N: 2, C: 3, H: 11, W: 10, K: 6, R: 5, S: 5, Stride: 1, Pad: 2},
	{N: 4, C: 6, H: 5, W: 3, K: 7, R: 1, S: 1, Stride: 1, Pad: 0},
	{N: 1, C: 3, H: 27, W: 25, K: 5, R: 11, S: 11, Stride: 4, Pad: 0},
	{N: 5, C: 4, H: 6, W: 6, K: 3, R: 3, S: 3, Stride: 3, Pad: 2},
	{N: 2, C: 2, H: 4, W: 5, K: 3, R: 2, S: 3, Stride: 1, Pad: 3},
	{N: 7, C: 8, H: 10, W: 9, K: 5, R: 3, S: 3, Stride: 1, Pad: 1}, // test devices: blocks of 4 and 3 images
	// More filters than convFilterTransposeK: ConvBackwardFilter's direct
	// products, ten blocks of one image in eight groups, two of two blocks.
	{N: 10, C: 4, H: 8, W: 7, K: 70, R: 3, S: 3, Stride: 1, Pad: 1},
	// Few filters: the transposed products, in the same groups.
	{N: 10, C: 3, H: 6, W: 5, K: 6, R: 3, S: 3, Stride: 1, Pad: 1},
}

func at(s gpu.ConvShape, n, c, h, w int) int { return ((n*s.C+c)*s.H+h)*s.W + w }

// refConv is y[n,k,p,q] = Σ_{c,r,s} w[k,c,r,s]·x[n,c,p·Stride+r−Pad,
// q·Stride+s−Pad], with its two gradients for upstream gradient dy.
func refConv(x, w, dy []float32, s gpu.ConvShape) (y, dx, dw []float64) {
	P, Q := s.P(), s.Q()
	y, dx, dw = make([]float64, s.YLen()), make([]float64, s.XLen()), make([]float64, s.WLen())
	for n := range s.N {
		for k := range s.K {
			for p := range P {
				for q := range Q {
					yi := ((n*s.K+k)*P+p)*Q + q
					for c := range s.C {
						for r := range s.R {
							for t := range s.S {
								h, v := p*s.Stride+r-s.Pad, q*s.Stride+t-s.Pad
								if h < 0 || h >= s.H || v < 0 || v >= s.W {
									continue
								}
								wi, xi := ((k*s.C+c)*s.R+r)*s.S+t, at(s, n, c, h, v)
								y[yi] += float64(w[wi]) * float64(x[xi])
								dx[xi] += float64(w[wi]) * float64(dy[yi])
								dw[wi] += float64(x[xi]) * float64(dy[yi])
							}
						}
					}
				}
			}
		}
	}
	return y, dx, dw
}

func TestConv(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, s := range convShapes {
			x, w, dy := randSlice(r, s.XLen()), randSlice(r, s.WLen()), randSlice(r, s.YLen())
			wantY, wantDX, wantDW := refConv(x, w, dy, s)
			xb, wb, dyb := upload(t, d, x), upload(t, d, w), upload(t, d, dy)
			y, dx, dw := alloc(t, d, s.YLen()), alloc(t, d, s.XLen()), alloc(t, d, s.WLen())
			must(t, d.Conv(y, xb, wb, s))
			must(t, d.ConvBackwardData(dx, dyb, wb, s))
			must(t, d.ConvBackwardFilter(dw, dyb, xb, s))
			name := fmt.Sprintf("%+v", s)
			closeTo(t, name+" y", data(y), wantY, 1e-5, 1e-4)
			closeTo(t, name+" dx", data(dx), wantDX, 1e-5, 1e-4)
			closeTo(t, name+" dw", data(dw), wantDW, 1e-5, 1e-4)
		}
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDeterminism runs the backward passes twice on every device and
// requires bitwise-equal results, across thread counts too.
func TestDeterminism(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	// 30 images: ten blocks of three, eight groups of ConvBackwardFilter,
	// some of two blocks.
	s := gpu.ConvShape{N: 30, C: 8, H: 13, W: 11, K: 20, R: 3, S: 3, Stride: 1, Pad: 1}
	x, w, dy := randSlice(r, s.XLen()), randSlice(r, s.WLen()), randSlice(r, s.YLen())
	s2 := gpu.ConvShape{N: 9, C: 4, H: 8, W: 7, K: 70, R: 3, S: 3, Stride: 1, Pad: 1}
	x2, dy2 := randSlice(r, s2.XLen()), randSlice(r, s2.YLen())
	ls := gpu.LinearShape{N: 9, In: 70, Out: 45}
	lx, lw, ldy := randSlice(r, ls.N*ls.In), randSlice(r, ls.Out*ls.In), randSlice(r, ls.N*ls.Out)
	run := func(d *Device) [][]float32 {
		var out [][]float32
		xb, wb, dyb := upload(t, d, x), upload(t, d, w), upload(t, d, dy)
		y, dx, dw := alloc(t, d, s.YLen()), alloc(t, d, s.XLen()), alloc(t, d, s.WLen())
		must(t, d.Conv(y, xb, wb, s))
		must(t, d.ConvBackwardData(dx, dyb, wb, s))
		must(t, d.ConvBackwardFilter(dw, dyb, xb, s))
		// Many filters (ConvBackwardFilter's direct products), nine
		// blocks of one image, eight groups.
		bx, bdy := upload(t, d, x2), upload(t, d, dy2)
		dw2 := alloc(t, d, s2.WLen())
		must(t, d.ConvBackwardFilter(dw2, bdy, bx, s2))
		lxb, lwb, ldyb := upload(t, d, lx), upload(t, d, lw), upload(t, d, ldy)
		ldx, ldw, ldb := alloc(t, d, ls.N*ls.In), alloc(t, d, ls.Out*ls.In), alloc(t, d, ls.Out)
		must(t, d.LinearBackwardData(ldx, ldyb, lwb, ls))
		must(t, d.LinearBackwardWeights(ldw, ldb, ldyb, lxb, ls))
		for _, b := range []gpu.Buffer{y, dx, dw, ldx, ldw, ldb, dw2} {
			out = append(out, slices.Clone(data(b)))
		}
		return out
	}
	names := []string{"y", "dx", "dw", "linear dx", "linear dw", "linear db", "dw, many filters"}

	// With fewer images than threads, the one image's products are split
	// over the threads: the same bits again, on a rerun and across counts.
	small := gpu.ConvShape{N: 1, C: 9, H: 20, W: 20, K: 40, R: 3, S: 3, Stride: 1, Pad: 1}
	sx, sw, sdy := randSlice(r, small.XLen()), randSlice(r, small.WLen()), randSlice(r, small.YLen())
	for _, devs := range [][]*Device{testDevices()[:3], testDevices()[3:]} {
		var first [][]float32
		for _, d := range devs {
			for rep := range 2 {
				y, dx, dw := alloc(t, d, small.YLen()), alloc(t, d, small.XLen()), alloc(t, d, small.WLen())
				must(t, d.Conv(y, upload(t, d, sx), upload(t, d, sw), small))
				must(t, d.ConvBackwardData(dx, upload(t, d, sdy), upload(t, d, sw), small))
				must(t, d.ConvBackwardFilter(dw, upload(t, d, sdy), upload(t, d, sx), small))
				got := [][]float32{data(y), data(dx), data(dw)}
				if first == nil {
					first = got
				}
				for i := range got {
					if !slices.Equal(got[i], first[i]) {
						t.Errorf("%s threads=%d N=1 run %d: %s differs bitwise from threads=1", d.blas.desc[:6], d.threads, rep, names[i])
					}
				}
			}
		}
	}

	for _, devs := range [][]*Device{testDevices()[:3], testDevices()[3:]} {
		if len(devs) == 0 {
			continue
		}
		first := run(devs[0])
		for _, d := range devs {
			for rep := range 2 {
				for i, got := range run(d) {
					if !slices.Equal(got, first[i]) {
						t.Errorf("%s threads=%d run %d: %s differs bitwise from threads=1", d.blas.desc[:6], d.threads, rep, names[i])
					}
				}
			}
		}
	}
}

// refLRN is y[c] = x[c]·(K + Alpha·Σ_{j=c−Size/2}^{c+Size/2} x[j]²)^−Beta
// and dx[c] = dy[c]·scale[c]^−β − 2αβ·x[c]·Σ_{j: c in window(j)}
// dy[j]·y[j]/scale[j], in float64.
func refLRN(x, dy []float64, s gpu.LRNShape) (y, dx []float64) {
	hw, half := s.H*s.W, s.Size/2
	alpha, beta, k := float64(s.Alpha), float64(s.Beta), float64(s.K)
	y, dx = make([]float64, len(x)), make([]float64, len(x))
	scale := make([]float64, len(x))
	idx := func(n, c, i int) int { return (n*s.C+c)*hw + i }
	for n := range s.N {
		for i := range hw {
			for c := range s.C {
				var sum float64
				for j := max(0, c-half); j <= min(s.C-1, c+half); j++ {
					sum += x[idx(n, j, i)] * x[idx(n, j, i)]
				}
				scale[idx(n, c, i)] = k + alpha*sum
				y[idx(n, c, i)] = x[idx(n, c, i)] * math.Pow(k+alpha*sum, -beta)
			}
			if dy == nil {
				continue
			}
			for c := range s.C {
				var sum float64
				for j := range s.C {
					if c >= j-half && c <= j+half {
						sum += dy[idx(n, j, i)] * y[idx(n, j, i)] / scale[idx(n, j, i)]
					}
				}
				ci := idx(n, c, i)
				dx[ci] = dy[ci]*math.Pow(scale[ci], -beta) - 2*alpha*beta*x[ci]*sum
			}
		}
	}
	return y, dx
}

var lrnShapes = []gpu.LRNShape{
	{N: 2, C: 7, H: 5, W: 3, Size: 5, Alpha: 1e-4 / 5, Beta: 0.75, K: 2},
	{N: 1, C: 9, H: 11, W: 13, Size: 3, Alpha: 0.5, Beta: 0.75, K: 1},
	{N: 3, C: 4, H: 2, W: 2, Size: 7, Alpha: 0.3, Beta: 0.6, K: 1.5},
	{N: 2, C: 3, H: 3, W: 3, Size: 1, Alpha: 0.2, Beta: 1, K: 1},
}

func TestLRN(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range lrnShapes {
		// Inputs of AlexNet's scale after conv1, where α·Σx² matters.
		x := randSlice(r, s.Len())
		for i := range x {
			x[i] *= 3
		}
		dy := randSlice(r, s.Len())
		wantY, wantDX := refLRN(f64(x), f64(dy), s)

		// The reference gradient itself against finite differences of the
		// reference forward pass, on a few coordinates.
		for _, i := range []int{0, s.Len() / 2, s.Len() - 1} {
			const h = 1e-4
			xp, xm := f64(x), f64(x)
			xp[i] += h
			xm[i] -= h
			yp, _ := refLRN(xp, nil, s)
			ym, _ := refLRN(xm, nil, s)
			var fd float64
			for j := range yp {
				fd += float64(dy[j]) * (yp[j] - ym[j]) / (2 * h)
			}
			if math.Abs(fd-wantDX[i]) > 1e-6+1e-6*math.Abs(fd) {
				t.Errorf("%+v: reference dx[%d] = %g, finite difference %g", s, i, wantDX[i], fd)
			}
		}

		forDevices(t, func(t *testing.T, d *Device) {
			xb, dyb := upload(t, d, x), upload(t, d, dy)
			y, dx := alloc(t, d, s.Len()), alloc(t, d, s.Len())
			must(t, d.LRN(y, xb, s))
			must(t, d.LRNBackward(dx, dyb, xb, y, s))
			closeTo(t, fmt.Sprintf("%+v y", s), data(y), wantY, 1e-6, 1e-5)
			closeTo(t, fmt.Sprintf("%+v dx", s), data(dx), wantDX, 1e-6, 1e-5)
		})
	}
}

func refMaxPool(x, dy []float32, s gpu.PoolShape) (y, dx []float64) {
	P, Q, hw := s.P(), s.Q(), s.H*s.W
	y, dx = make([]float64, s.YLen()), make([]float64, s.XLen())
	for pl := range s.N * s.C {
		for p := range P {
			for q := range Q {
				best := -1
				for r := range s.Size {
					for c := range s.Size {
						i := pl*hw + (p*s.Stride+r)*s.W + q*s.Stride + c
						if best < 0 || x[i] > x[best] {
							best = i
						}
					}
				}
				yi := (pl*P+p)*Q + q
				y[yi] = float64(x[best])
				dx[best] += float64(dy[yi])
			}
		}
	}
	return y, dx
}

func TestMaxPool(t *testing.T) {
	shapes := []gpu.PoolShape{
		{N: 2, C: 3, H: 9, W: 11, Size: 3, Stride: 2},
		{N: 1, C: 2, H: 7, W: 6, Size: 2, Stride: 2},
		{N: 3, C: 1, H: 5, W: 5, Size: 3, Stride: 1},
		{N: 1, C: 1, H: 4, W: 4, Size: 4, Stride: 3},
	}
	forDevices(t, func(t *testing.T, d *Device) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, s := range shapes {
			for _, ties := range []bool{false, true} {
				x, dy := randSlice(r, s.XLen()), randSlice(r, s.YLen())
				if ties {
					// Few distinct values: many windows hold their
					// maximum twice; the first in row-major order wins.
					for i := range x {
						x[i] = float32(r.IntN(3))
					}
				}
				wantY, wantDX := refMaxPool(x, dy, s)
				xb, dyb := upload(t, d, x), upload(t, d, dy)
				y, dx := alloc(t, d, s.YLen()), alloc(t, d, s.XLen())
				must(t, d.MaxPool(y, xb, s))
				must(t, d.MaxPoolBackward(dx, dyb, xb, y, s))
				name := fmt.Sprintf("%+v ties=%v", s, ties)
				closeTo(t, name+" y", data(y), wantY, 0, 0)
				closeTo(t, name+" dx", data(dx), wantDX, 1e-6, 1e-6)
			}
		}
	})
}

func TestLinear(t *testing.T) {
	shapes := []gpu.LinearShape{{N: 5, In: 37, Out: 23}, {N: 3, In: 8, Out: 100}, {N: 40, In: 19, Out: 6}, {N: 1, In: 1, Out: 1}}
	forDevices(t, func(t *testing.T, d *Device) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, s := range shapes {
			x, w, b, dy := randSlice(r, s.N*s.In), randSlice(r, s.Out*s.In), randSlice(r, s.Out), randSlice(r, s.N*s.Out)
			wantY, wantDX := make([]float64, s.N*s.Out), make([]float64, s.N*s.In)
			wantDW, wantDB := make([]float64, s.Out*s.In), make([]float64, s.Out)
			for n := range s.N {
				for o := range s.Out {
					wantY[n*s.Out+o] = float64(b[o])
					wantDB[o] += float64(dy[n*s.Out+o])
					for i := range s.In {
						wantY[n*s.Out+o] += float64(x[n*s.In+i]) * float64(w[o*s.In+i])
						wantDX[n*s.In+i] += float64(dy[n*s.Out+o]) * float64(w[o*s.In+i])
						wantDW[o*s.In+i] += float64(dy[n*s.Out+o]) * float64(x[n*s.In+i])
					}
				}
			}
			xb, wb, bb, dyb := upload(t, d, x), upload(t, d, w), upload(t, d, b), upload(t, d, dy)
			y, dx, dw, db := alloc(t, d, s.N*s.Out), alloc(t, d, s.N*s.In), alloc(t, d, s.Out*s.In), alloc(t, d, s.Out)
			must(t, d.Linear(y, xb, wb, bb, s))
			must(t, d.LinearBackwardData(dx, dyb, wb, s))
			must(t, d.LinearBackwardWeights(dw, db, dyb, xb, s))
			name := fmt.Sprintf("%+v", s)
			closeTo(t, name+" y", data(y), wantY, 1e-5, 1e-5)
			closeTo(t, name+" dx", data(dx), wantDX, 1e-5, 1e-5)
			closeTo(t, name+" dw", data(dw), wantDW, 1e-5, 1e-5)
			closeTo(t, name+" db", data(db), wantDB, 1e-6, 1e-6)
		}
	})
}

func TestSoftmaxCrossEntropy(t *testing.T) {
	s := gpu.SoftmaxShape{N: 7, Classes: 13}
	forDevices(t, func(t *testing.T, d *Device) {
		r := rand.New(rand.NewPCG(1, 2))
		z, labels := randSlice(r, s.N*s.Classes), make([]float32, s.N)
		for i := range z {
			z[i] *= 30
		}
		z[5] = 1000 // would overflow exp without the max subtracted
		z[2*s.Classes+3] = -1000
		for n := range labels {
			labels[n] = float32(r.IntN(s.Classes))
		}
		labels[2] = 3 // a probability of e^−1000: loss must still be finite
		wantP, wantL, wantG := make([]float64, s.N*s.Classes), make([]float64, s.N), make([]float64, s.N*s.Classes)
		for n := range s.N {
			row := f64(z[n*s.Classes : (n+1)*s.Classes])
			m := slices.Max(row)
			var sum float64
			for _, v := range row {
				sum += math.Exp(v - m)
			}
			for i, v := range row {
				wantP[n*s.Classes+i] = math.Exp(v-m) / sum
				wantG[n*s.Classes+i] = wantP[n*s.Classes+i] / float64(s.N)
			}
			l := int(labels[n])
			wantL[n] = math.Log(sum) - (row[l] - m)
			wantG[n*s.Classes+l] = (wantP[n*s.Classes+l] - 1) / float64(s.N)
		}
		zb, lb := upload(t, d, z), upload(t, d, labels)
		p, loss, g := alloc(t, d, s.N*s.Classes), alloc(t, d, s.N), alloc(t, d, s.N*s.Classes)
		must(t, d.SoftmaxCrossEntropy(p, loss, zb, lb, s))
		must(t, d.SoftmaxCrossEntropyBackward(g, p, lb, s))
		closeTo(t, "prob", data(p), wantP, 1e-7, 1e-5)
		closeTo(t, "loss", data(loss), wantL, 1e-6, 1e-6)
		closeTo(t, "dlogits", data(g), wantG, 1e-7, 1e-5)

		labels[4] = float32(s.Classes)
		if err := d.SoftmaxCrossEntropy(p, loss, zb, upload(t, d, labels), s); err == nil {
			t.Errorf("label %d of %d classes: no error", s.Classes, s.Classes)
		}
	})
}

func TestElementwise(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		r := rand.New(rand.NewPCG(1, 2))
		const n = 1001
		x, y0, dy := randSlice(r, n), randSlice(r, n), randSlice(r, n)
		xb, dyb := upload(t, d, x), upload(t, d, dy)

		y := upload(t, d, y0)
		must(t, d.Add(y, xb, n))
		want := make([]float64, n)
		for i := range want {
			want[i] = float64(y0[i] + x[i])
		}
		closeTo(t, "Add", data(y), want, 0, 0)

		must(t, d.ReLU(y, xb, n))
		for i := range want {
			want[i] = max(float64(x[i]), 0)
		}
		closeTo(t, "ReLU", data(y), want, 0, 0)
		must(t, d.ReLUBackward(dyb, dyb, y, n)) // in place
		for i := range want {
			want[i] = 0
			if x[i] > 0 {
				want[i] = float64(dy[i])
			}
		}
		closeTo(t, "ReLUBackward", data(dyb), want, 0, 0)

		bs := gpu.BiasShape{N: 3, C: 7, Inner: 11}
		bias, yb := randSlice(r, bs.C), randSlice(r, bs.Len())
		yBuf := upload(t, d, yb)
		must(t, d.AddBias(yBuf, upload(t, d, bias), bs))
		wantY, wantDB := make([]float64, bs.Len()), make([]float64, bs.C)
		for i := range wantY {
			c := i / bs.Inner % bs.C
			wantY[i] = float64(yb[i] + bias[c])
			wantDB[c] += float64(yb[i])
		}
		closeTo(t, "AddBias", data(yBuf), wantY, 0, 0)
		db := alloc(t, d, bs.C)
		must(t, d.BiasBackward(db, upload(t, d, yb), bs))
		closeTo(t, "BiasBackward", data(db), wantDB, 1e-6, 1e-6)

		sgd := gpu.SGDShape{N: n, LR: 0.01, Momentum: 0.9, WeightDecay: 0.0005}
		w, v, dw := randSlice(r, n), randSlice(r, n), randSlice(r, n)
		wb, vb := upload(t, d, w), upload(t, d, v)
		must(t, d.SGD(wb, vb, upload(t, d, dw), sgd))
		wantW, wantV := make([]float64, n), make([]float64, n)
		for i := range n {
			wantV[i] = float64(sgd.Momentum)*float64(v[i]) - float64(sgd.WeightDecay)*float64(sgd.LR)*float64(w[i]) - float64(sgd.LR)*float64(dw[i])
			wantW[i] = float64(w[i]) + wantV[i]
		}
		closeTo(t, "SGD v", data(vb), wantV, 1e-7, 1e-6)
		closeTo(t, "SGD w", data(wb), wantW, 1e-7, 1e-6)
	})
}

func TestDropout(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		r := rand.New(rand.NewPCG(1, 2))
		const n = 10000
		x, dy := randSlice(r, n), randSlice(r, n)
		xb := upload(t, d, x)
		for _, p := range []float32{0, 0.5, 0.25, 0.3, 1} {
			s := gpu.DropoutShape{N: n, P: p, Seed: 42}
			y, mask, dx := alloc(t, d, n), alloc(t, d, n), alloc(t, d, n)
			must(t, d.Dropout(y, mask, xb, s))
			must(t, d.DropoutBackward(dx, upload(t, d, dy), mask, n))
			wantM, wantY, wantDX := make([]float64, n), make([]float64, n), make([]float64, n)
			kept := 0
			for i := range n {
				if p == 0 || gpu.DropoutKeep(s.Seed, i, p) {
					wantM[i] = float64(1 / (1 - p))
					kept++
				}
				wantY[i], wantDX[i] = float64(x[i])*wantM[i], float64(dy[i])*wantM[i]
			}
			closeTo(t, fmt.Sprintf("P=%v mask", p), data(mask), wantM, 0, 0)
			closeTo(t, fmt.Sprintf("P=%v y", p), data(y), wantY, 0, 1e-7)
			closeTo(t, fmt.Sprintf("P=%v dx", p), data(dx), wantDX, 0, 1e-7)
			if got, want := float64(kept)/n, 1-float64(p); math.Abs(got-want) > 0.02 {
				t.Errorf("P=%v: kept %.3f, want about %.3f", p, got, want)
			}
		}
	})
}

// TestDropoutThreshold checks the threshold Dropout compares its random
// bits with against gpu.DropoutKeep's own comparison, u·2⁻²⁴ ≥ p, on both
// sides of the threshold, for p that make p·2²⁴ whole and not.
func TestDropoutThreshold(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ps := []float32{0, 1, 0.5, 0.3, 0.1, 1e-9, math.Nextafter32(1, 0)}
	for range 10000 {
		ps = append(ps, r.Float32())
	}
	keep := func(u uint64, p float32) bool { return float32(u)*(1.0/(1<<24)) >= p }
	for _, p := range ps {
		th := dropoutThreshold(p)
		if th > 1<<24 {
			t.Fatalf("p=%v: threshold %d past 2²⁴", p, th)
		}
		if th < 1<<24 && !keep(th, p) {
			t.Errorf("p=%v: bits %d at the threshold are dropped by DropoutKeep's test", p, th)
		}
		if th > 0 && keep(th-1, p) {
			t.Errorf("p=%v: bits %d below the threshold are kept by DropoutKeep's test", p, th-1)
		}
	}
}

func TestConcatSplit(t *testing.T) {
	forDevices(t, func(t *testing.T, d *Device) {
		r := rand.New(rand.NewPCG(1, 2))
		s := gpu.ConcatShape{N: 5, Sizes: []int{3, 0, 7, 2}}
		var srcs []gpu.Buffer
		var parts [][]float32
		for _, k := range s.Sizes {
			v := randSlice(r, s.N*k)
			parts, srcs = append(parts, v), append(srcs, upload(t, d, v))
		}
		dst := alloc(t, d, s.N*s.Row())
		must(t, d.Concat(dst, srcs, s))
		var want []float64
		for n := range s.N {
			for i, k := range s.Sizes {
				want = append(want, f64(parts[i][n*k:(n+1)*k])...)
			}
		}
		closeTo(t, "Concat", data(dst), want, 0, 0)
		outs := make([]gpu.Buffer, len(s.Sizes))
		for i, k := range s.Sizes {
			outs[i] = alloc(t, d, s.N*k)
		}
		must(t, d.Split(outs, dst, s))
		for i := range outs {
			closeTo(t, fmt.Sprintf("Split %d", i), data(outs[i]), f64(parts[i]), 0, 0)
		}
	})
}

func TestMemory(t *testing.T) {
	a, b := New(Options{Index: 0, Threads: 1}), New(Options{Index: 1, Threads: 1})
	if a.Name() != "cpu:0" || b.Name() != "cpu:1" {
		t.Errorf("names %q, %q", a.Name(), b.Name())
	}
	if _, err := a.Alloc(-1); err == nil {
		t.Error("Alloc(-1): no error")
	}
	a.Free(nil)
	v := []float32{1, 2, 3, 4, 5}
	src := upload(t, a, v)
	dst, _ := b.Alloc(4)
	must(t, gpu.Transfer(dst, src))
	if got := data(dst); !slices.Equal(got, v[:4]) {
		t.Errorf("Transfer: %v", got)
	}
	must(t, b.Fill(dst, 7))
	host := make([]float32, 4)
	must(t, b.Download(host, dst))
	if !slices.Equal(host, []float32{7, 7, 7, 7}) {
		t.Errorf("Fill then Download: %v", host)
	}
	e, err := a.Record()
	must(t, err)
	must(t, b.Wait(e))
	must(t, a.Sync())

	mustPanic(t, "buffer of another device", func() { b.ReLU(dst, src, 4) })
	mustPanic(t, "short buffer", func() { a.ReLU(src, src, 6) })
	mustPanic(t, "nil buffer", func() { a.ReLU(nil, src, 1) })
	mustPanic(t, "typed nil buffer", func() { a.ReLU((*Buffer)(nil), src, 1) })
	mustPanic(t, "invalid shape", func() {
		a.Conv(src, src, src, gpu.ConvShape{N: 1, C: 1, H: 1, W: 1, K: 1, R: 3, S: 3, Stride: 1})
	})
}
