package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
)

// pair is one buffer on each of the two devices TestKernelsMatchCPUDevice
// compares: [0] on the host GPU, [1] on the CPU device.
type pair [2]gpu.Buffer

// TestKernelsMatchCPUDevice runs every kernel-backed operation of the
// Device on the host GPU, and the same operation on the CPU device, and
// compares the results: bit for bit where both round in the same order
// (pooling with ties, dropout's mask, SGD, softmax, augmentation, ReLU,
// concatenation, bias, bf16 rounding), to float32 tolerance elsewhere (LRN's and tanh's
// library functions differ; the bias gradient sums in double, in
// another order). The conformance suite checks each backend against
// float64 references with tolerances; this checks the promise that the
// GPU's results are the CPU device's. Mistakes it was seen to fail on:
// LRN's register window one channel short at the top, or taking in
// channel C; a run of channels starting its ratios at its first channel
// rather than size/2 before it, or its prefetch stopping a step early;
// size 5 through the size-3 template; max-pool backward giving the
// gradient to every, or the last, of equal maxima; a band of rows missing
// the windows of the band above; no barrier between the copy of x and the
// search for the maxima; the pixel-a-thread fallback's first-maximum test
// dropped.
func TestKernelsMatchCPUDevice(t *testing.T) {
	k := loadHostKernels(t)
	for _, c := range hostConfigs {
		t.Run(fmt.Sprintf("block%d_sms%d", c.block, c.sms), func(t *testing.T) {
			defer func(b int) { threads = b }(threads)
			threads = c.block
			g := newHostGPU(t, k, c.sms)
			matchCPU(t, g.open(Options{}), cpu.New(cpu.Options{Threads: 1}))
		})
	}
}

