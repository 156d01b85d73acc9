package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/model"
)

// The test binary doubles as the trainer: with TRAINER_TEST_MAIN=1 it runs
// main, so the tests can signal and kill a real training process.
func TestMain(m *testing.M) {
	if os.Getenv("TRAINER_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// trainerCmd returns the trainer as a subprocess.
func trainerCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TRAINER_TEST_MAIN=1")
	return cmd
}

var (
	fixtureOnce sync.Once
	fixtureDir  string // synthetic IDX data shared by the tests below
	reference   string // an uninterrupted run's directory
	fixtureErr  error
)

// runArgs trains alexnet-small for 3 epochs of 12 steps on 384 synthetic
// images, checkpointing every 2 steps.
func runArgs(data, out string) []string {
	return []string{"train", "--net", "alexnet-small", "--gpus", "cpu,cpu", "--threads", "1", "--data", data,
		"--epochs", "3", "--batch", "32", "--limit", "384", "--checkpoint-steps", "2", "--seed", "7", "--lr", "0.02", "--out", out}
}

func fixture(t *testing.T) (data, ref string) {
	fixtureOnce.Do(func() {
		root, err := os.MkdirTemp("", "trainer-resume")
		if err != nil {
			fixtureErr = err
			return
		}
		fixtureDir = filepath.Join(root, "data")
		os.Mkdir(fixtureDir, 0o755)
		writeIDX(t, fixtureDir, 384)
		reference = filepath.Join(root, "reference")
		out, err := trainerCmd(runArgs(fixtureDir, reference)...).CombinedOutput()
		if err != nil {
			fixtureErr = &runError{err, string(out)}
		}
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixtureDir, reference
}

type runError struct {
	err error
	out string
}

func (e *runError) Error() string { return e.err.Error() + "\n" + e.out }

// sameRun checks that dir's run ended exactly where the reference did:
// byte-identical weights and the same losses and errors every epoch.
func sameRun(t *testing.T, dir, ref string) {
	t.Helper()
	a, _ := os.ReadFile(filepath.Join(dir, "weights.safetensors"))
	b, _ := os.ReadFile(filepath.Join(ref, "weights.safetensors"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("%s: final weights differ from the uninterrupted run's", dir)
	}
	ma, mb := readMetrics(t, dir), readMetrics(t, ref)
	if len(ma) != 3 || len(mb) != 3 {
		t.Fatalf("metrics: %d and %d epochs, want 3", len(ma), len(mb))
	}
	for i := range ma {
		for _, k := range []string{"epoch", "lr", "train_loss", "train_top1_err", "val_loss", "val_top1_err", "val_top5_err", "transfer_bytes"} {
			if ma[i][k] != mb[i][k] {
				t.Errorf("epoch %d %s: %v, uninterrupted %v", i+1, k, ma[i][k], mb[i][k])
			}
		}
	}
}

func readMetrics(t *testing.T, dir string) []map[string]any {
	f, err := os.Open(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("metrics.jsonl: %v: %s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// SIGKILL at random moments, each time resumed, ends exactly where an
// uninterrupted run ends.
func TestKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("trains four runs")
	}
	data, ref := fixture(t)
	dir := filepath.Join(t.TempDir(), "run")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	for attempt := 0; attempt < 12; attempt++ {
		args := runArgs(data, dir)
		if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
			args = []string{"train", "--resume", dir}
		}
		cmd := trainerCmd(args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if kills < 4 {
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run ended: %v\n%s", err, out.String())
				}
				sameRun(t, dir, ref)
				return
			case <-time.After(time.Duration(300+rng.IntN(2500)) * time.Millisecond):
				cmd.Process.Signal(syscall.SIGKILL)
				<-done
				kills++
				t.Logf("killed (%d): %s", kills, lastLine(out.String()))
				continue
			}
		}
		if err := <-done; err != nil {
			t.Fatalf("final resume: %v\n%s", err, out.String())
		}
		sameRun(t, dir, ref)
		return
	}
	t.Fatal("no run finished")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// SIGTERM (a preempted instance) saves a checkpoint and exits 0; resuming
// finishes the run exactly.
func TestSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two runs")
	}
	data, ref := fixture(t)
	dir := filepath.Join(t.TempDir(), "run")
	cmd := trainerCmd(runArgs(data, dir)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "epoch 1/3 step") {
			cmd.Process.Signal(syscall.SIGTERM)
			break
		}
	}
	for sc.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM: exit %v, want 0\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "checkpoint saved") || !strings.Contains(stderr.String(), "--resume "+dir) {
		t.Errorf("stderr does not say a checkpoint was saved and how to resume:\n%s", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "checkpoint.safetensors")); err != nil {
		t.Fatal(err)
	}
	if out, err := trainerCmd("train", "--resume", dir).CombinedOutput(); err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	sameRun(t, dir, ref)

	// A finished run cannot be started again in place, nor resumed with
	// other settings.
	if out, err := trainerCmd(runArgs(data, dir)...).CombinedOutput(); err == nil || !strings.Contains(string(out), "holds a run already") {
		t.Errorf("a new run into a finished one: %v\n%s", err, out)
	}
	if out, err := trainerCmd("train", "--resume", dir, "--lr", "0.1").CombinedOutput(); err == nil || !strings.Contains(string(out), "--lr with --resume") {
		t.Errorf("--resume with --lr: %v\n%s", err, out)
	}
}

