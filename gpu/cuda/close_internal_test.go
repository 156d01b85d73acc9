package cuda

import (
	"errors"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
)

// Opening two logical devices on GPU 0, running a convolution on each (a
// cuDNN workspace, a cuBLAS handle, a stream) and closing them, twenty
// times over, holds no GPU memory past Close: the driver's free memory
// after the last round is what it was after the first (the context and
// the kernels stay loaded by design). It skips without a GPU.
func TestOpenCloseLoop(t *testing.T) {
	info, err := Devices()
	if errors.Is(err, ErrNoDriver) {
		t.Skipf("no CUDA driver: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(info.GPUs) == 0 {
		t.Skip("no GPU: the driver sees none")
	}
	s := gpu.ConvShape{N: 8, C: 3, H: 64, W: 64, K: 16, R: 5, S: 5, Stride: 1, Pad: 2}
	round := func() (free uint64) {
		var devs []*Device
		for range 2 {
			d, err := Open(0, Options{})
			if err != nil {
				t.Fatal(err)
			}
			devs = append(devs, d)
			var bufs []gpu.Buffer
			for _, n := range []int{s.YLen(), s.XLen(), s.WLen()} {
				b, err := d.Alloc(n)
				if err != nil {
					t.Fatal(err)
				}
				if err := d.Fill(b, 0.5); err != nil {
					t.Fatal(err)
				}
				bufs = append(bufs, b)
			}
			if err := d.Conv(bufs[0], bufs[1], bufs[2], s); err != nil {
				t.Fatal(err)
			}
			if err := d.Sync(); err != nil {
				t.Fatal(err)
			}
			for _, b := range bufs {
				d.Free(b)
			}
		}
		for _, d := range devs {
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatalf("a second Close: %v", err)
			}
		}
		d := devs[0]
		done, err := d.bind()
		defer done()
		if err != nil {
			t.Fatal(err)
		}
		var total uint64
		if err := d.drv.check(d.drv.cuMemGetInfo(&free, &total), "cuMemGetInfo"); err != nil {
			t.Fatal(err)
		}
		return free
	}
	first := round()
	const rounds = 20
	for range rounds - 1 {
		round()
	}
	last := round()
	t.Logf("free GPU memory after the first round %d MiB, after %d rounds %d MiB", first>>20, rounds+1, last>>20)
	// One round's buffers and workspace are a few MiB; allow the driver's
	// own pools 4 MiB of slack.
	if last+4<<20 < first {
		t.Errorf("free GPU memory fell from %d to %d bytes over %d rounds of open and close: something is not released", first, last, rounds)
	}
}

// The same loop on the host GPU (fake driver, cuBLAS and cuDNN): after
// every round no allocation and no stream is left, so Close releases all
// that Open and the operations acquired.
func TestOpenCloseLoopOnHostGPU(t *testing.T) {
	g := newHostGPU(t, nil, 2)
	s := gpu.ConvShape{N: 2, C: 3, H: 9, W: 9, K: 4, R: 3, S: 3, Stride: 1, Pad: 1}
	for round := range 5 {
		var devs []*Device
		for range 2 {
			d := g.open(Options{})
			devs = append(devs, d)
			var bufs []gpu.Buffer
			for _, n := range []int{s.YLen(), s.XLen(), s.WLen()} {
				b, err := d.Alloc(n)
				if err != nil {
					t.Fatal(err)
				}
				bufs = append(bufs, b)
			}
			if err := d.Conv(bufs[0], bufs[1], bufs[2], s); err != nil {
				t.Fatal(err)
			}
			for _, b := range bufs {
				d.Free(b)
			}
		}
		for _, d := range devs {
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
		}
		g.mu.Lock()
		mem, streams := len(g.mem), 0
		for _, live := range g.streams {
			if live {
				streams++
			}
		}
		g.mu.Unlock()
		if mem != 0 || streams != 0 || g.gc.devices != 0 {
			t.Fatalf("round %d: after Close, %d allocations, %d streams and %d devices remain", round, mem, streams, g.gc.devices)
		}
	}
}