func matchCPU(t *testing.T, hd *Device, cd gpu.Device) {
	devs := [2]gpu.Device{hd, cd}
	rng := rand.New(rand.NewPCG(1, 2))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	in := func(v []float32) pair {
		var p pair
		for i, d := range devs {
			b, err := d.Alloc(len(v))
			must(err)
			must(d.Upload(b, v))
			p[i] = b
		}
		return p
	}
	normal := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	out := func(n int) pair {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(math.NaN())
		}
		return in(v)
	}
	// both runs f on each device, with at picking that device's buffer of
	// a pair.
	both := func(f func(d gpu.Device, at func(pair) gpu.Buffer) error) {
		t.Helper()
		for i, d := range devs {
			must(f(d, func(p pair) gpu.Buffer { return p[i] }))
		}
	}
	// check compares a pair: |host − cpu| ≤ tol·(1 + |cpu|).
	check := func(name string, p pair, tol float64) {
		t.Helper()
		var v [2][]float32
		for i, d := range devs {
			v[i] = make([]float32, p[i].Len())
			must(d.Download(v[i], p[i]))
		}
		bad := 0
		for i, want := range v[1] {
			got := v[0][i]
			e := math.Abs(float64(got) - float64(want))
			if !(e <= tol*(1+math.Abs(float64(want)))) && !(math.IsNaN(float64(got)) && math.IsNaN(float64(want))) {
				if bad++; bad <= 10 {
					t.Errorf("%s[%d] = %v on the host GPU, %v on the CPU device", name, i, got, want)
				}
			}
		}
		if bad > 10 {
			t.Errorf("%s: %d mismatches in all", name, bad)
		}
	}

	for _, ls := range []gpu.LRNShape{
		{N: 2, C: 7, H: 3, W: 5, Size: 5, Alpha: 1e-2, Beta: 0.75, K: 2},
		{N: 1, C: 6, H: 2, W: 3, Size: 3, Alpha: 0.5, Beta: 0.75, K: 1},
		{N: 3, C: 16, H: 13, W: 13, Size: 5, Alpha: 1e-3, Beta: 0.6, K: 1.5}, // powf, several blocks
		// Few pixels and many channels: lrnSpan splits the channels in
		// runs (17, 17 and 16 here), each starting its sums afresh.
		{N: 1, C: 50, H: 3, W: 5, Size: 5, Alpha: 1e-1, Beta: 0.75, K: 2},
		{N: 2, C: 37, H: 2, W: 3, Size: 7, Alpha: 1e-1, Beta: 0.75, K: 1},  // runs of 19 and 18
		{N: 1, C: 9, H: 4, W: 4, Size: 4, Alpha: 1e-1, Beta: 1, K: 1},      // even size: the window is 2·2+1
		{N: 2, C: 14, H: 3, W: 3, Size: 11, Alpha: 1e-2, Beta: 0.75, K: 1}, // half > 2: lrn.cu's direct sums
	} {
		n := ls.Len()
		x, dy, y, dx := in(normal(n)), in(normal(n)), out(n), out(n)
		both(func(d gpu.Device, at func(pair) gpu.Buffer) error {
			if err := d.LRN(at(y), at(x), ls); err != nil {
				return err
			}
			return d.LRNBackward(at(dx), at(dy), at(x), at(y), ls)
		})
		check(fmt.Sprintf("LRN %+v: y", ls), y, 1e-6)
		check(fmt.Sprintf("LRN %+v: dx", ls), dx, 1e-5)
	}

	cs := gpu.ConcatShape{N: 30, Sizes: []int{40, 20, 7}}
	srcs := []pair{in(normal(30 * 40)), in(normal(30 * 20)), in(normal(30 * 7))}
	dst, back := out(30*67), []pair{out(30 * 40), out(30 * 20), out(30 * 7)}
	both(func(d gpu.Device, at func(pair) gpu.Buffer) error {
		var s, b []gpu.Buffer
		for i := range srcs {
			s, b = append(s, at(srcs[i])), append(b, at(back[i]))
		}
		if err := d.Concat(at(dst), s, cs); err != nil {
			return err
		}
		return d.Split(b, at(dst), cs)
	})
	check("Concat", dst, 0)
	for i := range back {
		check(fmt.Sprintf("Split %d", i), back[i], 0)
	}

	const n = 70001 // many blocks, and grid-stride loops
	x, dy := in(normal(n)), in(normal(n))
	ry, rdx, ty, tdx, sum := out(n), out(n), out(n), out(n), in(normal(n))
	both(func(d gpu.Device, at func(pair) gpu.Buffer) error {
		for _, err := range []error{
			d.ReLU(at(ry), at(x), n), d.ReLUBackward(at(rdx), at(dy), at(ry), n),
			d.Tanh(at(ty), at(x), n), d.TanhBackward(at(tdx), at(dy), at(ty), n),
			d.Add(at(sum), at(x), n),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	check("ReLU", ry, 0)
	check("ReLUBackward", rdx, 0)
	check("Tanh", ty, 1e-6)
	check("TanhBackward", tdx, 1e-6)
	check("Add", sum, 0)

	// bf16 rounding, bit for bit: random values with ties, NaNs,
	// infinities, overflow and subnormals among them.
	bv := normal(n)
	for i, u := range []uint32{0x3f808000, 0x3f818000, 0x7f7fffff, 0x7f800001, 0xff800001, 0x7fffffff,
		0x7f800000, 0x80000000, 0x00008000, 0x00018000, 0x807fffff, 0x00000001} {
		bv[i] = math.Float32frombits(u)
	}
	for i := 100; i < n; i += 7 {
		bv[i] = math.Float32frombits(math.Float32bits(bv[i])&^0xffff | 0x8000) // a tie
	}
	bx, by := in(bv), out(n)
	both(func(d gpu.Device, at func(pair) gpu.Buffer) error {
		return d.(interface {
			RoundBF16(y, x gpu.Buffer, n int) error
		}).RoundBF16(at(by), at(bx), n)
	})
	var rb [2][]float32
	for i, d := range devs {
		rb[i] = make([]float32, n)
		must(d.Download(rb[i], by[i]))
	}
	for i := range rb[0] {
		if a, b := math.Float32bits(rb[0][i]), math.Float32bits(rb[1][i]); a != b {
			t.Errorf("RoundBF16(%#08x) = %#08x on the host GPU, %#08x on the CPU device", math.Float32bits(bv[i]), a, b)
			break
		}
	}

	negZero := float32(math.Copysign(0, -1))
	for _, ps := range []gpu.PoolShape{{N: 1, C: 3, H: 9, W: 9, Size: 3, Stride: 2}, {N: 4, C: 16, H: 27, W: 27, Size: 3, Stride: 2},
		{N: 2, C: 3, H: 8, W: 7, Size: 3, Stride: 1}, {N: 1, C: 4, H: 9, W: 8, Size: 2, Stride: 2},
		// Planes too big for one block's shared memory: bands of output
		// rows (poolBand), and a plane too wide for even one row (a
		// pixel a thread, the maxima from y).
		{N: 1, C: 2, H: 40, W: 200, Size: 3, Stride: 2}, {N: 1, C: 1, H: 30, W: 300, Size: 3, Stride: 1},
		{N: 1, C: 2, H: 64, W: 100, Size: 2, Stride: 2}, {N: 1, C: 1, H: 40, W: 40, Size: 3, Stride: 1},
		{N: 1, C: 2, H: 5, W: 1400, Size: 3, Stride: 2}} {
		px := make([]float32, ps.XLen())
		for i := range px {
			// Ties everywhere, windows of zeros (as after a ReLU), and
			// −0 among them: −0 == +0, so the first of either wins.
			px[i] = float32(rng.IntN(3))
			if px[i] == 0 && rng.IntN(2) == 0 {
				px[i] = negZero
			}
		}
		x, dy, y, dx := in(px), in(normal(ps.YLen())), out(ps.YLen()), out(ps.XLen())
		both(func(d gpu.Device, at func(pair) gpu.Buffer) error {
			if err := d.MaxPool(at(y), at(x), ps); err != nil {
				return err
			}
			return d.MaxPoolBackward(at(dx), at(dy), at(x), at(y), ps)
		})
		check(fmt.Sprintf("MaxPool %+v", ps), y, 0)
		check(fmt.Sprintf("MaxPoolBackward %+v", ps), dx, 0)
	}

	ds := gpu.DropoutShape{N: 100000, P: 0.3, Seed: 12345678901}
	dx0, dy0, dm, ddx := in(normal(ds.N)), out(ds.N), out(ds.N), out(ds.N)
	both(func(d gpu.Device, at func(pair) gpu.Buffer) error {
		if err := d.Dropout(at(dy0), at(dm), at(dx0), ds); err != nil {
			return err
		}
		return d.DropoutBackward(at(ddx), at(dx0), at(dm), ds.N)
	})
	check("Dropout y", dy0, 0)
	check("Dropout mask", dm, 0)
	check("DropoutBackward", ddx, 0)

	sg := gpu.SGDShape{N: 5000, LR: 0.01, Momentum: 0.9, WeightDecay: 5e-4}
	w, v, dw := in(normal(sg.N)), in(normal(sg.N)), in(normal(sg.N))
	both(func(d gpu.Device, at func(pair) gpu.Buffer) error { return d.SGD(at(w), at(v), at(dw), sg) })
	check("SGD w", w, 0)
	check("SGD v", v, 0)

	for _, ss := range []gpu.SoftmaxShape{{N: 3, Classes: 10}, {N: 7, Classes: 1000}} {
		z := normal(ss.N * ss.Classes)
		z[3] = 80 // e^80 overflows float32
		labels := make([]float32, ss.N)
		for i := range labels {
			labels[i] = float32(rng.IntN(ss.Classes))
		}
		zb, lb, p, loss, dz := in(z), in(labels), out(len(z)), out(ss.N), out(len(z))
		both(func(d gpu.Device, at func(pair) gpu.Buffer) error {
			if err := d.SoftmaxCrossEntropy(at(p), at(loss), at(zb), at(lb), ss); err != nil {
				return err
			}
			return d.SoftmaxCrossEntropyBackward(at(dz), at(p), at(lb), ss)
		})
		check(fmt.Sprintf("SoftmaxCrossEntropy %+v: prob", ss), p, 0)
		check(fmt.Sprintf("SoftmaxCrossEntropy %+v: loss", ss), loss, 0)
		check(fmt.Sprintf("SoftmaxCrossEntropyBackward %+v", ss), dz, 0)
	}

	for _, bs := range []gpu.BiasShape{{N: 2, C: 4, Inner: 6}, {N: 8, C: 6, Inner: 169}} {
		dy, b, db := in(normal(bs.Len())), in(normal(bs.C)), out(bs.C)
		y := in(normal(bs.Len()))
		both(func(d gpu.Device, at func(pair) gpu.Buffer) error {
			if err := d.BiasBackward(at(db), at(dy), bs); err != nil {
				return err
			}
			return d.AddBias(at(y), at(b), bs)
		})
		check(fmt.Sprintf("BiasBackward %+v", bs), db, 1e-7)
		check(fmt.Sprintf("AddBias %+v", bs), y, 0)
	}

	// The fused ops (kernels/fused.cu, and lrn.cu for ReLU+LRN).
	for _, bs := range []gpu.BiasShape{{N: 2, C: 4, Inner: 6}, {N: 8, C: 6, Inner: 169}, {N: 5, C: 7, Inner: 1}} {
		y, b, dy, dx, db := in(normal(bs.Len())), in(normal(bs.C)), in(normal(bs.Len())), out(bs.Len()), out(bs.C)
		both(func(d gpu.Device, at func(pair) gpu.Buffer) error {
			if err := d.BiasReLU(at(y), at(b), bs); err != nil {
				return err
			}
			return d.ReLUBiasBackward(at(dx), at(db), at(dy), at(y), bs)
		})
		check(fmt.Sprintf("BiasReLU %+v", bs), y, 0)
		check(fmt.Sprintf("ReLUBiasBackward %+v: dx", bs), dx, 0)
		check(fmt.Sprintf("ReLUBiasBackward %+v: db", bs), db, 1e-7)
	}
	for _, ls := range []gpu.LRNShape{
		{N: 2, C: 7, H: 3, W: 5, Size: 5, Alpha: 1e-2, Beta: 0.75, K: 2},
		{N: 3, C: 16, H: 13, W: 13, Size: 5, Alpha: 1e-3, Beta: 0.6, K: 1.5},
	} {
		n := ls.Len()
		x, dy, y, dx := in(normal(n)), in(normal(n)), out(n), out(n)
		both(func(d gpu.Device, at func(pair) gpu.Buffer) error {
			if err := d.ReLULRN(at(y), at(x), ls); err != nil {
				return err
			}
			return d.ReLULRNBackward(at(dx), at(dy), at(x), at(y), ls)
		})
		check(fmt.Sprintf("ReLULRN %+v: y", ls), y, 1e-6)
		check(fmt.Sprintf("ReLULRNBackward %+v: dx", ls), dx, 1e-5)
	}
	fs := gpu.LinearShape{N: 6, In: 33, Out: 10}
	fx, fw, fb, fy := in(normal(fs.N*fs.In)), in(normal(fs.Out*fs.In)), in(normal(fs.Out)), out(fs.N*fs.Out)
	fdy, fdx, fdw, fdb := in(normal(fs.N*fs.Out)), out(fs.N*fs.In), out(fs.Out*fs.In), out(fs.Out)
	both(func(d gpu.Device, at func(pair) gpu.Buffer) error {
		if err := d.LinearReLU(at(fy), at(fx), at(fw), at(fb), fs); err != nil {
			return err
		}
		return d.LinearReLUBackward(at(fdx), at(fdw), at(fdb), at(fdy), at(fx), at(fw), at(fy), fs)
	})
	check("LinearReLU", fy, 1e-5)
	check("LinearReLUBackward: dy masked", fdy, 0)
	check("LinearReLUBackward: dx", fdx, 1e-5)
	check("LinearReLUBackward: dw", fdw, 1e-5)
	check("LinearReLUBackward: db", fdb, 1e-6)

	as := gpu.AugmentShape{N: 2, C: 3, Size: 8, Crop: 5}
	raw := make([]uint8, 2*3*64)
	for i := range raw {
		raw[i] = uint8(rng.IntN(256))
	}
	src, mean, par := in(gpu.PackBytes(raw)), in(normal(as.MeanLen())), in([]float32{1, 3, 0, 0.5, -0.25, 1.5, 3, 0, 1, -1, 2, 0.125})
	ad := out(as.DstLen())
	both(func(d gpu.Device, at func(pair) gpu.Buffer) error {
		return d.Augment(at(ad), at(src), at(mean), at(par), as)
	})
	check("Augment", ad, 0)
}
