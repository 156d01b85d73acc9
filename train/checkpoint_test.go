package train

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/internal/safefile"
	"github.com/alexnet-go/trainer/model"
)

func testNet(t *testing.T) *model.Net {
	t.Helper()
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	return net
}

// saveStep writes a checkpoint at step: weights and momentum drawn from
// the step, so each step's checkpoint differs in every tensor.
func saveStep(t *testing.T, dir string, net *model.Net, step uint64) {
	t.Helper()
	if err := writeCheckpoint(dir, net.Name, model.Init(net, step), model.Init(net, step+1000), stateAt(step)); err != nil {
		t.Fatal(err)
	}
}

func stateAt(step uint64) State {
	return State{Epoch: 1, Batch: int(step), Step: step, LR: 0.01, Best: 0.5, History: []Metrics{{Epoch: 1, TrainLoss: 2}}}
}

// load reads the run's checkpoint, returning its step and the notes.
func load(t *testing.T, dir string, net *model.Net) (uint64, string, error) {
	t.Helper()
	var notes strings.Builder
	st, w, v, ok, err := loadCheckpoint(dir, net, func(s string) { notes.WriteString(s + "\n") })
	if err != nil {
		return 0, notes.String(), err
	}
	if !ok {
		return 0, notes.String(), errors.New("no checkpoint")
	}
	want, wantV := model.Init(net, st.Step), model.Init(net, st.Step+1000)
	for name := range want {
		if !slices.Equal(w[name].Data, want[name].Data) || !slices.Equal(v[name].Data, wantV[name].Data) {
			t.Fatalf("step %d: %s differs from the saved one", st.Step, name)
		}
	}
	return st.Step, notes.String(), nil
}

