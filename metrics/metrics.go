// Package metrics is a run's metrics.jsonl: one JSON object per finished
// epoch, written by train, read by plot, bench and resume.
package metrics

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// File is the name of the metrics file in a run directory.
const File = "metrics.jsonl"

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
	LoaderPerS    float64 `json:"loader_images_per_s"`
	// DataWaitS is the seconds of the epoch's training the devices spent
	// waiting for input: the training loop waiting for the loader's next
	// batch, with nothing else to issue.
	DataWaitS float64 `json:"data_wait_s"`
}

// Read reads dir/metrics.jsonl. Blank lines are skipped; a line that is
// not a JSON object, or lacks epoch, train_top1_err or val_top1_err, or has
// an error outside [0, 1], is an error naming the file and the line. A
// missing file wraps fs.ErrNotExist; an empty one gives no epochs.
func Read(dir string) ([]Epoch, error) {
	path := filepath.Join(dir, File)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file (not a run directory, or no epoch finished yet): %w", path, os.ErrNotExist)
		}
		return nil, err
	}
	defer f.Close()
	var out []Epoch
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		e, err := parseEpoch(line)
		if err != nil {
			return nil, fmt.Errorf("%s: malformed line %d: %v", path, n, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return out, nil
}

// Encode is the content of metrics.jsonl for these epochs.
func Encode(epochs []Epoch) ([]byte, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, e := range epochs {
		if err := enc.Encode(e); err != nil {
			return nil, err
		}
	}
	return []byte(b.String()), nil
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
