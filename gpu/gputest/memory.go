package gputest

import (
	"errors"
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// checkMemory covers Alloc, Free, Upload, Download, Copy and Fill.
func checkMemory(c *checker) {
	c.run("Alloc", func(c *checker) {
		for _, n := range []int{1, 7, 1000} {
			b, err := c.dev.Alloc(n)
			c.must(err, "Alloc")
			if b.Len() != n {
				c.errorf("Alloc(%d).Len() = %d", n, b.Len())
			}
			if d := b.Device(); d == nil || d.Name() != c.dev.Name() {
				c.errorf("Alloc(%d).Device() is not %s", n, c.dev.Name())
			}
			c.dev.Free(b)
		}
		c.dev.Free(nil)
	})
	c.run("UploadDownload", func(c *checker) {
		v := c.sym(1001, 10)
		// Values a conversion on the way would change: −0, a subnormal,
		// the extremes of float32.
		v[0] = float32(math.Copysign(0, -1))
		v[1] = math.SmallestNonzeroFloat32
		v[2] = math.MaxFloat32
		v[3] = -1e-30
		b := c.in(v)
		got := c.get(b, len(v))
		for i := range v {
			if math.Float32bits(got[i]) != math.Float32bits(v[i]) {
				c.errorf("Download after Upload: [%d] = %g (bits %#x), want %g (bits %#x)",
					i, got[i], math.Float32bits(got[i]), v[i], math.Float32bits(v[i]))
				break
			}
		}
		// Download of a prefix.
		c.close("prefix", c.get(b, 10), f64(v[:10]), 0, 0)
		// Upload of a prefix leaves the rest alone.
		c.must(c.dev.Upload(b, []float32{1, 2, 3}), "Upload(3 values)")
		want := f64(v)
		want[0], want[1], want[2] = 1, 2, 3
		c.close("after prefix Upload", c.get(b, len(v)), want, 0, 0)
	})
	c.run("Copy", func(c *checker) {
		src := c.sym(50, 1)
		sb := c.raw(c.dev, 50, src)
		same := c.raw(c.dev, 50, nil)
		c.must(c.dev.Copy(same, sb), "Copy")
		c.close("same length", c.get(same, 50), f64(src), 0, 0)

		// A longer dst takes src's values and keeps the rest.
		long := c.sym(80, 1)
		lb := c.raw(c.dev, 80, long)
		c.must(c.dev.Copy(lb, sb), "Copy")
		want := append(f64(src), f64(long[50:])...)
		c.close("longer dst", c.get(lb, 80), want, 0, 0)

		// A shorter dst takes what fits.
		short := c.raw(c.dev, 20, nil)
		c.must(c.dev.Copy(short, sb), "Copy")
		c.close("shorter dst", c.get(short, 20), f64(src[:20]), 0, 0)
	})
	c.run("Fill", func(c *checker) {
		for _, v := range []float32{0.375, -2.5e-3, 0, 7} {
			b := c.raw(c.dev, 333, nil)
			c.must(c.dev.Fill(b, v), "Fill")
			c.close("Fill", c.get(b, 333), constant(333, float64(v)), 0, 0)
		}
	})
}

// checkEvents covers Record, Wait and Sync on one device: they succeed, and
// work enqueued around them is done in order.
func checkEvents(c *checker) {
	const n = 4096
	b := c.raw(c.dev, n, nil)
	x := c.sym(n, 1)
	xb := c.in(x)
	e, err := c.dev.Record()
	c.must(err, "Record")
	c.must(c.dev.Wait(e), "Wait")
	c.must(c.dev.Fill(b, 1.5), "Fill")
	e, err = c.dev.Record()
	c.must(err, "Record")
	c.must(c.dev.Wait(e), "Wait")
	c.must(c.dev.Fill(b, 2.5), "Fill")
	c.must(c.dev.Add(b, xb, n), "Add")
	c.must(c.dev.Sync(), "Sync")
	want := f64(x)
	for i := range want {
		want[i] += 2.5
	}
	c.close("Fill, Record, Wait, Fill, Add, Sync", c.get(b, n), want, 0, 1e-6)
	c.must(c.dev.Sync(), "Sync with nothing enqueued")
}

// checkTransfer covers gpu.Transfer between two buffers of one device,
// which is Copy, ordered after the work that wrote src.
func checkTransfer(c *checker) {
	const n = 777
	v := c.sym(n, 3)
	src, dst := c.raw(c.dev, n, v), c.raw(c.dev, n, nil)
	c.must(gpu.Transfer(dst, src), "Transfer")
	c.close("Transfer", c.get(dst, n), f64(v), 0, 0)

	c.must(c.dev.Fill(src, -4), "Fill")
	c.must(gpu.Transfer(dst, src), "Transfer")
	c.close("Transfer after Fill", c.get(dst, n), constant(n, -4), 0, 0)
}

// checkPair covers what needs two devices a and b: Transfer both ways,
// CopyPeer's contract, and an event recorded on the producer and waited on
// by the consumer. As in package parallel, the producer issues the
// transfer (gpu.Transfer runs on src's device) and records the event.
func checkPair(c *checker, a, b gpu.Device) {
	const n = 1000
	v := c.sym(n, 2)
	onA := c.raw(a, n, v)
	onB := c.raw(b, n, nil)
	c.must(gpu.Transfer(onB, onA), "Transfer a→b")
	e, err := a.Record()
	c.must(err, "Record on "+a.Name())
	c.must(b.Wait(e), "Wait on "+b.Name())
	c.close("a→b", c.get(onB, n), f64(v), 0, 0)

	w := c.sym(n, 2)
	c.must(b.Upload(onB, w), "Upload")
	c.must(gpu.Transfer(onA, onB), "Transfer b→a")
	e, err = b.Record()
	c.must(err, "Record on "+b.Name())
	c.must(a.Wait(e), "Wait on "+a.Name())
	c.close("b→a", c.get(onA, n), f64(w), 0, 0)

	// CopyPeer, on the device that holds src, either copies or says it
	// cannot.
	c.must(a.Upload(onA, v), "Upload")
	switch err := a.CopyPeer(onB, onA); {
	case err == nil:
		e, err := a.Record()
		c.must(err, "Record on "+a.Name())
		c.must(b.Wait(e), "Wait on "+b.Name())
		c.close("CopyPeer", c.get(onB, n), f64(v), 0, 0)
	case !errors.Is(err, gpu.ErrNoPeer):
		c.errorf("%s: CopyPeer to %s: %v", a.Name(), b.Name(), err)
	}

	// Work on a, the transfer, an event; b waits on it, works on what
	// arrived, and is read.
	x, z := c.sym(n, 1), c.sym(n, 1)
	xa, zb := c.raw(a, n, x), c.raw(b, n, z)
	c.must(a.Fill(onA, 6), "Fill")
	c.must(a.Add(onA, xa, n), "Add")
	c.must(gpu.Transfer(onB, onA), "Transfer a→b after work on a")
	e, err = a.Record()
	c.must(err, "Record on "+a.Name())
	c.must(b.Wait(e), "Wait on "+b.Name())
	c.must(b.Add(onB, zb, n), "Add")
	c.must(b.Sync(), "Sync")
	want := f64(x)
	for i := range want {
		want[i] = float64(float32(want[i]+6)) + float64(z[i])
	}
	c.close("after Transfer, Record, Wait", c.get(onB, n), want, 0, 1e-6)
	c.must(a.Sync(), "Sync")
}

// constant returns n copies of v.
func constant(n int, v float64) []float64 {
	w := make([]float64, n)
	for i := range w {
		w[i] = v
	}
	return w
}
