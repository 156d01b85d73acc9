package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/train"
)

// trainer train | head: when the reader of stdout goes away, the run stops
// as on SIGTERM: it saves a checkpoint and exits 0, instead of dying by
// SIGPIPE with nothing saved.
func TestClosedStdoutSavesACheckpoint(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	writeIDX(t, data, 64)
	out := filepath.Join(dir, "run")
	cmd := trainerCmd("train", "--net", "alexnet-small", "--gpus", "cpu", "--threads", "1", "--data", data,
		"--epochs", "1000", "--batch", "16", "--checkpoint-minutes", "0", "--out", out)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("the trainer's first line: %v\n%s", err, stderr.String())
	}
	stdout.Close() // the reader goes away, as head's does
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the trainer did not stop within 2 minutes of its stdout closing; first line %q", line)
	}
	if err != nil {
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("the trainer was killed by %v when its stdout closed\n%s", ws.Signal(), stderr.String())
		}
		t.Fatalf("the trainer exited with %v when its stdout closed\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "standard output was closed") {
		t.Errorf("stderr does not say why the run stopped:\n%s", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(out, "checkpoint.safetensors")); err != nil {
		t.Errorf("no checkpoint after the stop: %v\n%s", err, stderr.String())
	}
}

// What a second signal says about the run directory is true: whether a
// checkpoint is there to resume from.
func TestOnDisk(t *testing.T) {
	dir := t.TempDir()
	if s := train.OnDisk(dir); !strings.Contains(s, "no checkpoint was saved yet") {
		t.Errorf("an empty run directory: %q", s)
	}
	os.WriteFile(filepath.Join(dir, "checkpoint.safetensors"), []byte("x"), 0o644)
	if s := train.OnDisk(dir); !strings.Contains(s, "--resume "+dir) {
		t.Errorf("a run directory with a checkpoint: %q", s)
	}
}
