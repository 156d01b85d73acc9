package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/open"
	"github.com/alexnet-go/trainer/parallel"
)

// SpeedOptions configure bench speed.
type SpeedOptions struct {
	Nets       []string
	Placements []string // --gpus values: cpu, "cpu,cpu", 0, "0,0", "0,1"
	Batch      int
	Repeats    int // timed steps after the warm-up (1 step; 10 on a GPU)
	Threads    int // per CPU device; 0 shares the cores
	Out        string
	// Data, when set, adds an end-to-end row beside each synthetic one:
	// training from this data directory (as --data takes it) through the
	// real loader, its batches rendered on the devices where the loader
	// can hand them over raw, the next batch staged while a step runs.
	Data string
	// Workers is the loader's goroutines in the end-to-end rows (0: one
	// per core).
	Workers int
	// Precision is the arithmetic, as train's --precision: "fp32" (or ""),
	// "tf32" or "bf16".
	Precision string
}

// precision is o.Precision, "fp32" when empty.
func (o SpeedOptions) precision() string {
	if o.Precision == "" {
		return "fp32"
	}
	return o.Precision
}

// SpeedRow is one net on one placement. A placement this build or machine
// cannot run has Skipped set and no numbers.
type SpeedRow struct {
	Net       string   `json:"net"`
	Placement string   `json:"placement"`
	Devices   []string `json:"devices,omitempty"`
	Skipped   string   `json:"skipped,omitempty"`
	// Mode is "synthetic" (one batch in device memory, trained on again
	// and again: the step alone) or "end-to-end" (from Data through the
	// loader, uploads and augmentation included).
	Mode      string `json:"mode"`
	Precision string `json:"precision"` // "fp32", "tf32" or "bf16"
	Batch     int    `json:"batch"`
	// DataWaitMs is, end to end, the mean time per timed step the loop
	// waited for the loader's next batch; 0 in synthetic rows.
	DataWaitMs  float64          `json:"data_wait_ms"`
	Augment     string           `json:"augment,omitempty"` // end to end: "device" (raw bytes uploaded) or "host"
	ImagesPerS  float64          `json:"images_per_s"`
	MsPerStep   float64          `json:"ms_per_step_median"`
	StepsMs     []float64        `json:"steps_ms"`
	GFLOPs      float64          `json:"gflop_per_s"`
	MovedBytes  int64            `json:"moved_bytes_per_step"`
	TransferMs  float64          `json:"transfer_ms_per_step"`
	MemoryBytes map[string]int64 `json:"memory_bytes_by_device"`
	Layers      []LayerSpeed     `json:"layers,omitempty"`
}

// LayerSpeed is a layer's share of a step, averaged over the timed steps.
type LayerSpeed struct {
	Layer      string  `json:"layer"`
	Device     string  `json:"device"`
	Clock      string  `json:"clock"` // "host": time around each call; "device": the GPU's time between marks on its stream
	ForwardMs  float64 `json:"forward_ms"`
	BackwardMs float64 `json:"backward_ms"`
	MovedBytes int64   `json:"moved_bytes"`
	TransferMs float64 `json:"transfer_ms"`
}

