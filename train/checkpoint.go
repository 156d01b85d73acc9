package train

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/alexnet-go/trainer/internal/safefile"
	"github.com/alexnet-go/trainer/metrics"
	"github.com/alexnet-go/trainer/model"
)

// The files of a run directory.
const (
	configFile     = "config.json"
	metricsFile    = "metrics.jsonl"
	weightsFile    = "weights.safetensors"
	checkpointFile = "checkpoint.safetensors"
	previousFile   = "checkpoint.prev.safetensors"
	momentumPrefix = "momentum."
	checkpointKind = "alexnet-go checkpoint v2" // v2: with a checksum
	legacyKind     = "alexnet-go checkpoint v1" // before checksums: read unverified
)

// State is where a run stands: with the weights and the momentum, all a
// checkpoint needs to continue exactly. The data order and every random
// draw (augmentation, dropout) are functions of the seed, the epoch, the
// batch and the step, so no generator state is kept.
type State struct {
	Epoch int     `json:"epoch"`           // the epoch in progress, from 1
	Batch int     `json:"batch"`           // its batches already trained
	Step  uint64  `json:"step"`            // training steps so far
	LR    float64 `json:"lr"`              // the schedule: the current rate,
	Best  float64 `json:"best"`            // the best validation error so far,
	Stale int     `json:"stale"`           // epochs since it improved,
	Drops int     `json:"drops,omitempty"` // times the rate was divided
	// Stopped: the schedule ended the run (--early-stop).
	Stopped bool `json:"stopped,omitempty"`
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
	// Config is the run's config when the checkpoint was saved: a resume
	// refuses a config.json edited since in anything that changes what
	// the run computes (nil in checkpoints from before it was recorded).
	Config *Config `json:"config,omitempty"`
}

// params is where a checkpoint's weights and momentum come from: replica
// 0 of the replicas, whose weights every replica holds alike.
type params interface {
	Weights() (model.Weights, error)
	Momentum() (model.Weights, error)
}

// saveCheckpoint writes the run's state, weights and momentum (see
// writeCheckpoint). Weights or momentum holding a NaN or an infinity are
// never saved: the checkpoint on disk stays the last good one.
func saveCheckpoint(dir string, net *model.Net, r params, st State) error {
	w, err := r.Weights()
	if err != nil {
		return err
	}
	v, err := r.Momentum()
	if err != nil {
		return err
	}
	return writeCheckpoint(dir, net.Name, w, v, st)
}