// A checkpoint reads back exactly, and is a plain safetensors file whose
// metadata holds its SHA-256.
func TestCheckpointRoundTrip(t *testing.T) {
	dir, net := t.TempDir(), testNet(t)
	saveStep(t, dir, net, 2)
	step, notes, err := load(t, dir, net)
	if err != nil || step != 2 || notes != "" {
		t.Fatalf("step %d, %v, notes %q", step, err, notes)
	}
	tensors, meta, err := model.ReadSafetensors(filepath.Join(dir, checkpointFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(meta[sumKey]) != 64 || meta["format"] != checkpointKind || len(tensors) != 2*len(model.Init(net, 2)) {
		t.Errorf("metadata %v, %d tensors", meta, len(tensors))
	}
}

// Issue #11 item 3: every byte of a checkpoint is verified. Zeroed bytes,
// a NaN written into its weights, one flipped bit anywhere are refused by
// name, and the run resumes from the previous checkpoint.
func TestCheckpointChecksum(t *testing.T) {
	dir, net := t.TempDir(), testNet(t)
	saveStep(t, dir, net, 2)
	saveStep(t, dir, net, 4)
	cur := filepath.Join(dir, checkpointFile)
	good, err := os.ReadFile(cur)
	if err != nil {
		t.Fatal(err)
	}
	hl := int(binary.LittleEndian.Uint64(good))
	data := 8 + hl // where the tensors begin
	nan := make([]byte, 4)
	binary.LittleEndian.PutUint32(nan, math.Float32bits(float32(math.NaN())))
	for _, tc := range []struct {
		name string
		edit func(b []byte)
	}{
		{"1000 zeroed bytes", func(b []byte) { clear(b[len(b)/2 : len(b)/2+1000]) }},
		{"a NaN weight", func(b []byte) { copy(b[data+4*1000:], nan) }},
		{"the last byte", func(b []byte) { b[len(b)-1] ^= 1 }},
	} {
		b := bytes.Clone(good)
		tc.edit(b)
		os.WriteFile(cur, b, 0o644)
		step, notes, err := load(t, dir, net)
		if err != nil || step != 2 || !strings.Contains(notes, "refused corrupt checkpoint "+cur+": checksum mismatch") {
			t.Errorf("%s: resumed from step %d (%v), want the previous checkpoint's 2 and a note naming the file; notes: %s", tc.name, step, err, notes)
		}
	}

	// One flipped bit anywhere: in the header's length, the header (tensor
	// table, state, padding) and the data.
	var at []int
	for i := 0; i < data; i += max(1, data/200) {
		at = append(at, i)
	}
	for i := data; i < len(good); i += (len(good) - data) / 100 {
		at = append(at, i)
	}
	for _, i := range at {
		b := bytes.Clone(good)
		b[i] ^= 0x10
		if err := verify(bytes.NewReader(b)); err == nil {
			t.Fatalf("byte %d of %d (data from %d) flipped: verified", i, len(b), data)
		}
	}
	if err := verify(bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}

	os.WriteFile(cur, good, 0o644)

	// A NaN under a valid checksum (a run that diverged, written by
	// another program) is refused too; this trainer never writes one.
	w := model.Init(net, 6)
	w["fc8.bias"].Data[3] = float32(math.Inf(1))
	if err := writeCheckpoint(dir, net.Name, w, model.Init(net, 1006), stateAt(6)); err == nil || !strings.Contains(err.Error(), "fc8.bias holds NaN or Inf") {
		t.Errorf("saving an infinite weight: %v", err)
	}
	if b, _ := os.ReadFile(cur); !bytes.Equal(b, good) {
		t.Error("a refused save changed the checkpoint")
	}
	// An epoch whose validation loss is NaN (weights finite but huge) is
	// divergence too, said as such.
	st := stateAt(6)
	st.History[0].ValLoss = math.NaN()
	if err := writeCheckpoint(dir, net.Name, model.Init(net, 6), model.Init(net, 1006), st); err == nil || !strings.Contains(err.Error(), "validation loss NaN: training diverged; lower --lr") {
		t.Errorf("saving after a NaN validation loss: %v", err)
	}
	tensors := map[string]model.Tensor{}
	for name, x := range w {
		tensors[name] = x
		tensors[momentumPrefix+name] = x
	}
	f, _ := os.Create(cur)
	encodeChecked(f, tensors, map[string]string{"format": checkpointKind, "net": net.Name, "state": `{"epoch":1,"step":6}`})
	f.Close()
	if step, notes, _ := load(t, dir, net); step != 2 || !strings.Contains(notes, "fc8.bias holds NaN or Inf") {
		t.Errorf("a checkpoint holding Inf: resumed from step %d, notes %q", step, notes)
	}
}

// deadFrom fails the k-th filesystem step and every one after it, as a
// process killed at the k-th step takes none of them.
func deadFrom(k int, n *int, steps *[]safefile.Step) func(safefile.Step) error {
	return func(s safefile.Step) error {
		*n++
		*steps = append(*steps, s)
		if *n >= k {
			return fmt.Errorf("killed at step %d, %v: %w", *n, s, safefile.ErrFault)
		}
		return nil
	}
}

// Issue #11 item 1, and the save protocol: a save killed at any of its
// filesystem steps leaves a verified checkpoint, the newest one that
// existed, also when the latest checkpoint is corrupt (a run that fell
// back to the previous one): that one is never moved over the good
// previous checkpoint. The next start removes the killed save's files and
// the run goes on.
func TestSaveKilledAtEveryStep(t *testing.T) {
	net := testNet(t)
	for _, corrupt := range []bool{false, true} {
		want := []uint64{4, 6} // the latest, or the one being saved
		if corrupt {
			want = []uint64{2, 6}
		}
		var all []safefile.Step
		for k := 1; ; k++ {
			dir := t.TempDir()
			saveStep(t, dir, net, 2)
			saveStep(t, dir, net, 4)
			cur := filepath.Join(dir, checkpointFile)
			if corrupt {
				b, _ := os.ReadFile(cur)
				os.WriteFile(cur, b[:len(b)/2], 0o644)
			}
			n := 0
			var steps []safefile.Step
			restore := safefile.SetFault(deadFrom(k, &n, &steps))
			err := writeCheckpoint(dir, net.Name, model.Init(net, 6), model.Init(net, 1006), stateAt(6))
			restore()
			if err != nil && !errors.Is(err, safefile.ErrFault) {
				t.Fatalf("corrupt latest %v, killed at step %d: %v", corrupt, k, err)
			}
			lk, lerr := lockRunDir(dir, "--resume", io.Discard)
			if lerr != nil {
				t.Fatal(lerr)
			}
			step, notes, lerr := load(t, dir, net)
			if lerr != nil || !slices.Contains(want, step) {
				t.Fatalf("corrupt latest %v, killed at step %d (%v): resumed at step %d: %v %s; want one of %v", corrupt, k, steps[len(steps)-1], step, lerr, notes, want)
			}
			// The run goes on: its next save succeeds and is read back,
			// with a verified previous checkpoint beside it.
			saveStep(t, dir, net, 8)
			if step, _, err := load(t, dir, net); err != nil || step != 8 {
				t.Fatalf("the save after: step %d, %v", step, err)
			}
			if err := verifyFile(filepath.Join(dir, previousFile)); err != nil {
				t.Fatalf("corrupt latest %v, killed at step %d: then no verified previous checkpoint: %v", corrupt, k, err)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if safefile.IsTemp(e.Name()) {
					t.Errorf("after the restart: %s left", e.Name())
				}
			}
			lk.Close()
			if err == nil {
				all = steps
				break
			}
		}
		var ops []string
		for _, s := range all {
			ops = append(ops, string(s.Op))
		}
		t.Logf("corrupt latest %v: killed at each of %d steps: %s", corrupt, len(all), strings.Join(ops, ", "))
		if len(all) < 6 {
			t.Errorf("a save of %d steps: the fault hook missed some", len(all))
		}
	}
}

// Issue #11 item 2: a run directory has one writer. A new run into a
// directory in use, and a resume of it, are refused naming the holder.
func TestRunDirLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	c := Defaults()
	c.Out = dir
	c.Data = t.TempDir() // never read: the lock comes first
	os.MkdirAll(dir, 0o755)
	if err := writeJSON(filepath.Join(dir, configFile), c); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, configFile))
	lk, err := safefile.LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	holder := fmt.Sprintf("%s is in use by %s pid %d; ", dir, filepath.Base(os.Args[0]), os.Getpid())
	if _, err := Run(context.Background(), c, io.Discard); err == nil || !strings.HasPrefix(err.Error(), "--out "+holder+"wait for it or choose another directory") {
		t.Errorf("a new run into a directory in use: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, configFile)); err == nil {
		t.Error("the refused run wrote config.json")
	}
	writeJSON(filepath.Join(dir, configFile), c)
	if _, err := Resume(context.Background(), dir, ResumeOptions{}, io.Discard); err == nil || !strings.HasPrefix(err.Error(), "--resume "+holder) {
		t.Errorf("a resume of a directory in use: %v", err)
	}
	lk.Close()
	if _, err := Resume(context.Background(), dir, ResumeOptions{}, io.Discard); err == nil || strings.Contains(err.Error(), "in use") {
		t.Errorf("after the holder closed: %v, want the run's own error (no data)", err)
	}
}

// The cost of a save (checksum, write, sync, verifying the latest, the
// renames) and of a load (read, verify, decode), in checkpoint MB/s.
func BenchmarkCheckpoint(b *testing.B) {
	for _, tc := range []struct {
		net      string
		channels int
		classes  int
	}{{"alexnet-small", 1, 10}, {"alexnet", 3, 1000}} {
		net, err := model.Build(tc.net, model.Options{Channels: tc.channels, Classes: tc.classes})
		if err != nil {
			b.Fatal(err)
		}
		w, v := model.Init(net, 1), model.Init(net, 2)
		dir := b.TempDir()
		if err := writeCheckpoint(dir, net.Name, w, v, stateAt(1)); err != nil {
			b.Fatal(err)
		}
		fi, _ := os.Stat(filepath.Join(dir, checkpointFile))
		b.Run("save/"+tc.net, func(b *testing.B) {
			b.SetBytes(fi.Size())
			for b.Loop() {
				if err := writeCheckpoint(dir, net.Name, w, v, stateAt(2)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("load/"+tc.net, func(b *testing.B) {
			b.SetBytes(fi.Size())
			for b.Loop() {
				if _, _, _, err := readCheckpoint(filepath.Join(dir, checkpointFile), net); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
