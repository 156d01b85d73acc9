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
	Epoch        int     `json:"epoch"` // from 1
	LR           float64 `json:"lr"`
	TrainLoss    float64 `json:"train_loss"`
	TrainTop1Err float64 `json:"train_top1_err"`
	ValLoss      float64 `json:"val_loss"`
	ValTop1Err   float64 `json:"val_top1_err"`
	ValTop5Err   float64 `json:"val_top5_err"`
	// ValSet names the images val_* scored, which every decision of the
	// run (the rate schedule, stopping, the best epoch) was made on:
	// "held-out" (the last training images, kept out of training) or
	// "val" (prepared data's val split). Runs from before the split lack
	// it: their val_* scored the test set (the val split for prepared
	// data).
	ValSet string `json:"val_set,omitempty"`
	// The test set's scores, never used for a decision: absent where the
	// data has no test set (prepared data) and in runs from before the
	// held-out split.
	TestLoss      *float64 `json:"test_loss,omitempty"`
	TestTop1Err   *float64 `json:"test_top1_err,omitempty"`
	TestTop5Err   *float64 `json:"test_top5_err,omitempty"`
	ImagesPerS    float64  `json:"images_per_s"`
	Seconds       float64  `json:"seconds"`
	TransferBytes int64    `json:"transfer_bytes"`
	LoaderPerS    float64  `json:"loader_images_per_s"`
	// DataWaitS is the seconds of the epoch's training the devices spent
	// waiting for input: the training loop waiting for the loader's next
	// batch, with nothing else to issue.
	DataWaitS float64 `json:"data_wait_s"`
}

// Reported is the epoch's error on the images a run reports: the test
// set's where the epoch scored one, else what val_* scored (in runs from
// before the held-out split, the test set; for prepared data, its val
// split). set names them: "test", "test (as val)" for old runs' val_*, or
// "val".
func (e Epoch) Reported() (top1, top5, loss float64, set string) {
	switch {
	case e.TestTop1Err != nil:
		top1, set = *e.TestTop1Err, "test"
		if e.TestTop5Err != nil {
			top5 = *e.TestTop5Err
		}
		if e.TestLoss != nil {
			loss = *e.TestLoss
		}
		return top1, top5, loss, set
	case e.ValSet == "":
		return e.ValTop1Err, e.ValTop5Err, e.ValLoss, "test (as val)"
	}
	return e.ValTop1Err, e.ValTop5Err, e.ValLoss, e.ValSet
}

// Best returns the index of the epoch with the lowest validation top-1
// error, the first of equals: the epoch a run chooses by validation alone.
// It returns -1 for no epochs.
func Best(epochs []Epoch) int {
	best := -1
	for i, e := range epochs {
		if best < 0 || e.ValTop1Err < epochs[best].ValTop1Err {
			best = i
		}
	}
	return best
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
	}{{"train_top1_err", e.TrainTop1Err}, {"val_top1_err", e.ValTop1Err}, {"val_top5_err", e.ValTop5Err},
		{"test_top1_err", deref(e.TestTop1Err)}, {"test_top5_err", deref(e.TestTop5Err)}} {
		if f.v < 0 || f.v > 1 {
			return e, fmt.Errorf("%s %g is outside [0, 1]", f.name, f.v)
		}
	}
	return e, nil
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}
