package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/internal/safefile"
	"github.com/alexnet-go/trainer/model"
)

// The test binary doubles as the trainer: with TRAINER_TEST_MAIN=1 it runs
// main, so the tests can signal and kill a real training process. With
// TRAINER_TEST_KILL=S:K as well it kills itself (SIGKILL) at the K-th
// filesystem step of its S-th checkpoint save, or just after that save's
// last step if it has fewer, saying which on stderr.
func TestMain(m *testing.M) {
	if os.Getenv("TRAINER_TEST_MAIN") == "1" {
		if at := os.Getenv("TRAINER_TEST_KILL"); at != "" {
			var save, step int
			if _, err := fmt.Sscanf(at, "%d:%d", &save, &step); err != nil {
				panic("TRAINER_TEST_KILL=" + at + ": want SAVE:STEP")
			}
			safefile.SetFault(killAt(save, step))
		}
		mpiTestHooks()
		main()
		os.Exit(0)
	}
	code := m.Run()
	if fixtureRoot != "" {
		os.RemoveAll(fixtureRoot)
	}
	os.Exit(code)
}

// killAt returns a fault hook that kills the process at the step-th
// filesystem step of its save-th checkpoint save; when that save has fewer
// steps, at the first step after it.
func killAt(save, step int) func(safefile.Step) error {
	saves, k, pending := 0, 0, false
	kill := func(what string) {
		fmt.Fprintf(os.Stderr, "trainer test: killed %s\n", what)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	return func(s safefile.Step) error {
		if pending {
			kill(fmt.Sprintf("after the last step, %d, of checkpoint save %d", k, save))
		}
		if s.Op == safefile.OpCreate && filepath.Base(s.Path) == "checkpoint.safetensors" {
			saves, k = saves+1, 0
		}
		if saves != save {
			return nil
		}
		k++
		if k == step {
			kill(fmt.Sprintf("at step %d (%v) of checkpoint save %d", k, s, save))
		}
		if s.Op == safefile.OpSyncDir && k < step { // the save's last step
			pending = true
		}
		return nil
	}
}

// trainerCmd returns the trainer as a subprocess.
func trainerCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TRAINER_TEST_MAIN=1")
	return cmd
}

var (
	fixtureOnce sync.Once
	fixtureRoot string // removed when the tests end
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
		fixtureRoot = root
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

// progressLine matches the trainer's plain progress line after a step.
var progressLine = regexp.MustCompile(`^epoch \d+/\d+ step \d+/\d+:`)

// resumedAt returns where a resumed run's output says it resumed, as
// epoch*1000+batch, or -1.
func resumedAt(out string) int {
	m := regexp.MustCompile(`(?m)^resuming at epoch (\d+), batch (\d+) of`).FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	e, _ := strconv.Atoi(m[1])
	b, _ := strconv.Atoi(m[2])
	return e*1000 + b
}

// killedBySIGKILL reports whether err is a process's death by SIGKILL.
func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// SIGKILL from outside, four times, each a few steps into the process's
// training (where exactly the signal lands, during a step or a checkpoint
// save, varies), each time resumed: the run ends exactly where the
// uninterrupted run ends. Every kill must land: a run that ends before its
// kill fails the test.
func TestKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a run in five pieces")
	}
	data, ref := fixture(t)
	dir := filepath.Join(t.TempDir(), "run")
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	at := -1
	for kill := 1; kill <= 4; kill++ {
		args := runArgs(data, dir)
		if kill > 1 {
			args = []string{"train", "--resume", dir}
		}
		cmd := trainerCmd(args...)
		var out, stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		for steps := 0; sc.Scan(); {
			out.WriteString(sc.Text() + "\n")
			if progressLine.MatchString(sc.Text()) {
				if steps++; steps == 3 {
					time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
					cmd.Process.Signal(syscall.SIGKILL)
					break
				}
			}
		}
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
		}
		err := cmd.Wait()
		out.Write(stderr.Bytes())
		if !killedBySIGKILL(err) {
			t.Fatalf("piece %d ended before its kill: %v\n%s", kill, err, out.String())
		}
		if kill > 1 {
			now := resumedAt(out.String())
			if now <= at {
				t.Fatalf("piece %d resumed at %d, the one before at %d: no progress, or no checkpoint found\n%s", kill, now, at, out.String())
			}
			at = now
		}
		t.Logf("killed (%d): %s", kill, lastLine(out.String()))
	}
	out, err := trainerCmd("train", "--resume", dir).CombinedOutput()
	if err != nil || resumedAt(string(out)) <= at {
		t.Fatalf("final resume: %v\n%s", err, out)
	}
	sameRun(t, dir, ref)
}

