package bf16_test

import (
	"strings"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/bf16"
	"github.com/alexnet-go/trainer/gpu/cpu"
)

// gpuLike is a CPU device with every optional interface, as a GPU has them;
// it records what reaches it.
type gpuLike struct {
	*cpu.Device
	sharedWith gpu.Device
	staged     int
}

func (g *gpuLike) Mark() (gpu.Mark, error)                          { return 1, nil }
func (g *gpuLike) Elapsed(from, to gpu.Mark) (time.Duration, error) { return time.Millisecond, nil }
func (g *gpuLike) SharesMemory(o gpu.Device) bool                   { g.sharedWith = o; return true }
func (g *gpuLike) ScratchBytes() int64                              { return 100 }
func (g *gpuLike) StageUpload(dst gpu.Buffer, src []float32, after gpu.Event) (gpu.Event, error) {
	g.staged++
	return nil, g.Upload(dst, src)
}
func (g *gpuLike) VendorName() string                              { return "fake" }
func (g *gpuLike) VendorLRN(y, x gpu.Buffer, s gpu.LRNShape) error { return g.LRN(y, x, s) }
func (g *gpuLike) VendorLRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	return g.LRNBackward(dx, dy, x, y, s)
}
func (g *gpuLike) VendorMaxPool(y, x gpu.Buffer, s gpu.PoolShape) error { return g.MaxPool(y, x, s) }
func (g *gpuLike) VendorMaxPoolBackward(dx, dy, x, y gpu.Buffer, s gpu.PoolShape) error {
	return g.MaxPoolBackward(dx, dy, x, y, s)
}

// onlyTimer has one optional interface of five.
type onlyTimer struct{ *cpu.Device }

func (onlyTimer) Mark() (gpu.Mark, error)                          { return 1, nil }
func (onlyTimer) Elapsed(from, to gpu.Mark) (time.Duration, error) { return 0, nil }

// Wrap gives a device the optional interfaces the wrapped one has, all or
// none, forwards them (SharesMemory with the other device unwrapped), and
// panics, naming what is missing, on anything else.
func TestWrapForwards(t *testing.T) {
	c := bf16.Wrap(cpu.New(cpu.Options{}))
	for name, has := range map[string]bool{
		"Timer": isA[gpu.Timer](c), "MemorySharer": isA[gpu.MemorySharer](c), "ScratchReporter": isA[gpu.ScratchReporter](c),
		"Stager": isA[gpu.Stager](c), "VendorOps": isA[gpu.VendorOps](c),
	} {
		if has {
			t.Errorf("the wrapped CPU device is a gpu.%s", name)
		}
	}
	if c.Name() != "cpu:0" {
		t.Errorf("Name %q, want the wrapped device's", c.Name())
	}

	a, b := &gpuLike{Device: cpu.New(cpu.Options{})}, &gpuLike{Device: cpu.New(cpu.Options{Index: 1})}
	wa, wb := bf16.Wrap(a), bf16.Wrap(b)
	if !wa.(gpu.MemorySharer).SharesMemory(wb) || a.sharedWith != gpu.Device(b) {
		t.Errorf("SharesMemory passed %v to the wrapped device, want the other wrapped device %v", a.sharedWith, b)
	}
	if d, err := wa.(gpu.Timer).Elapsed(nil, nil); err != nil || d != time.Millisecond {
		t.Errorf("Elapsed: %v, %v", d, err)
	}
	buf, _ := wa.Alloc(4)
	if _, err := wa.(gpu.Stager).StageUpload(buf, []float32{1.00001, 2, 3, 4}, nil); err != nil || a.staged != 1 {
		t.Errorf("StageUpload: %v, %d calls", err, a.staged)
	}
	if got := gputestDownload(wa, buf); got[0] != 1.00001 {
		t.Errorf("StageUpload changed the values: %v", got)
	}
	if wa.(gpu.ScratchReporter).ScratchBytes() != 100 || !strings.HasPrefix(wa.(gpu.VendorOps).VendorName(), "fake") {
		t.Errorf("ScratchBytes or VendorName not forwarded")
	}

	defer func() {
		r := recover()
		if msg, _ := r.(string); !strings.Contains(msg, "gpu.Timer but not gpu.MemorySharer") {
			t.Errorf("Wrap of a device with one optional interface: panic %v", r)
		}
	}()
	bf16.Wrap(onlyTimer{cpu.New(cpu.Options{})})
}

func isA[I any](d gpu.Device) bool { _, ok := d.(I); return ok }

func gputestDownload(d gpu.Device, b gpu.Buffer) []float32 {
	v := make([]float32, b.Len())
	if err := d.Download(v, b); err != nil {
		panic(err)
	}
	return v
}
