package train

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/metrics"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/open"
)

// The schedule, epoch by epoch, on given validation errors.
func TestSchedule(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		val  []float64 // validation errors, epochs 1, 2, …
		lr   []float64 // the rate each epoch trains at, from 1
		stop int       // the epoch after which the run stops (0: never)
	}{
		{"patience 1, no margin: the old schedule", func(c *Config) { c.Patience, c.LRMargin, c.LRDrops = 1, 0, 0 },
			[]float64{.5, .4, .4, .39, .45, .45}, []float64{1, 1, 1, .1, .1, .01}, 0},
		{"patience 3, margin 1 point", func(c *Config) { c.Patience, c.LRMargin = 3, 0.01 },
			// .395 and .392 are better, but not by a point: stale 1, 2, 3.
			[]float64{.5, .40, .395, .392, .393, .30, .31, .30, .295, .2}, []float64{1, 1, 1, 1, 1, .1, .1, .1, .1, .01}, 0},
		{"at most 2 drops", func(c *Config) { c.Patience, c.LRMargin, c.LRDrops = 1, 0, 2 },
			[]float64{.5, .5, .5, .5, .5}, []float64{1, 1, .1, .01, .01}, 0},
		{"early stop after the last drop", func(c *Config) { c.Patience, c.LRMargin, c.LRDrops, c.EarlyStop = 2, 0, 1, true },
			[]float64{.5, .5, .5, .4, .5, .5, .5}, []float64{1, 1, 1, .1, .1, .1}, 6},
		{"--lr-steps ignores the validation error", func(c *Config) { c.Patience, c.LRSteps = 1, "2, 4" },
			[]float64{.5, .5, .5, .5, .1, .1}, []float64{1, 1, .1, .1, .01, .01}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			c.LR = 1
			tc.edit(&c)
			st := State{Epoch: 1, LR: c.LR, Best: math.MaxFloat64}
			for i, v := range tc.val {
				if st.Stopped {
					if tc.stop != i {
						t.Fatalf("stopped after epoch %d, want %d", i, tc.stop)
					}
					return
				}
				if math.Abs(st.LR-tc.lr[i]) > 1e-12 {
					t.Fatalf("epoch %d trains at %g, want %g (%+v)", i+1, st.LR, tc.lr[i], st)
				}
				st, _ = c.Schedule(st, i+1, v)
			}
			if tc.stop != 0 {
				t.Fatalf("never stopped, want after epoch %d", tc.stop)
			}
		})
	}
	for _, bad := range []string{"3,2", "0", "x", "2,,3"} {
		c := Defaults()
		c.Out, c.LRSteps = "x", bad
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--lr-steps") {
			t.Errorf("--lr-steps %q: %v, want an error naming --lr-steps", bad, err)
		}
	}
}