// An absurd learning rate stops the run naming the step and the layer, and
// the last checkpoint on disk is whole and finite.
func TestDivergence(t *testing.T) {
	data, _ := fixture(t)
	dir := filepath.Join(t.TempDir(), "run")
	args := runArgs(data, dir)
	args[len(args)-3] = "1e9" // --lr
	out, err := trainerCmd(args...).CombinedOutput()
	if err == nil {
		t.Fatalf("lr 1e9 trained without error:\n%s", out)
	}
	msg := lastLine(string(out))
	for _, want := range []string{"step ", "diverged", "--lr", "first layer with a NaN or Inf output is "} {
		if !strings.Contains(msg, want) {
			t.Errorf("divergence message lacks %q: %s", want, msg)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "checkpoint.safetensors")); err == nil {
		w, _, err := model.ReadSafetensors(filepath.Join(dir, "checkpoint.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range w {
			for _, x := range v.Data {
				if x-x != 0 {
					t.Fatalf("the kept checkpoint holds a non-finite %s", name)
				}
			}
		}
	}
}

// A corrupt checkpoint is refused by name; with a whole previous one the run
// resumes from it. A checkpoint of another net is refused.
func TestBadCheckpoint(t *testing.T) {
	data, ref := fixture(t)
	dir := filepath.Join(t.TempDir(), "run")
	copyDir(t, ref, dir)
	cur := filepath.Join(dir, "checkpoint.safetensors")
	raw, _ := os.ReadFile(cur)
	os.WriteFile(cur, raw[:len(raw)/3], 0o644)
	out, err := trainerCmd("train", "--resume", dir, "--epochs", "4").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "refused corrupt checkpoint "+cur) {
		t.Errorf("corrupt latest checkpoint, whole previous: %v\n%s", err, out)
	}
	os.WriteFile(cur, raw[:len(raw)/3], 0o644)
	os.Remove(filepath.Join(dir, "checkpoint.prev.safetensors"))
	out, err = trainerCmd("train", "--resume", dir, "--epochs", "5").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "corrupt checkpoint "+cur) {
		t.Errorf("corrupt checkpoint, no previous: %v\n%s", err, out)
	}

	other := filepath.Join(t.TempDir(), "other")
	args := runArgs(data, other)
	args[2] = "alexnet-small-1gpu"
	args = append(args[:len(args)-2:len(args)-2], "--epochs", "1", "--out", other)
	if out, err := trainerCmd(args...).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(other, "checkpoint.safetensors"), raw, 0o644)
	out, err = trainerCmd("train", "--resume", other).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "checkpoint of net alexnet-small; this run is alexnet-small-1gpu") {
		t.Errorf("checkpoint of another net: %v\n%s", err, out)
	}
}

func copyDir(t *testing.T, from, to string) {
	os.MkdirAll(to, 0o755)
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(from, e.Name()))
		os.WriteFile(filepath.Join(to, e.Name()), b, 0o644)
	}
}