// writeCheckpoint saves a checkpoint so that one verified checkpoint is on
// disk at every instant, whenever the process dies:
//
//  1. the new checkpoint is written to a temporary file and synced;
//  2. if checkpoint.safetensors verifies, it is renamed to
//     checkpoint.prev.safetensors; one that does not (corrupt, or absent)
//     is left where it is, so it never replaces a good previous one;
//  3. the temporary file is renamed to checkpoint.safetensors and the
//     directory synced.
//
// Killed before 2, the latest is untouched; between 2 and 3, the previous
// one is the latest good one; the temporary file of a killed save is
// removed at the next start (cleanRunDir).
func writeCheckpoint(dir, netName string, w, v model.Weights, st State) error {
	if name := firstNonFinite(w); name != "" {
		return fmt.Errorf("step %d: %s holds NaN or Inf: training diverged; lower --lr (the checkpoint already in %s, if any, is the last good one)", st.Step, name, dir)
	}
	if name := firstNonFinite(v); name != "" {
		return fmt.Errorf("step %d: the momentum of %s holds NaN or Inf: training diverged; lower --lr (the checkpoint already in %s, if any, is the last good one)", st.Step, name, dir)
	}
	for _, m := range st.History {
		if math.IsNaN(m.TrainLoss+m.ValLoss) || math.IsInf(m.TrainLoss+m.ValLoss, 0) {
			return fmt.Errorf("epoch %d: train loss %v, validation loss %v: training diverged; lower --lr (the checkpoint already in %s, if any, is the last good one)", m.Epoch, m.TrainLoss, m.ValLoss, dir)
		}
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
	meta := map[string]string{"format": checkpointKind, "net": netName, "state": string(js)}
	cur, prev := filepath.Join(dir, checkpointFile), filepath.Join(dir, previousFile)

	f, err := safefile.Create(cur)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	if err := encodeChecked(f, tensors, meta); err != nil {
		return fmt.Errorf("checkpoint: writing %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if verifyFile(cur) == nil {
		if err := safefile.Rename(cur, prev); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// loadCheckpoint reads the run's checkpoint for net. A latest checkpoint
// that does not verify (its checksum, its tensors, its state) is refused,
// named, and the previous one is used instead; a checkpoint of another
// net is refused. It returns ok false if the run saved no checkpoint yet.
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
	b, err := os.ReadFile(path)
	if err != nil {
		return st, nil, nil, fmt.Errorf("corrupt checkpoint %s: %v", path, err)
	}
	sumErr := verify(bytes.NewReader(b))
	if sumErr != nil && !errors.Is(sumErr, errNoChecksum) {
		return st, nil, nil, fmt.Errorf("corrupt checkpoint %s: %v", path, sumErr)
	}
	tensors, meta, err := model.DecodeSafetensors(b)
	if err != nil {
		return st, nil, nil, fmt.Errorf("corrupt checkpoint %s: %v", path, err)
	}
	if meta["format"] != checkpointKind && meta["format"] != legacyKind {
		return st, nil, nil, fmt.Errorf("%s is not a checkpoint of this trainer (format %q)", path, meta["format"])
	}
	if sumErr != nil && meta["format"] != legacyKind {
		return st, nil, nil, fmt.Errorf("corrupt checkpoint %s: %v", path, sumErr)
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
	if name := firstNonFinite(w); name != "" {
		return st, nil, nil, fmt.Errorf("corrupt checkpoint %s: %s holds NaN or Inf", path, name)
	}
	if name := firstNonFinite(v); name != "" {
		return st, nil, nil, fmt.Errorf("corrupt checkpoint %s: the momentum of %s holds NaN or Inf", path, name)
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
	return safefile.WriteFile(filepath.Join(dir, metricsFile), b)
}

// A checkpoint's metadata holds sumKey: the SHA-256 of the whole file as
// written with the 64 hex digits of that value all '0'. Every byte is
// covered: the header's length, the header (tensor table, state, padding)
// and the data.
const sumKey = "sha256"

var zeroSum = strings.Repeat("0", 64)

// encodeChecked writes tensors and meta as a safetensors file whose
// metadata holds its checksum. It encodes twice, once to hash and once to
// write, so it never holds the file in memory.
func encodeChecked(w io.Writer, tensors map[string]model.Tensor, meta map[string]string) error {
	m := maps.Clone(meta)
	m[sumKey] = zeroSum
	h := sha256.New()
	if err := model.EncodeSafetensors(h, tensors, m); err != nil {
		return err
	}
	m[sumKey] = hex.EncodeToString(h.Sum(nil))
	return model.EncodeSafetensors(w, tensors, m)
}

var errNoChecksum = errors.New("no checksum in its metadata")

// maxHeader bounds the header verify reads (the safetensors limit).
const maxHeader = 100 << 20

// verify checks the checksum of the checkpoint file read from r, reading
// it once, whatever its size, in little memory.
func verify(r io.Reader) error {
	var n [8]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return fmt.Errorf("file too short for the header (%v)", err)
	}
	hl := binary.LittleEndian.Uint64(n[:])
	if hl > maxHeader {
		return fmt.Errorf("header length %d is more than %d", hl, maxHeader)
	}
	header := make([]byte, hl)
	if _, err := io.ReadFull(r, header); err != nil {
		return fmt.Errorf("header length %d does not fit the file (%v)", hl, err)
	}
	var h struct {
		Meta map[string]string `json:"__metadata__"`
	}
	if err := json.Unmarshal(header, &h); err != nil {
		return fmt.Errorf("header is not JSON: %v", err)
	}
	sum, ok := h.Meta[sumKey]
	if !ok {
		return errNoChecksum
	}
	field := []byte(`"` + sumKey + `":"` + sum + `"`)
	if _, err := hex.DecodeString(sum); err != nil || len(sum) != len(zeroSum) || bytes.Count(header, field) != 1 {
		return fmt.Errorf("checksum field %q is not 64 hex digits found once in the header", sum)
	}
	at := bytes.Index(header, field) + len(field) - 1 - len(sum) // the digits
	d := sha256.New()
	d.Write(n[:])
	d.Write(header[:at])
	d.Write([]byte(zeroSum))
	d.Write(header[at+len(sum):])
	if _, err := io.Copy(d, r); err != nil {
		return err
	}
	if got := hex.EncodeToString(d.Sum(nil)); got != sum {
		return fmt.Errorf("checksum mismatch: the file changed after it was written (its bytes hash to %s…, its header says %s…)", got[:12], sum[:12])
	}
	return nil
}

// verifyFile checks the checksum of the checkpoint file at path.
func verifyFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return verify(bufio.NewReaderSize(f, 1<<20))
}