// writeCIFAR writes a CIFAR-10 directory of 20 images per batch file,
// random, or if learnable, of class k a level about 20k; test, when not nil,
// edits test_batch.bin's records.
func writeCIFAR(t *testing.T, dir string, learnable bool, test func(rec []byte)) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"} {
		rec := make([]byte, 20*3073)
		for i := range rec {
			rec[i] = byte(rng.IntN(256))
		}
		for i := 0; i < 20; i++ {
			k := rng.IntN(10)
			rec[i*3073] = byte(k)
			if learnable {
				for j := 1; j < 3073; j++ {
					rec[i*3073+j] = byte(20*k + rng.IntN(60))
				}
			}
		}
		if name == "test_batch.bin" && test != nil {
			test(rec)
		}
		if err := os.WriteFile(filepath.Join(dir, name), rec, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func tinyConfig(t *testing.T, data string) Config {
	c := Defaults()
	c.Data, c.Out, c.Batch, c.Threads, c.LR = data, filepath.Join(t.TempDir(), "run"), 30, 1, 0.05
	return c
}

// The schedule decides on the held-out images alone: two runs whose test
// sets differ (whose test errors would step the schedule otherwise) train
// at the same rates, validate and train the same, and differ only in the
// test scores they record.
func TestScheduleIgnoresTestSet(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	writeCIFAR(t, a, true, nil)
	writeCIFAR(t, b, true, func(rec []byte) { // wrong labels
		for i := 0; i < 20; i++ {
			rec[i*3073] = (rec[i*3073] + 5) % 10
		}
	})
	var runs [2][]Metrics
	for i, dir := range []string{a, b} {
		c := tinyConfig(t, dir)
		c.Epochs, c.Patience, c.LRMargin = 5, 1, 0
		var log bytes.Buffer
		ms, err := Run(context.Background(), c, &log)
		if err != nil {
			t.Fatalf("%v\n%s", err, log.String())
		}
		if !strings.Contains(log.String(), "90 training, 10 validation (held out: the last training images), 20 test images") {
			t.Errorf("log lacks the split:\n%s", log.String())
		}
		runs[i] = ms
	}
	c := tinyConfig(t, a)
	c.Patience, c.LRMargin = 1, 0
	// Replays the schedule over one of the recorded errors.
	replay := func(ms []Metrics, err func(Metrics) float64) []float64 {
		st := State{Epoch: 1, LR: c.LR, Best: math.MaxFloat64}
		var lrs []float64
		for _, m := range ms {
			lrs = append(lrs, st.LR)
			st, _ = c.Schedule(st, m.Epoch, err(m))
		}
		return lrs
	}
	val := func(m Metrics) float64 { return m.ValTop1Err }
	test := func(m Metrics) float64 { return *m.TestTop1Err }
	differs := false
	for i := range runs[0] {
		x, y := runs[0][i], runs[1][i]
		if x.LR != y.LR || x.ValTop1Err != y.ValTop1Err || x.ValLoss != y.ValLoss || x.TrainLoss != y.TrainLoss {
			t.Errorf("epoch %d: the runs differ but for their test sets: %+v, %+v", i+1, x, y)
		}
		if x.ValSet != "held-out" || x.TestTop1Err == nil || y.TestTop1Err == nil {
			t.Fatalf("epoch %d: val_set %q, test error %v: want held-out and a test error", i+1, x.ValSet, x.TestTop1Err)
		}
		differs = differs || *x.TestLoss != *y.TestLoss
	}
	if !differs {
		t.Fatal("the two test sets scored the same: the test does not tell")
	}
	for i, ms := range runs {
		lrs := replay(ms, val)
		for j, m := range ms {
			if m.LR != lrs[j] {
				t.Errorf("run %d epoch %d: lr %g, the schedule on validation errors says %g", i, m.Epoch, m.LR, lrs[j])
			}
		}
	}
	// The precondition: some test set would have decided otherwise.
	if a, b := replay(runs[0], test), replay(runs[1], test); equal(a, replay(runs[0], val)) && equal(b, replay(runs[0], val)) {
		t.Fatalf("on either test set's errors the schedule decides as on validation (%v): the test does not tell", a)
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A run stopped mid-schedule and resumed trains at the rates, and ends
// with the weights, of the run that was not stopped: the schedule's state
// (best, stale epochs, drops) is in the checkpoint.
func TestResumeMidSchedule(t *testing.T) {
	dir := t.TempDir()
	writeCIFAR(t, dir, false, nil)
	c := tinyConfig(t, dir)
	// A margin no epoch after the first beats: the rate drops after epoch
	// 2, and only once.
	c.Epochs, c.Patience, c.LRMargin, c.LRDrops = 4, 1, 0.9, 1
	whole, err := Run(context.Background(), c, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{0.05, 0.05, 0.005, 0.005}
	for i, m := range whole {
		if math.Abs(m.LR-want[i]) > 1e-12 {
			t.Fatalf("epoch %d lr %g, want %g", i+1, m.LR, want[i])
		}
	}
	d := c
	d.Out, d.Epochs = filepath.Join(t.TempDir(), "run"), 2
	if _, err := Run(context.Background(), d, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	resumed, err := Resume(context.Background(), d.Out, ResumeOptions{Epochs: 4}, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	for i := range whole {
		x, y := whole[i], resumed[i]
		if x.LR != y.LR || x.ValTop1Err != y.ValTop1Err || x.TrainLoss != y.TrainLoss || *x.TestLoss != *y.TestLoss {
			t.Errorf("epoch %d: resumed %+v, whole %+v", i+1, y, x)
		}
	}
	wa, _ := os.ReadFile(filepath.Join(c.Out, weightsFile))
	wb, _ := os.ReadFile(filepath.Join(d.Out, weightsFile))
	if len(wa) == 0 || !bytes.Equal(wa, wb) {
		t.Error("the resumed run's weights differ from the whole run's")
	}
	// The best epoch's weights are kept, the same in both.
	best := whole[metrics.Best(whole)].Epoch
	for _, dir := range []string{c.Out, d.Out} {
		_, meta, err := model.ReadSafetensors(filepath.Join(dir, BestWeightsFile))
		if err != nil || meta["epoch"] != fmt.Sprint(best) {
			t.Errorf("%s: %v, epoch %q; want the best epoch by validation, %d (val errors %v)", BestWeightsFile, err, meta["epoch"], best, valErrs(whole))
		}
	}
	ba, _ := os.ReadFile(filepath.Join(c.Out, BestWeightsFile))
	bb, _ := os.ReadFile(filepath.Join(d.Out, BestWeightsFile))
	if !bytes.Equal(ba, bb) {
		t.Errorf("the resumed run's %s differs from the whole run's", BestWeightsFile)
	}
}

func valErrs(ms []Metrics) []float64 {
	var v []float64
	for _, m := range ms {
		v = append(v, m.ValTop1Err)
	}
	return v
}

// A run from before the held-out split (its config.json has no val_split,
// lr_margin or lr_drops) resumes as it ran: validated on the test set,
// with nothing scored apart, the rate divided on any stall.
func TestResumeOldRun(t *testing.T) {
	dir := t.TempDir()
	writeCIFAR(t, dir, false, nil)
	c := tinyConfig(t, dir)
	c.Epochs = 1
	if _, err := Run(context.Background(), c, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.Out, configFile)
	b, _ := os.ReadFile(path)
	var keys map[string]any
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"val_split", "lr_margin", "lr_drops"} {
		delete(keys, k)
	}
	keys["patience"] = 1
	b, _ = json.Marshal(keys)
	os.WriteFile(path, b, 0o644)
	// Its checkpoint, from before checkpoints held the config.
	net, err := model.Build(c.Net, model.Options{Channels: 3, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	st, w, mom, ok, err := loadCheckpoint(c.Out, net, func(string) {})
	if err != nil || !ok {
		t.Fatalf("the checkpoint: %v", err)
	}
	st.Config = nil
	if err := writeCheckpoint(c.Out, net.Name, w, mom, st); err != nil {
		t.Fatal(err)
	}
	old, err := ReadConfig(c.Out)
	if err != nil || old.ValSplit != open.NoValSplit || old.LRMargin != 0 || old.LRDrops != 0 {
		t.Fatalf("an old config reads as %+v (%v); want val split %d, no margin, no limit on drops", old, err, open.NoValSplit)
	}
	var log bytes.Buffer
	ms, err := Resume(context.Background(), c.Out, ResumeOptions{Epochs: 2}, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if m := ms[1]; m.ValSet != "" || m.TestTop1Err != nil || !strings.Contains(log.String(), "100 training, 20 validation (the test set)") {
		t.Errorf("the old run's epoch 2: val_set %q, test error %v; want none (its test set validates)\n%s", m.ValSet, m.TestTop1Err, log.String())
	}
}
