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

// ScaleOptions configure bench scale.
type ScaleOptions struct {
	Net      string
	Replicas []int // replica counts to time: 1, 2, 4
	// GPUs, when set, is a --gpus value with enough devices for the most
	// replicas: R replicas run on its first R·towers entries. Empty: CPU
	// devices, Threads each.
	GPUs        string
	Batch       int // the global batch, split over the replicas as train splits it
	Repeats     int // timed steps after the warm-up (1 step; 10 on a GPU)
	Threads     int // per CPU device; 0: one
	BucketBytes int // parallel.Options.BucketBytes; 0: its default
	Out         string
}

// ScaleRow is one replica count.
type ScaleRow struct {
	Replicas   int       `json:"replicas"`
	Placement  string    `json:"placement"`
	Skipped    string    `json:"skipped,omitempty"`
	Batch      int       `json:"batch"`             // global
	PerReplica int       `json:"batch_per_replica"` // Batch / Replicas
	ImagesPerS float64   `json:"images_per_s"`
	MsPerStep  float64   `json:"ms_per_step_median"`
	StepsMs    []float64 `json:"steps_ms"`
	// ReducedBytes is what each replica hands its groups to average in a
	// step (every gradient, 4 bytes a value); 0 for one replica.
	ReducedBytes int64 `json:"reduced_bytes_per_step"`
	// Buckets is the Reduce calls per step of one worker (a group member).
	Buckets float64 `json:"buckets_per_step"`
	// CollectiveMs is, per step and group member, the wall time during
	// which at least one of the member's buckets was in flight (from its
	// Reduce call to the mean being ready), where the reducer reports it;
	// −1 where it does not.
	CollectiveMs float64 `json:"collective_ms_per_step"`
	// BlockedMs is, per step and group member, the time the worker spent
	// in the reducer's calls instead of its backward pass: the part of
	// the collective the backward did not hide (waits for a slower
	// replica included).
	BlockedMs float64 `json:"blocked_ms_per_step"`
	// Hidden is 1 − BlockedMs/CollectiveMs, within [0, 1]: the fraction of
	// the collective the backward pass hid.
	Hidden float64 `json:"hidden"`
	// Efficiency is ImagesPerS / (Replicas × one replica's ImagesPerS).
	Efficiency float64 `json:"efficiency"`
	// Reduction says how each group averaged, one line per group, as
	// open.Reducers chose as the trainer does (the in-process reference on
	// CPU devices, NCCL or device copies on CUDA devices).
	Reduction []string `json:"reduction,omitempty"`
}

