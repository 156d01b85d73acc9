// Package plot draws what a training run leaves behind: the error curves of
// metrics.jsonl (Curves) and the first layer's kernels, the paper's Figure 3
// (Kernels). Both write PNG files atomically and refuse to overwrite a run's
// inputs (.jsonl, .json, .safetensors).
//
// Kernel tensors are (K, C, R, S) in PyTorch layout: K filters of C input
// channels, R rows by S columns.
package plot

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Run is one training run's metrics, as read from its directory.
type Run struct {
	Name   string  // the label: the directory's base name plus the net, "alexnet-small-… (alexnet-small)"
	Net    string  // from config.json; empty when the run has none
	Epochs []Epoch // in file order, one per finished epoch
}

// Epoch is one line of metrics.jsonl. Errors are fractions in [0, 1].
type Epoch struct {
	Epoch         int     `json:"epoch"` // from 1
	LR            float64 `json:"lr"`
	TrainLoss     float64 `json:"train_loss"`
	TrainTop1Err  float64 `json:"train_top1_err"`
	ValLoss       float64 `json:"val_loss"`
	ValTop1Err    float64 `json:"val_top1_err"`
	ValTop5Err    float64 `json:"val_top5_err"`
	ImagesPerS    float64 `json:"images_per_s"`
	Seconds       float64 `json:"seconds"`
	TransferBytes int64   `json:"transfer_bytes"`
}

// ReadRun reads dir/metrics.jsonl, one JSON object per epoch, and the net's
// name from dir/config.json when that file exists. Blank lines are skipped; a
// line that is not a JSON object, or lacks epoch, train_top1_err or
// val_top1_err, or has an error outside [0, 1], is an error naming the file
// and the line.
func ReadRun(dir string) (Run, error) {
	var r Run
	abs, err := filepath.Abs(dir)
	if err != nil {
		return r, fmt.Errorf("plot: %v", err)
	}
	r.Name = filepath.Base(abs)

	cfgPath := filepath.Join(dir, "config.json")
	if b, err := os.ReadFile(cfgPath); err == nil {
		var cfg struct {
			Net string `json:"net"`
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return r, fmt.Errorf("plot: %s: malformed: %v", cfgPath, err)
		}
		r.Net = cfg.Net
	} else if !errors.Is(err, os.ErrNotExist) {
		return r, fmt.Errorf("plot: %v", err)
	}
	if r.Net != "" {
		r.Name += " (" + r.Net + ")"
	}

	path := filepath.Join(dir, "metrics.jsonl")
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return r, fmt.Errorf("plot: %s: no such file (not a run directory, or no epoch finished yet)", path)
		}
		return r, fmt.Errorf("plot: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		e, err := parseEpoch(line)
		if err != nil {
			return r, fmt.Errorf("plot: %s: malformed line %d: %v", path, n, err)
		}
		r.Epochs = append(r.Epochs, e)
	}
	if err := sc.Err(); err != nil {
		return r, fmt.Errorf("plot: %s: %v", path, err)
	}
	if len(r.Epochs) == 0 {
		return r, fmt.Errorf("plot: %s: empty: no epoch finished yet", path)
	}
	return r, nil
}

// parseEpoch decodes one line of metrics.jsonl and checks the fields Curves
// draws: present, and errors in [0, 1] (not percent).
func parseEpoch(line []byte) (Epoch, error) {
	var e Epoch
	if err := json.Unmarshal(line, &e); err != nil {
		return e, err
	}
	var seen map[string]json.RawMessage
	if err := json.Unmarshal(line, &seen); err != nil {
		return e, err
	}
	for _, k := range []string{"epoch", "train_top1_err", "val_top1_err"} {
		if _, ok := seen[k]; !ok {
			return e, fmt.Errorf("no %s", k)
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"train_top1_err", e.TrainTop1Err}, {"val_top1_err", e.ValTop1Err}, {"val_top5_err", e.ValTop5Err}} {
		if f.v < 0 || f.v > 1 {
			return e, fmt.Errorf("%s %g is outside [0, 1]", f.name, f.v)
		}
	}
	return e, nil
}
