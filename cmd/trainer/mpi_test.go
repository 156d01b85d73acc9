package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/internal/mpi/mpitest"
	"github.com/alexnet-go/trainer/internal/safefile"
)

// Under mpirun the test binary is the trainer (TRAINER_TEST_MAIN=1), and
// mpiTestHooks, called by TestMain, lets the tests watch each rank:
// TRAINER_TEST_WRITES=DIR records every file the rank writes into
// DIR/writes<rank>; TRAINER_TEST_STOP=FILE stops rank 1 (SIGSTOP) once
// FILE exists: a rank that stops answering mid-run; TRAINER_TEST_TERM=FILE
// sends rank 1 alone a SIGTERM then (a preempted node), and
// TRAINER_TEST_KILL1=FILE a SIGKILL;
// TRAINER_TEST_NETNS=DIR records the rank's network namespace in
// DIR/netns<rank>.
func mpiTestHooks() {
	rank := os.Getenv("OMPI_COMM_WORLD_RANK")
	if d := os.Getenv("TRAINER_TEST_WRITES"); d != "" {
		log := filepath.Join(d, "writes"+rank)
		safefile.SetFault(func(s safefile.Step) error {
			if s.Op == safefile.OpCreate {
				f, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
				if err == nil {
					fmt.Fprintln(f, s.Path)
					f.Close()
				}
			}
			return nil
		})
	}
	if d := os.Getenv("TRAINER_TEST_NETNS"); d != "" {
		ns, _ := os.Readlink("/proc/self/ns/net")
		os.WriteFile(filepath.Join(d, "netns"+rank), []byte(ns), 0o644)
	}
	for env, sig := range map[string]syscall.Signal{"TRAINER_TEST_STOP": syscall.SIGSTOP, "TRAINER_TEST_TERM": syscall.SIGTERM, "TRAINER_TEST_KILL1": syscall.SIGKILL} {
		if f := os.Getenv(env); f != "" && rank == "1" {
			go func() {
				for {
					if _, err := os.Stat(f); err == nil {
						syscall.Kill(os.Getpid(), sig)
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
		}
	}
}

// mpirunPath returns mpirun's path, skipping the test without it (failing
// on CI, where .ci/run installs it).
func mpirunPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("mpirun")
	if err != nil {
		msg := "mpirun not found: apt-get install openmpi-bin libopenmpi3 to run the MPI tests"
		if os.Getenv("CI") != "" {
			t.Fatal("CI: " + msg)
		}
		t.Skip(msg)
	}
	return p
}

// mpirunTrainer runs the trainer (this test binary) as np ranks of one
// mpirun, with env set in every rank, and returns mpirun's output, each
// line tagged with its rank ("[1,0]<stderr>:"). The job is bounded: a
// hang fails the test.
func mpirunTrainer(t *testing.T, np int, env []string, args ...string) (string, error) {
	t.Helper()
	return mpirunTrainerIn(t, nil, nil, np, env, args...)
}

// mpirunTrainerIn is mpirunTrainer with mpirun run through the command
// prefix (ip netns exec …) and given the extra arguments.
func mpirunTrainerIn(t *testing.T, prefix, extra []string, np int, env []string, args ...string) (string, error) {
	t.Helper()
	mpirun := mpirunPath(t)
	line := append([]string{"--oversubscribe", "--bind-to", "none", "--tag-output", "-np", fmt.Sprint(np), "-x", "TRAINER_TEST_MAIN=1"}, extra...)
	for _, e := range env {
		line = append(line, "-x", e)
	}
	line = append(append(line, os.Args[0]), args...)
	line = append(append(append([]string{}, prefix...), mpirun), line...)
	return mpitest.Run(t, 2*time.Minute, line)
}

// mpiArgs trains alexnet-small for 2 epochs of 5 steps of 8 images on
// devs, checkpointing every 2 steps.
func mpiArgs(data, out, devs string, epochs int) []string {
	return []string{"train", "--net", "alexnet-small", "--gpus", devs, "--threads", "1", "--data", data, "--val-split", "8",
		"--epochs", fmt.Sprint(epochs), "--batch", "8", "--checkpoint-steps", "2", "--seed", "3", "--lr", "0.02", "--out", out}
}

// Two processes of one replica each (mpirun -np 2, --gpus cpu,cpu) train
// as one process of two replicas (--gpus cpu,cpu,cpu,cpu): the same
// weights, bit for bit (the MPI group sums in rank order in float64, as
// the in-process reference sums in replica order), and the same losses
// and errors (the sums over the ranks round differently in float64: to
// 1e-12 here); rank 0 alone wrote into the run directory and logged.
// Trained one epoch, then resumed by both ranks for the second; and
// stopped by a SIGTERM to rank 1 alone, which stops both after the same
// step, rank 0 saving the checkpoint, and resumed: the same run each time.
func TestMPIMatchesInProcess(t *testing.T) {
	mpirunPath(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	writeIDX(t, data, 48)
	one := filepath.Join(dir, "one")
	if out, err := run(t, mpiArgs(data, one, "cpu,cpu,cpu,cpu", 2)...); err != nil {
		t.Fatalf("in-process run of two replicas: %v\n%s", err, out)
	}
	t.Run("resumed", func(t *testing.T) {
		two := filepath.Join(dir, "two")
		writes := filepath.Join(dir, "writes")
		os.Mkdir(writes, 0o755)
		env := []string{"TRAINER_TEST_WRITES=" + writes}
		out, err := mpirunTrainer(t, 2, env, mpiArgs(data, two, "cpu,cpu", 1)...)
		if err != nil {
			t.Fatalf("mpirun -np 2: %v\n%s", err, out)
		}
		for _, want := range []string{"[1,0]<stdout>:MPI: rank 0 of 2", "2 replicas, one per process", "averaged through MPI on the host", "epoch 1/1"} {
			if !strings.Contains(out, want) {
				t.Errorf("mpirun's output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "[1,1]<stdout>:") {
			t.Errorf("rank 1 logged:\n%s", out)
		}
		out, err = mpirunTrainer(t, 2, env, "train", "--resume", two, "--epochs", "2")
		if err != nil || !strings.Contains(out, "[1,0]<stdout>:resuming at epoch 2") {
			t.Fatalf("mpirun -np 2 train --resume: %v\n%s", err, out)
		}
		sameMPIRun(t, two, one)
		w0, _ := os.ReadFile(filepath.Join(writes, "writes0"))
		if _, err := os.Stat(filepath.Join(writes, "writes1")); err == nil || !strings.Contains(string(w0), "checkpoint.safetensors") {
			b1, _ := os.ReadFile(filepath.Join(writes, "writes1"))
			t.Errorf("rank 0 wrote %q, rank 1 %q: want rank 0 alone", w0, b1)
		}
	})
	t.Run("signalled", func(t *testing.T) {
		three := filepath.Join(dir, "three")
		out, err := mpirunTrainer(t, 2, []string{"TRAINER_TEST_TERM=" + filepath.Join(three, "checkpoint.safetensors")}, mpiArgs(data, three, "cpu,cpu", 2)...)
		if err != nil || strings.Count(out, "<stderr>:trainer: interrupted at epoch 1, batch ") != 2 {
			t.Fatalf("mpirun -np 2 with rank 1 sent a SIGTERM: %v; want both ranks interrupted after the same step\n%s", err, out)
		}
		if m := readMetrics(t, three); len(m) != 0 {
			t.Fatalf("the signalled run recorded %d epochs, want 0", len(m))
		}
		out, err = mpirunTrainer(t, 2, nil, "train", "--resume", three)
		if err != nil || !strings.Contains(out, "[1,0]<stdout>:resuming at epoch 1, batch ") {
			t.Fatalf("mpirun -np 2 train --resume: %v\n%s", err, out)
		}
		sameMPIRun(t, three, one)
	})
}

// sameMPIRun checks that dir's run ended where one's did: the same
// weights, bit for bit, and the same losses and errors.
func sameMPIRun(t *testing.T, two, one string) {
	t.Helper()
	a, _ := os.ReadFile(filepath.Join(one, "weights.safetensors"))
	b, _ := os.ReadFile(filepath.Join(two, "weights.safetensors"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("the weights of two processes differ from those of one process of two replicas")
	}
	ma, mb := readMetrics(t, one), readMetrics(t, two)
	if len(ma) != 2 || len(mb) != 2 {
		t.Fatalf("metrics: %d and %d epochs, want 2", len(ma), len(mb))
	}
	for i := range ma {
		for _, k := range []string{"train_loss", "train_top1_err", "val_loss", "val_top1_err", "val_top5_err", "test_loss", "test_top1_err"} {
			x, _ := ma[i][k].(float64)
			y, ok := mb[i][k].(float64)
			if !ok || math.Abs(x-y) > 1e-12*math.Max(1, math.Abs(x)) {
				t.Errorf("epoch %d %s: two processes %v, one process %v", i+1, k, mb[i][k], ma[i][k])
			}
		}
	}
}

// A rank that stops answering mid-run (SIGSTOP once the first checkpoint
// is on disk) makes rank 0 end within --rank-timeout, with one line that
// names rank 1 and says the last checkpoint is whole and how to resume;
// mpirun then fails. The checkpoint resumes, in one process of as many
// replicas, and the run finishes.
func TestMPIRankStops(t *testing.T) {
	mpirunPath(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	writeIDX(t, data, 48)
	runDir := filepath.Join(dir, "run")
	args := append(mpiArgs(data, runDir, "cpu,cpu", 50), "--rank-timeout", "2s")
	out, err := mpirunTrainer(t, 2, []string{"TRAINER_TEST_STOP=" + filepath.Join(runDir, "checkpoint.safetensors")}, args...)
	if err == nil {
		t.Fatalf("mpirun succeeded with rank 1 stopped:\n%s", out)
	}
	rankZeroFails(t, out, runDir)
	// Four processes of one replica each are not the run's two (unless
	// --other-replicas); two processes of two replicas each are refused.
	out, err = mpirunTrainer(t, 4, nil, "train", "--resume", runDir, "--epochs", "1")
	if err == nil || !strings.Contains(out, "[1,0]<stderr>:trainer: --resume "+runDir+": the run trained on 2 replica(s), 4 processes of --gpus cpu,cpu have 4") {
		t.Fatalf("a resume of a run of two replicas on four processes: %v\n%s", err, out)
	}
	out, err = mpirunTrainer(t, 2, nil, "train", "--resume", runDir, "--epochs", "1", "--gpus", "cpu,cpu,cpu,cpu")
	if err == nil || !strings.Contains(out, "<stderr>:trainer: --gpus cpu,cpu,cpu,cpu: 2 replicas in each of 2 processes: a process of an MPI run holds one replica for now") {
		t.Fatalf("two processes of two replicas each: %v\n%s", err, out)
	}
	if out, err := run(t, "train", "--resume", runDir, "--epochs", "1", "--gpus", "cpu,cpu,cpu,cpu"); err != nil {
		t.Fatalf("resuming the stopped run in one process of two replicas: %v\n%s", err, out)
	}
	if m := readMetrics(t, runDir); len(m) != 1 {
		t.Errorf("the resumed run recorded %d epochs, want 1", len(m))
	}
}

// rankZeroFails fails t unless rank 0 wrote one error line, naming rank
// 1, the timeout, and how to resume the run in runDir.
func rankZeroFails(t *testing.T, out, runDir string) {
	t.Helper()
	var errs []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "[1,0]<stderr>:trainer:") {
			errs = append(errs, l)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "rank 1 (") || !strings.Contains(errs[0], "did not answer within 2s (--rank-timeout)") ||
		!strings.Contains(errs[0], "the last checkpoint on disk is whole; continue with trainer train --resume "+runDir) {
		t.Fatalf("rank 0's error lines %q; want one naming rank 1, the timeout and the resume\n%s", errs, out)
	}
}

// A rank killed mid-run (SIGKILL once the first checkpoint is on disk),
// where mpirun lets the others run on (--enable-recovery, as srun without
// --kill-on-bad-exit does; a plain mpirun ends the job itself): rank 0
// ends within --rank-timeout with the one line, and both ranks resume the
// checkpoint and finish the epoch.
func TestMPIRankKilled(t *testing.T) {
	mpirunPath(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	writeIDX(t, data, 48)
	runDir := filepath.Join(dir, "run")
	args := append(mpiArgs(data, runDir, "cpu,cpu", 50), "--rank-timeout", "2s")
	out, _ := mpirunTrainerIn(t, nil, []string{"--enable-recovery"}, 2, []string{"TRAINER_TEST_KILL1=" + filepath.Join(runDir, "checkpoint.safetensors")}, args...)
	rankZeroFails(t, out, runDir)
	out, err := mpirunTrainer(t, 2, nil, "train", "--resume", runDir, "--epochs", "1")
	if err != nil || !strings.Contains(out, "[1,0]<stdout>:resuming at epoch 1, batch ") {
		t.Fatalf("mpirun -np 2 train --resume after rank 1 was killed: %v\n%s", err, out)
	}
	if m := readMetrics(t, runDir); len(m) != 1 {
		t.Errorf("the resumed run recorded %d epochs, want 1", len(m))
	}
}