// Scale times training steps of net on 1, 2, 4… data-parallel replicas at
// the same global batch, each step the real one (the gradients averaged
// as the trainer averages them, open.Reducers, in buckets overlapped with
// the backward pass), and reports images/s, the bytes reduced, the time in the
// collective, how much of it the backward hid, and the scaling efficiency
// against one replica. It writes scale.md and scale.json to Out.
func Scale(o ScaleOptions) ([]ScaleRow, error) {
	if o.Batch < 1 || o.Repeats < 1 || len(o.Replicas) == 0 {
		return nil, fmt.Errorf("bench scale: --batch %d, --repeats %d, --replicas %v: give a batch and repeats of at least 1 and replica counts", o.Batch, o.Repeats, o.Replicas)
	}
	opt := model.Options{Channels: 1, Classes: 10}
	if model.InputSize(o.Net) > 32 {
		opt = model.Options{Channels: 3, Classes: 1000}
	}
	net, err := model.Build(o.Net, opt)
	if err != nil {
		return nil, fmt.Errorf("bench scale: --net: %w", err)
	}
	threads := o.Threads
	if threads == 0 {
		threads = 1
	}
	var entries []string
	if o.GPUs != "" {
		if _, err := open.ParseGPUs(o.GPUs); err != nil {
			return nil, err
		}
		entries = strings.Split(o.GPUs, ",")
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
	var rows []ScaleRow
	for _, R := range o.Replicas {
		row := ScaleRow{Replicas: R, Batch: o.Batch}
		if R < 1 || o.Batch%R != 0 {
			return nil, fmt.Errorf("bench scale: --batch %d does not split evenly over %d replicas: give a multiple of every --replicas count", o.Batch, R)
		}
		row.PerReplica = o.Batch / R
		spec := strings.TrimSuffix(strings.Repeat("cpu,", R*net.Towers), ",")
		if entries != nil {
			if len(entries) < R*net.Towers {
				row.Placement = o.GPUs
				row.Skipped = fmt.Sprintf("--gpus %s has %d devices; %d replicas of %s need %d", o.GPUs, len(entries), R, net.Name, R*net.Towers)
				rows = append(rows, row)
				continue
			}
			spec = strings.Join(entries[:R*net.Towers], ",")
		}
		row.Placement = spec
		devs, err := open.Devices(spec, open.DeviceOptions{Threads: threads})
		if errors.Is(err, open.ErrNoCUDA) || errors.Is(err, open.ErrNoSuchGPU) {
			row.Skipped = "no such device here"
			rows = append(rows, row)
			continue
		}
		if err != nil {
			return nil, err
		}
		err = timeReplicas(&row, net, devs.Split(R), w, in, o)
		if cerr := devs.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	var one float64
	for _, r := range rows {
		if r.Replicas == 1 && r.Skipped == "" {
			one = r.ImagesPerS
		}
	}
	for i := range rows {
		if one > 0 && rows[i].Skipped == "" {
			rows[i].Efficiency = rows[i].ImagesPerS / (float64(rows[i].Replicas) * one)
		}
	}
	if o.Out != "" {
		if err := os.MkdirAll(o.Out, 0o755); err != nil {
			return nil, fmt.Errorf("bench scale: --out %s: %v", o.Out, err)
		}
		js, _ := json.MarshalIndent(rows, "", "  ")
		if err := os.WriteFile(filepath.Join(o.Out, "scale.json"), append(js, '\n'), 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(o.Out, "scale.md"), []byte(ScaleMarkdown(o.Net, rows)), 0o644); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// timeReplicas fills row with the median of o.Repeats steps of R replicas
// after a warm-up, and the reduction's statistics over those steps.
func timeReplicas(row *ScaleRow, net *model.Net, devs [][]gpu.Device, w model.Weights, in parallel.Batch, o ScaleOptions) error {
	var how strings.Builder
	rs, err := parallel.NewReplicas(net, devs, w, parallel.Options{Batch: in.N, Seed: 1, Momentum: 0.9, WeightDecay: 5e-4, BucketBytes: o.BucketBytes,
		Reducers: open.Reducers(nil, &how)})
	if err != nil {
		return err
	}
	defer rs.Close()
	if how.Len() > 0 {
		row.Reduction = strings.Split(strings.TrimSpace(how.String()), "\n")
	}
	warm := 1
	if slices.ContainsFunc(devs[0], func(d gpu.Device) bool { _, ok := d.(gpu.Timer); return ok }) {
		warm = 10 // a GPU: cuDNN's algorithm search, the clocks
	}
	for range warm {
		if _, err := rs.Train(in, 0.01); err != nil {
			return err
		}
	}
	rs.ReduceStats()
	for range o.Repeats {
		began := time.Now()
		if _, err := rs.Train(in, 0.01); err != nil {
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
	st := rs.ReduceStats()
	if st.Members == 0 {
		return nil
	}
	per := float64(o.Repeats * st.Members) // member-steps
	row.ReducedBytes = st.Bytes / int64(o.Repeats*rs.R())
	row.Buckets = float64(st.Calls) / per
	row.BlockedMs = float64(st.Blocked) / 1e6 / per
	row.CollectiveMs = -1
	if st.Collective >= 0 {
		row.CollectiveMs = float64(st.Collective) / 1e6 / per
		if row.CollectiveMs > 0 {
			row.Hidden = min(1, max(0, 1-row.BlockedMs/row.CollectiveMs))
		}
	}
	return nil
}

// ScaleMarkdown renders the rows as a table.
func ScaleMarkdown(net string, rows []ScaleRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, data-parallel replicas at the same global batch (the gradients averaged as the trainer averages them, in buckets, overlapped with the backward pass; see below how):\n\n", net)
	b.WriteString("| replicas | placement | batch per replica | images/s | ms/step (median) | reduced/step per replica | buckets/step | in the collective ms/step | blocked ms/step | hidden by backward | scaling efficiency |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		if r.Skipped != "" {
			fmt.Fprintf(&b, "| %d | `%s` | – | – | – | – | – | – | – | – | skipped: %s |\n", r.Replicas, r.Placement, r.Skipped)
			continue
		}
		if r.Replicas == 1 {
			fmt.Fprintf(&b, "| 1 | `%s` | %d | %.1f | %.2f | – | – | – | – | – | 1 |\n", r.Placement, r.PerReplica, r.ImagesPerS, r.MsPerStep)
			continue
		}
		coll, hidden := "n/a", "n/a"
		if r.CollectiveMs >= 0 {
			coll, hidden = fmt.Sprintf("%.2f", r.CollectiveMs), fmt.Sprintf("%.0f%%", 100*r.Hidden)
		}
		eff := "–"
		if r.Efficiency > 0 {
			eff = fmt.Sprintf("%.2f", r.Efficiency)
		}
		fmt.Fprintf(&b, "| %d | `%s` | %d | %.1f | %.2f | %s | %.1f | %s | %.2f | %s | %s |\n",
			r.Replicas, r.Placement, r.PerReplica, r.ImagesPerS, r.MsPerStep, model.Bytes(r.ReducedBytes), r.Buckets, coll, r.BlockedMs, hidden, eff)
	}
	for _, r := range rows {
		for _, l := range r.Reduction {
			fmt.Fprintf(&b, "\n- %d replicas: %s", r.Replicas, l)
		}
	}
	b.WriteString("\n\nPer step and group member (one worker of one replica): in the collective, the wall time during which at least one of the member's buckets was in flight (from its Reduce call to the bucket's mean being ready); blocked, the time the worker spent in the reducer's calls instead of its backward pass (waits for slower replicas included). Scaling efficiency: images/s ÷ (replicas × one replica's images/s).\n")
	return b.String()
}
