package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/open"
)

// KernelsOptions configure bench kernels.
type KernelsOptions struct {
	// GPUs is a --gpus value: each entry is timed on its own. Empty: the
	// first GPU if there is one, else a CPU device.
	GPUs    string
	Batch   int // images; the shapes are at 128
	Repeats int // timed runs of each op after the warm-up; the median is reported
	Threads int // per CPU device; 0 shares the cores
	Out     string
}

// KernelCase is one layer's LRN and pooling, per tower: the paper's conv1
// (48 channels of 55×55, pooled to 27×27) and conv2 (128 of 27×27, pooled
// to 13×13), with the paper's LRN (§3.3: n = 5, α = 10⁻⁴ on the sum,
// β = 0.75, k = 2) and overlapping pooling (§3.4: 3×3 every 2).
type KernelCase struct {
	Layer string
	LRN   gpu.LRNShape
	Pool  gpu.PoolShape
}

// KernelCases returns conv1's and conv2's shapes at batch n.
func KernelCases(n int) []KernelCase {
	mk := func(layer string, c, hw int) KernelCase {
		return KernelCase{Layer: layer,
			LRN:  gpu.LRNShape{N: n, C: c, H: hw, W: hw, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2},
			Pool: gpu.PoolShape{N: n, C: c, H: hw, W: hw, Size: 3, Stride: 2}}
	}
	return []KernelCase{mk("conv1", 48, 55), mk("conv2", 128, 27)}
}

// Floor is the bytes an op must move at the least: each input read once,
// each output written once, float32. LRN reads x, writes y; its backward
// reads dy, x and y and writes dx. Max pooling reads x and writes y; its
// backward reads x (where the maxima are) and dy and writes dx (y is not
// needed: the maxima can be found again in x, as ours does on these
// shapes).
// ReLU+LRN fused moves what LRN alone does.
func Floor(op string, c KernelCase) int64 {
	l, x, y := int64(c.LRN.Len()), int64(c.Pool.XLen()), int64(c.Pool.YLen())
	switch op {
	case "LRN", "ReLULRN":
		return 4 * 2 * l
	case "LRNBackward", "ReLULRNBackward":
		return 4 * 4 * l
	case "MaxPool":
		return 4 * (x + y)
	case "MaxPoolBackward":
		return 4 * (2*x + y)
	}
	panic("bench: no op " + op)
}

// KernelOps are the ops timed, in the order of the report. The fused
// ReLU+LRN (gpu.Device.ReLULRN) has no vendor twin: cuDNN fuses no
// activation into its LRN.
var KernelOps = []string{"LRN", "LRNBackward", "MaxPool", "MaxPoolBackward", "ReLULRN", "ReLULRNBackward"}

// KernelRow is one op of one layer on one device: ours, and the vendor
// library's where the device has one (gpu.VendorOps).
type KernelRow struct {
	Device     string  `json:"device"`
	Layer      string  `json:"layer"`
	Op         string  `json:"op"`
	Shape      string  `json:"shape"`
	FloorBytes int64   `json:"floor_bytes"`
	Ms         float64 `json:"ms_median"`
	GBs        float64 `json:"gb_per_s"`         // FloorBytes / Ms
	OfCopy     float64 `json:"fraction_of_copy"` // GBs / the device's copy bandwidth
	Vendor     string  `json:"vendor,omitempty"`
	VendorMs   float64 `json:"vendor_ms_median,omitempty"`
	VendorGBs  float64 `json:"vendor_gb_per_s,omitempty"`
	VendorOf   float64 `json:"vendor_fraction_of_copy,omitempty"`
}

// CopyBandwidth is a device-to-device copy (Device.Copy) of a buffer on
// one device: it reads and writes Bytes, so GBs = 2·Bytes / Ms.
type CopyBandwidth struct {
	Device string  `json:"device"`
	Clock  string  `json:"clock"` // "device": the GPU's events; "host": time around the call and a Sync
	Bytes  int64   `json:"bytes"`
	Ms     float64 `json:"ms_median"`
	GBs    float64 `json:"gb_per_s"`
}

// KernelsReport is what bench kernels measured.
type KernelsReport struct {
	Batch   int             `json:"batch"`
	Repeats int             `json:"repeats"`
	Copies  []CopyBandwidth `json:"copy"`
	Rows    []KernelRow     `json:"rows"`
}