// Speed times a training step (forward, backward, update) of every net on
// every placement: the median of Repeats steps after a warm-up step, with
// each layer's time, the bytes moved between devices and the time spent
// issuing the copies, the GFLOP/s achieved and the memory the plan holds
// per device. It writes speed.md and speed.json to Out.
func Speed(o SpeedOptions) ([]SpeedRow, error) {
	if o.Batch < 1 || o.Repeats < 1 {
		return nil, fmt.Errorf("bench speed: --batch %d, --repeats %d: both must be at least 1", o.Batch, o.Repeats)
	}
	var rows []SpeedRow
	for _, name := range o.Nets {
		opt := model.Options{Channels: 1, Classes: 10}
		if model.InputSize(name) > 32 {
			opt = model.Options{Channels: 3, Classes: 1000}
		}
		net, err := model.Build(name, opt)
		if o.Data != "" {
			// The synthetic step on the net the end-to-end rows train:
			// the data's channels and classes.
			net, err = dataNet(name, o)
		}
		if err != nil {
			return nil, err
		}
		w := model.Init(net, 1)
		rng := rand.New(rand.NewPCG(1, 2))
		in := parallel.Batch{N: o.Batch, Images: make([]float32, o.Batch*net.Input.Len()), Labels: make([]float32, o.Batch)}
		for i := range in.Images {
			in.Images[i] = float32(rng.NormFloat64() * 50)
		}
		for i := range in.Labels {
			in.Labels[i] = float32(rng.IntN(net.Classes))
		}
		for _, place := range o.Placements {
			row := SpeedRow{Net: name, Placement: place, Mode: "synthetic", Precision: o.precision(), Batch: o.Batch}
			spec, _ := open.ForNet(net, place)
			devs, err := open.Devices(spec, open.DeviceOptions{Threads: o.Threads, Precision: o.Precision})
			if errors.Is(err, open.ErrNoCUDA) || errors.Is(err, open.ErrNoSuchGPU) {
				row.Skipped = "no CUDA driver found"
				if errors.Is(err, open.ErrNoSuchGPU) {
					row.Skipped = "the machine has too few GPUs"
				}
				rows = append(rows, row)
				if o.Data != "" {
					e2e := row
					e2e.Mode = "end-to-end"
					rows = append(rows, e2e)
				}
				continue
			}
			if err != nil {
				return nil, err
			}
			err = timeSteps(&row, net, devs, w, in, o.Repeats)
			if cerr := devs.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, err
			}
			rows = append(rows, row)
			if o.Data != "" {
				e2e, err := endToEnd(name, place, o)
				if err != nil {
					return nil, err
				}
				rows = append(rows, e2e)
			}
		}
	}
	if o.Out != "" {
		if err := os.MkdirAll(o.Out, 0o755); err != nil {
			return nil, fmt.Errorf("bench speed: --out %s: %v", o.Out, err)
		}
		js, _ := json.MarshalIndent(rows, "", "  ")
		if err := os.WriteFile(filepath.Join(o.Out, "speed.json"), append(js, '\n'), 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(o.Out, "speed.md"), []byte(SpeedMarkdown(rows)), 0o644); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

func timeSteps(row *SpeedRow, net *model.Net, devs []gpu.Device, w model.Weights, in parallel.Batch, repeats int) error {
	r, err := parallel.New(net, devs, w, parallel.Options{Batch: in.N, Seed: 1, Momentum: 0.9, WeightDecay: 5e-4})
	if err != nil {
		return err
	}
	defer r.Close()
	for _, d := range r.Devices() {
		if len(row.Devices) == 0 || row.Devices[len(row.Devices)-1] != d.Name() {
			row.Devices = append(row.Devices, d.Name())
		}
	}
	// A device with its own clock is a GPU: its work is asynchronous.
	gpuClock := slices.ContainsFunc(r.Devices(), func(d gpu.Device) bool { _, ok := d.(gpu.Timer); return ok })
	// Warm-up: scratch space, page faults; on a GPU also cuDNN's algorithm
	// search and the clocks, which idle at a sixth of their peak.
	warm := 1
	if gpuClock {
		warm = 10
	}
	for range warm {
		if _, err := r.Train(in, 0.01); err != nil {
			return err
		}
	}
	r.ResetProfile()
	r.MovedBytes()
	for range repeats {
		began := time.Now()
		if _, err := r.Train(in, 0.01); err != nil {
			return err
		}
		row.StepsMs = append(row.StepsMs, float64(time.Since(began))/1e6)
	}
	s := append([]float64(nil), row.StepsMs...)
	sort.Float64s(s)
	row.MsPerStep = s[len(s)/2]
	if len(s)%2 == 0 {
		row.MsPerStep = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	row.ImagesPerS = float64(in.N) / (row.MsPerStep / 1e3)
	row.GFLOPs = float64(parallel.TrainFLOPs(net, in.N)) / (row.MsPerStep / 1e3) / 1e9
	row.MovedBytes = r.MovedBytes() / int64(repeats)
	row.MemoryBytes = r.MemoryBytes()
	// The layers' times: on a device with its own clock (a GPU), from
	// further steps with timing marks around every layer, since the host
	// only sees the time to enqueue the work and the marks would perturb
	// the steps timed above.
	profiled := repeats
	if gpuClock {
		profiled = min(repeats, 5)
		r.ResetProfile()
		r.SetDeviceTiming(true)
		for range profiled {
			if _, err := r.Train(in, 0.01); err != nil {
				return err
			}
		}
	}
	for _, t := range r.Profile() {
		ls := LayerSpeed{Layer: t.Layer, Device: t.Device, Clock: t.Clock,
			ForwardMs:  float64(t.Forward) / 1e6 / float64(profiled),
			BackwardMs: float64(t.Backward) / 1e6 / float64(profiled),
			MovedBytes: t.MovedBytes + t.GradientBytes,
			TransferMs: float64(t.Transfer) / 1e6 / float64(profiled)}
		row.TransferMs += ls.TransferMs
		row.Layers = append(row.Layers, ls)
	}
	return nil
}

// SpeedMarkdown renders the rows as a summary table and, per row, the
// layers' times.
func SpeedMarkdown(rows []SpeedRow) string {
	var b strings.Builder
	b.WriteString("| net | placement | mode | images/s | ms/step (median) | waited for data ms/step | GFLOP/s | moved/step | transfer ms/step | memory per device |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		if r.Skipped != "" {
			fmt.Fprintf(&b, "| %s | `%s` | %s | – | – | – | – | – | – | skipped: %s |\n", r.Net, r.Placement, r.Mode, r.Skipped)
			continue
		}
		mode, wait := r.Mode, "–"
		if r.Mode == "end-to-end" {
			mode += ", augment on " + r.Augment
			wait = fmt.Sprintf("%.2f", r.DataWaitMs)
		}
		var mem []string
		for _, d := range r.Devices {
			mem = append(mem, fmt.Sprintf("%s %s", d, model.Bytes(r.MemoryBytes[d])))
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s | %.1f | %.2f | %s | %.1f | %s | %.1f | %s |\n",
			r.Net, r.Placement, mode, r.ImagesPerS, r.MsPerStep, wait, r.GFLOPs, model.Bytes(r.MovedBytes), r.TransferMs, strings.Join(mem, ", "))
	}
	for _, r := range rows {
		if r.Skipped != "" || len(r.Layers) == 0 {
			continue
		}
		clock := "host-side time around each call"
		if len(r.Layers) > 0 && r.Layers[0].Clock == "device" {
			clock = "the GPU's time between events on the layer's stream, waits for the other tower included"
		}
		fmt.Fprintf(&b, "\n%s on `%s`, per layer (ms per step; %s):\n\n| layer | device | forward | backward | moved | transfer |\n|---|---|---|---|---|---|\n", r.Net, r.Placement, clock)
		for _, l := range r.Layers {
			moved := ""
			if l.MovedBytes > 0 {
				moved = model.Bytes(l.MovedBytes)
			}
			fmt.Fprintf(&b, "| %s | %s | %.2f | %.2f | %s | %.2f |\n", l.Layer, l.Device, l.ForwardMs, l.BackwardMs, moved, l.TransferMs)
		}
	}
	return b.String()
}
