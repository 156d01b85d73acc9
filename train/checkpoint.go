package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/alexnet-go/trainer/metrics"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// The files of a run directory.
const (
	configFile     = "config.json"
	metricsFile    = "metrics.jsonl"
	weightsFile    = "weights.safetensors"
	checkpointFile = "checkpoint.safetensors"
	previousFile   = "checkpoint.prev.safetensors"
	momentumPrefix = "momentum."
	checkpointKind = "alexnet-go checkpoint v1"
)

// State is where a run stands: with the weights and the momentum, all a
// checkpoint needs to continue exactly. The data order and every random
// draw (augmentation, dropout) are functions of the seed, the epoch, the
// batch and the step, so no generator state is kept.
type State struct {
	Epoch int     `json:"epoch"` // the epoch in progress, from 1
	Batch int     `json:"batch"` // its batches already trained
	Step  uint64  `json:"step"`  // training steps so far
	LR    float64 `json:"lr"`    // the schedule: the current rate,
	Best  float64 `json:"best"`  // the best validation error so far,
	Stale int     `json:"stale"` // epochs since it improved
	// The epoch in progress so far, for its metrics.
	Loss    float64 `json:"loss_sum"`
	Wrong   int     `json:"wrong"`
	Seen    int     `json:"seen"`
	Seconds float64 `json:"seconds"`
	Moved   int64   `json:"moved"`
	// DataWait is the seconds the loop waited for the loader.
	DataWait float64 `json:"data_wait_s,omitempty"`
	// Every finished epoch's metrics: metrics.jsonl is rewritten from them
	// on resume, so no line is lost or doubled by a crash.
	History []Metrics `json:"history"`
}

// saveCheckpoint writes the run's state, weights and momentum. The new file
// is written beside the old and renamed over it once synced; the old one is
// first linked to checkpoint.prev.safetensors. A whole checkpoint is on disk
// at every moment, whenever the process dies.
func saveCheckpoint(dir string, net *model.Net, r *parallel.Runner, st State) error {
	w, err := r.Weights()
	if err != nil {
		return err
	}
	if name := firstNonFinite(w); name != "" {
		return fmt.Errorf("step %d: %s holds NaN or Inf: training diverged; lower --lr (the checkpoint already in %s, if any, is the last good one)", st.Step, name, dir)
	}
	v, err := r.Momentum()
	if err != nil {
		return err
	}
	tensors := map[string]model.Tensor{}
	for name, t := range w {
		tensors[name] = t
		tensors[momentumPrefix+name] = v[name]
	}
	js, err := json.Marshal(st)
	if err != nil {
		return err
	}
	cur, prev := filepath.Join(dir, checkpointFile), filepath.Join(dir, previousFile)
	if _, err := os.Stat(cur); err == nil {
		tmp := prev + ".tmp"
		os.Remove(tmp)
		if err := os.Link(cur, tmp); err != nil {
			return fmt.Errorf("checkpoint: %v", err)
		}
		if err := os.Rename(tmp, prev); err != nil {
			return fmt.Errorf("checkpoint: %v", err)
		}
	}
	meta := map[string]string{"format": checkpointKind, "net": net.Name, "state": string(js)}
	if err := model.WriteSafetensors(cur, tensors, meta); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// loadCheckpoint reads the run's checkpoint for net. A corrupt latest
// checkpoint is refused, named, and the previous one is used instead;
// a checkpoint of another net is refused. It returns ok false if the run
// saved no checkpoint yet.
func loadCheckpoint(dir string, net *model.Net, note func(string)) (st State, w, v model.Weights, ok bool, err error) {
	var refused []string
	for _, name := range []string{checkpointFile, previousFile} {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		st, w, v, err := readCheckpoint(path, net)
		if errors.Is(err, errOtherNet) {
			return st, nil, nil, false, err
		}
		if err != nil {
			refused = append(refused, err.Error())
			continue
		}
		if len(refused) > 0 {
			note(fmt.Sprintf("refused %s; resuming from %s (epoch %d, batch %d)", strings.Join(refused, "; "), path, st.Epoch, st.Batch))
		}
		return st, w, v, true, nil
	}
	if len(refused) > 0 {
		return st, nil, nil, false, fmt.Errorf("--resume %s: no usable checkpoint: %s", dir, strings.Join(refused, "; "))
	}
	return st, nil, nil, false, nil
}

var errOtherNet = errors.New("checkpoint of another net")

func readCheckpoint(path string, net *model.Net) (State, model.Weights, model.Weights, error) {
	var st State
	tensors, meta, err := model.ReadSafetensors(path)
	if err != nil {
		return st, nil, nil, fmt.Errorf("corrupt checkpoint %s: %v", path, err)
	}
	if meta["format"] != checkpointKind {
		return st, nil, nil, fmt.Errorf("%s is not a checkpoint of this trainer (format %q)", path, meta["format"])
	}
	if meta["net"] != net.Name {
		return st, nil, nil, fmt.Errorf("--resume: %s is a checkpoint of net %s; this run is %s: %w", path, meta["net"], net.Name, errOtherNet)
	}
	if err := json.Unmarshal([]byte(meta["state"]), &st); err != nil {
		return st, nil, nil, fmt.Errorf("corrupt checkpoint %s: state: %v", path, err)
	}
	w, v := model.Weights{}, model.Weights{}
	for name, t := range tensors {
		if m, ok := strings.CutPrefix(name, momentumPrefix); ok {
			v[m] = t
		} else {
			w[name] = t
		}
	}
	if err := w.Check(net); err != nil {
		return st, nil, nil, fmt.Errorf("--resume: %s: %v: %w", path, err, errOtherNet)
	}
	if err := v.Check(net); err != nil {
		return st, nil, nil, fmt.Errorf("corrupt checkpoint %s: momentum: %v", path, err)
	}
	if st.Epoch < 1 || st.Batch < 0 || st.Seen < 0 {
		return st, nil, nil, fmt.Errorf("corrupt checkpoint %s: state %s", path, meta["state"])
	}
	return st, w, v, nil
}

// firstNonFinite names the first tensor, in name order, holding a NaN or an
// infinity, or returns "".
func firstNonFinite(w model.Weights) string {
	for _, name := range sortedNames(w) {
		for _, x := range w[name].Data {
			if x-x != 0 { // NaN or ±Inf
				return name
			}
		}
	}
	return ""
}

func sortedNames(w model.Weights) []string {
	names := make([]string, 0, len(w))
	for n := range w {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// writeMetrics rewrites metrics.jsonl from the finished epochs, atomically.
func writeMetrics(dir string, history []Metrics) error {
	b, err := metrics.Encode(history)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, metricsFile), b)
}

// writeAtomic writes data to a temporary file beside path, syncs it and
// renames it into place.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("--out: %v", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("--out: %v", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("--out: %v", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--out: %v", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("--out: %v", err)
	}
	return nil
}