// Issue #11, the save protocol: a run killed at each filesystem step of a
// checkpoint save in turn (create, each write, sync, close, each rename,
// the directory sync, and just after the last), resumed after every kill,
// ends byte-identical to the uninterrupted run. Each resume starts past
// the one before, from a verified checkpoint: no kill loses one.
func TestKillAtEverySaveStep(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a run in a dozen pieces")
	}
	data, ref := fixture(t)
	dir := filepath.Join(t.TempDir(), "run")
	at := 0
	for k := 1; ; k++ {
		args := runArgs(data, dir)
		args[slices.Index(args, "--checkpoint-steps")+1] = "1" // two saves a piece, whatever the kill
		if k > 1 {
			args = []string{"train", "--resume", dir}
		}
		cmd := trainerCmd(args...)
		// The second save of the piece: one whose checkpoint and
		// previous checkpoint both exist, as in a long run.
		cmd.Env = append(cmd.Env, fmt.Sprintf("TRAINER_TEST_KILL=2:%d", k))
		b, err := cmd.CombinedOutput()
		out := string(b)
		i := strings.Index(out, "trainer test: killed ")
		if !killedBySIGKILL(err) || i < 0 {
			t.Fatalf("piece %d: %v, not killed at step %d of its second save\n%s", k, err, k, out)
		}
		if k > 1 {
			now := resumedAt(out)
			if now <= at || strings.Contains(out, "no usable checkpoint") {
				t.Fatalf("piece %d resumed at %d, the one before at %d: no progress, or no checkpoint found\n%s", k, now, at, out)
			}
			at = now
		}
		msg := lastLine(out[i:])
		t.Logf("piece %d: %s", k, msg)
		if strings.Contains(msg, "after the last step") {
			if k < 8 {
				t.Errorf("a save of %d steps: the fault hook misses some", k-1)
			}
			break
		}
	}
	out, err := trainerCmd("train", "--resume", dir).CombinedOutput()
	if err != nil || resumedAt(string(out)) <= at {
		t.Fatalf("final resume: %v\n%s", err, out)
	}
	if entries, _ := os.ReadDir(dir); true {
		for _, e := range entries {
			if safefile.IsTemp(e.Name()) {
				t.Errorf("%s left in the run directory", e.Name())
			}
		}
	}
	sameRun(t, dir, ref)
}

// Issue #11 item 2: a run directory has one writer. A second run into it,
// or a resume of it, while its trainer runs is refused naming that
// trainer's pid; once the trainer is killed the lock is gone with it.
func TestRunDirLockedByOneTrainer(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a run")
	}
	data, _ := fixture(t)
	dir := filepath.Join(t.TempDir(), "run")
	// holding starts the trainer with args and returns once it trains.
	holding := func(args ...string) (*exec.Cmd, *bytes.Buffer) {
		cmd := trainerCmd(args...)
		var out bytes.Buffer
		cmd.Stderr = &out
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if progressLine.MatchString(sc.Text()) {
				break
			}
		}
		go func() {
			for sc.Scan() {
			}
		}()
		return cmd, &out
	}
	a, aout := holding(runArgs(data, dir)...)
	want := fmt.Sprintf("--out %s is in use by %s pid %d; wait for it or choose another directory", dir, filepath.Base(os.Args[0]), a.Process.Pid)
	if out, err := trainerCmd(runArgs(data, dir)...).CombinedOutput(); err == nil || lastLine(string(out)) != "trainer: "+want {
		t.Errorf("a second run into a directory in use: %v\n%s\nwant %s", err, out, want)
	}
	want = fmt.Sprintf("--resume %s is in use by %s pid %d; ", dir, filepath.Base(os.Args[0]), a.Process.Pid)
	if out, err := trainerCmd("train", "--resume", dir).CombinedOutput(); err == nil || !strings.Contains(string(out), want) {
		t.Errorf("a resume of a directory in use: %v\n%s\nwant %s", err, out, want)
	}
	a.Process.Signal(syscall.SIGKILL)
	if err := a.Wait(); !killedBySIGKILL(err) {
		t.Fatalf("the first trainer ended before its kill: %v\n%s", err, aout)
	}
	b, bout := holding("train", "--resume", dir, "--epochs", "1")
	want = fmt.Sprintf("--resume %s is in use by %s pid %d; ", dir, filepath.Base(os.Args[0]), b.Process.Pid)
	if out, err := trainerCmd("train", "--resume", dir, "--epochs", "1").CombinedOutput(); err == nil || !strings.Contains(string(out), want) {
		t.Errorf("two resumes at once: %v\n%s\nwant %s", err, out, want)
	}
	if err := b.Wait(); err != nil {
		t.Errorf("the resume after a kill: %v\n%s", err, bout)
	}
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

