// Package plot draws what a training run leaves behind: the error curves of
// metrics.jsonl (Curves) and the first layer's kernels, the paper's Figure 3
// (Kernels). Both write PNG files atomically and refuse to overwrite a run's
// inputs (.jsonl, .json, .safetensors).
//
// Kernel tensors are (K, C, R, S) in PyTorch layout: K filters of C input
// channels, R rows by S columns.
package plot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/alexnet-go/trainer/metrics"
)

// Run is one training run's metrics, as read from its directory.
type Run struct {
	Name   string          // the label: the directory's base name plus the net, "alexnet-small-… (alexnet-small)"
	Net    string          // from config.json; empty when the run has none
	Epochs []metrics.Epoch // in file order, one per finished epoch
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

	r.Epochs, err = metrics.Read(dir)
	if err != nil {
		return r, fmt.Errorf("plot: %w", err)
	}
	if len(r.Epochs) == 0 {
		return r, fmt.Errorf("plot: %s: empty: no epoch finished yet", filepath.Join(dir, metrics.File))
	}
	return r, nil
}