// Kernels times LRN, max pooling and the fused ReLU+LRN, forward and
// backward, on conv1's and conv2's shapes on every device of o.GPUs,
// against a device copy's bandwidth measured in the same run, and writes
// kernels.md and kernels.json to o.Out.
func Kernels(o KernelsOptions) (*KernelsReport, error) {
	spec := o.GPUs
	if spec == "" {
		auto, _ := open.AutoGPUs()
		spec, _, _ = strings.Cut(auto, ",")
		if spec != "0" {
			spec = "cpu"
		}
	}
	devs, err := open.Devices(spec, open.DeviceOptions{Threads: o.Threads})
	if err != nil {
		return nil, err
	}
	rep, err := KernelsOn(devs, o)
	if cerr := devs.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if o.Out != "" {
		if err := os.MkdirAll(o.Out, 0o755); err != nil {
			return nil, fmt.Errorf("bench kernels: --out %s: %v", o.Out, err)
		}
		js, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(filepath.Join(o.Out, "kernels.json"), append(js, '\n'), 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(o.Out, "kernels.md"), []byte(rep.Markdown()), 0o644); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// KernelsOn is Kernels on devices already open.
func KernelsOn(devs []gpu.Device, o KernelsOptions) (*KernelsReport, error) {
	if o.Batch < 1 || o.Repeats < 1 {
		return nil, fmt.Errorf("bench kernels: --batch %d, --repeats %d: both must be at least 1", o.Batch, o.Repeats)
	}
	rep := &KernelsReport{Batch: o.Batch, Repeats: o.Repeats}
	for _, d := range devs {
		if err := kernelsOn(rep, d, o); err != nil {
			return nil, fmt.Errorf("bench kernels on %s: %w", d.Name(), err)
		}
	}
	return rep, nil
}

// timer times one op on a device: by the device's own clock where it has
// one (a GPU, whose calls return before the work is done), else by the
// host's around the call and a Sync. It returns the median of repeats
// runs after warm-up runs.
type timer struct {
	d       gpu.Device
	repeats int
}

func (t timer) clock() string {
	if _, ok := t.d.(gpu.Timer); ok {
		return "device"
	}
	return "host"
}

func (t timer) median(op func() error) (float64, error) {
	clk, dev := t.d.(gpu.Timer)
	warm := 1
	if dev {
		warm = 3 // the clocks idle low, and cuDNN sets up on first use
	}
	for range warm {
		if err := op(); err != nil {
			return 0, err
		}
	}
	if err := t.d.Sync(); err != nil {
		return 0, err
	}
	ms := make([]float64, 0, t.repeats)
	for range t.repeats {
		if dev {
			a, err := clk.Mark()
			if err != nil {
				return 0, err
			}
			if err := op(); err != nil {
				return 0, err
			}
			b, err := clk.Mark()
			if err != nil {
				return 0, err
			}
			e, err := clk.Elapsed(a, b)
			if err != nil {
				return 0, err
			}
			ms = append(ms, float64(e)/1e6)
			continue
		}
		began := time.Now()
		if err := op(); err != nil {
			return 0, err
		}
		if err := t.d.Sync(); err != nil {
			return 0, err
		}
		ms = append(ms, float64(time.Since(began))/1e6)
	}
	sort.Float64s(ms)
	m := ms[len(ms)/2]
	if len(ms)%2 == 0 {
		m = (ms[len(ms)/2-1] + ms[len(ms)/2]) / 2
	}
	return m, nil
}

// gbs is bytes per ms in GB/s (10⁹ bytes).
func gbs(bytes int64, ms float64) float64 {
	if ms <= 0 {
		return 0
	}
	return float64(bytes) / (ms / 1e3) / 1e9
}

func kernelsOn(rep *KernelsReport, d gpu.Device, o KernelsOptions) error {
	cases := KernelCases(o.Batch)
	t := timer{d: d, repeats: o.Repeats}
	rng := rand.New(rand.NewPCG(1, 2))
	var bufs []gpu.Buffer
	defer func() {
		for _, b := range bufs {
			d.Free(b)
		}
	}()
	alloc := func(n int, random bool) (gpu.Buffer, error) {
		b, err := d.Alloc(n)
		if err != nil {
			return nil, err
		}
		bufs = append(bufs, b)
		if !random {
			return b, d.Fill(b, 0)
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return b, d.Upload(b, v)
	}

	// The copy: as large as the largest tensor, so that caches do not
	// flatter it more than they flatter the ops.
	n := 0
	for _, c := range cases {
		n = max(n, c.LRN.Len())
	}
	src, err := alloc(n, true)
	if err != nil {
		return err
	}
	dst, err := alloc(n, false)
	if err != nil {
		return err
	}
	cms, err := t.median(func() error { return d.Copy(dst, src) })
	if err != nil {
		return err
	}
	cp := CopyBandwidth{Device: d.Name(), Clock: t.clock(), Bytes: 4 * int64(n), Ms: cms, GBs: gbs(2*4*int64(n), cms)}
	rep.Copies = append(rep.Copies, cp)
	d.Free(src)
	d.Free(dst)
	bufs = bufs[:0]

	vendor, _ := d.(gpu.VendorOps)
	for _, c := range cases {
		ls, ps := c.LRN, c.Pool
		x, err := alloc(ls.Len(), true) // the LRN's input, and the pooling's
		if err != nil {
			return err
		}
		y, err := alloc(ls.Len(), false)
		if err != nil {
			return err
		}
		dy, err := alloc(ls.Len(), true)
		if err != nil {
			return err
		}
		dx, err := alloc(ls.Len(), false)
		if err != nil {
			return err
		}
		py, err := alloc(ps.YLen(), false)
		if err != nil {
			return err
		}
		pdy, err := alloc(ps.YLen(), true)
		if err != nil {
			return err
		}
		fy, err := alloc(ls.Len(), false)
		if err != nil {
			return err
		}
		// The backward passes read the forward's outputs.
		if err := d.LRN(y, x, ls); err != nil {
			return err
		}
		if err := d.ReLULRN(fy, x, ls); err != nil {
			return err
		}
		if err := d.MaxPool(py, x, ps); err != nil {
			return err
		}
		ours := map[string]func() error{
			"LRN":             func() error { return d.LRN(y, x, ls) },
			"LRNBackward":     func() error { return d.LRNBackward(dx, dy, x, y, ls) },
			"MaxPool":         func() error { return d.MaxPool(py, x, ps) },
			"MaxPoolBackward": func() error { return d.MaxPoolBackward(dx, pdy, x, py, ps) },
			"ReLULRN":         func() error { return d.ReLULRN(fy, x, ls) },
			"ReLULRNBackward": func() error { return d.ReLULRNBackward(dx, dy, x, fy, ls) },
		}
		var theirs map[string]func() error
		if vendor != nil {
			theirs = map[string]func() error{
				"LRN":             func() error { return vendor.VendorLRN(y, x, ls) },
				"LRNBackward":     func() error { return vendor.VendorLRNBackward(dx, dy, x, y, ls) },
				"MaxPool":         func() error { return vendor.VendorMaxPool(py, x, ps) },
				"MaxPoolBackward": func() error { return vendor.VendorMaxPoolBackward(dx, pdy, x, py, ps) },
			}
		}
		for _, op := range KernelOps {
			shape := fmt.Sprintf("%d×%d×%d×%d", ls.N, ls.C, ls.H, ls.W)
			if strings.HasPrefix(op, "MaxPool") {
				shape += fmt.Sprintf(" → %d×%d", ps.P(), ps.Q())
			}
			row := KernelRow{Device: d.Name(), Layer: c.Layer, Op: op, Shape: shape, FloorBytes: Floor(op, c)}
			if row.Ms, err = t.median(ours[op]); err != nil {
				return err
			}
			row.GBs = gbs(row.FloorBytes, row.Ms)
			row.OfCopy = row.GBs / cp.GBs
			if f := theirs[op]; f != nil {
				row.Vendor = vendor.VendorName()
				if row.VendorMs, err = t.median(f); err != nil {
					return err
				}
				row.VendorGBs = gbs(row.FloorBytes, row.VendorMs)
				row.VendorOf = row.VendorGBs / cp.GBs
			}
			rep.Rows = append(rep.Rows, row)
		}
		for _, b := range bufs {
			d.Free(b)
		}
		bufs = bufs[:0]
	}
	return nil
}

// Markdown renders the report: each device's copy bandwidth, then a row
// per op with ours and the vendor's time, bandwidth and fraction of the
// copy's.
func (r *KernelsReport) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "LRN and overlapping max pooling per tower at batch %d (median of %d runs). The floor reads each input once and writes each output once; GB/s is the floor over the time; %% of copy is that over a device-to-device copy's GB/s (read + write) in the same run. Goal (issue #12): ≥ 80%% of copy. ReLULRN is ReLU fused into LRN (cuDNN has no such op); its floor is LRN's.\n\n", r.Batch, r.Repeats)
	b.WriteString("| device | clock | copy size | copy ms | copy GB/s |\n|---|---|---|---|---|\n")
	for _, c := range r.Copies {
		fmt.Fprintf(&b, "| %s | %s | %.1f MB | %.3f | %.1f |\n", c.Device, c.Clock, float64(c.Bytes)/1e6, c.Ms, c.GBs)
	}
	b.WriteString("\n| device | layer | op | shape | floor | ours ms | ours GB/s | ours % of copy | vendor | vendor ms | vendor GB/s | vendor % of copy |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		v := "| – | – | – | – |"
		if row.Vendor != "" {
			v = fmt.Sprintf("| %s | %.3f | %.1f | %.0f%% |", row.Vendor, row.VendorMs, row.VendorGBs, 100*row.VendorOf)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.1f MB | %.3f | %.1f | %.0f%% %s\n", row.Device, row.Layer, row.Op, row.Shape,
			float64(row.FloorBytes)/1e6, row.Ms, row.GBs, 100*row.OfCopy, v)
	}
	return b.String()
}