// A learning rate too high stops the run naming the step and the layer,
// and the last checkpoint saved before is kept as it was: whole, finite,
// and a resume from it diverges again at the same step. The rate lets the
// run checkpoint (steps 2 and 4) before it diverges (step 6 here); a run
// that diverges before its first checkpoint fails the test, as it would
// test nothing.
func TestDivergence(t *testing.T) {
	data, _ := fixture(t)
	dir := filepath.Join(t.TempDir(), "run")
	args := runArgs(data, dir)
	args[slices.Index(args, "--lr")+1] = "0.3"
	out, err := trainerCmd(args...).CombinedOutput()
	if err == nil {
		t.Fatalf("lr 0.3 trained without error:\n%s", out)
	}
	msg := lastLine(string(out))
	for _, want := range []string{"step ", "diverged", "--lr", "first layer with a NaN or Inf output is "} {
		if !strings.Contains(msg, want) {
			t.Errorf("divergence message lacks %q: %s", want, msg)
		}
	}
	m := regexp.MustCompile(`step (\d+) .*the last good checkpoint \(step (\d+)\) is kept in ` + regexp.QuoteMeta(dir) + `$`).FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("the run diverged before its first checkpoint, or does not name it: %s", msg)
	}
	bad, kept := m[1], m[2]
	cur := filepath.Join(dir, "checkpoint.safetensors")
	before, err := os.ReadFile(cur)
	if err != nil {
		t.Fatal(err)
	}
	tensors, meta, err := model.ReadSafetensors(cur)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(meta["state"], `"step":`+kept+",") {
		t.Errorf("the message names checkpoint step %s; the checkpoint holds %s", kept, meta["state"])
	}
	for name, v := range tensors {
		for _, x := range v.Data {
			if x-x != 0 {
				t.Fatalf("the kept checkpoint holds a non-finite %s", name)
			}
		}
	}
	out, err = trainerCmd("train", "--resume", dir).CombinedOutput()
	if again := lastLine(string(out)); err == nil || !strings.HasPrefix(again, "trainer: step "+bad+" ") || again != msg {
		t.Errorf("resumed from the kept checkpoint: %v\n%s\nwant the same divergence:\n%s", err, out, msg)
	}
	if after, _ := os.ReadFile(cur); !bytes.Equal(after, before) {
		t.Error("the diverged resume changed the kept checkpoint")
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
	cmd := trainerCmd("train", "--resume", dir, "--epochs", "4")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil || !strings.Contains(stderr.String(), "refused corrupt checkpoint "+cur) || strings.Contains(string(stdout), "refused") {
		t.Errorf("corrupt latest checkpoint, whole previous: %v; the refusal belongs on stderr:\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr.String())
	}
	os.WriteFile(cur, raw[:len(raw)/3], 0o644)
	os.Remove(filepath.Join(dir, "checkpoint.prev.safetensors"))
	out, err := trainerCmd("train", "--resume", dir, "--epochs", "5").CombinedOutput()
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
