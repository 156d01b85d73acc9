package safefile

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a lock holder: with SAFEFILE_TEST_HOLD=dir
// it locks dir, says so and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("SAFEFILE_TEST_HOLD"); dir != "" {
		if _, err := LockDir(dir); err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		fmt.Println("locked")
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// deadFrom fails the k-th step and every step after it, as a process
// killed at the k-th step takes none of them; it counts the steps in n.
func deadFrom(k int, n *int, steps *[]Step) func(Step) error {
	return func(s Step) error {
		*n++
		if steps != nil {
			*steps = append(*steps, s)
		}
		if *n >= k {
			return fmt.Errorf("step %d, %v: %w", *n, s, ErrFault)
		}
		return nil
	}
}

// A write killed at any of its steps leaves the old file or the new one,
// whole; the temporary files it leaves are found and removed.
func TestWriteFileKilledAtEveryStep(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	old, fresh := []byte("old contents\n"), []byte("new contents, longer than the old\n")
	if err := WriteFile(path, old); err != nil {
		t.Fatal(err)
	}
	var all []Step
	for k := 1; ; k++ {
		n := 0
		var steps []Step
		restore := SetFault(deadFrom(k, &n, &steps))
		err := WriteFile(path, fresh)
		restore()
		got, rerr := os.ReadFile(path)
		if rerr != nil || (string(got) != string(old) && string(got) != string(fresh)) {
			t.Fatalf("killed at step %d: %s holds %q (%v), want the old or the new contents", k, path, got, rerr)
		}
		if err == nil {
			if k <= n || string(got) != string(fresh) {
				t.Fatalf("step %d: a write with %d steps returned nil holding %q", k, n, got)
			}
			all = steps
			break
		}
		if !errors.Is(err, ErrFault) {
			t.Fatalf("killed at step %d: %v, want the fault", k, err)
		}
		if k == n && steps[k-1].Op == OpSyncDir && string(got) != string(fresh) {
			t.Errorf("killed syncing the directory, after the rename: %s holds the old contents", path)
		}
		if _, err := RemoveTemps(dir); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(path, old); err != nil {
			t.Fatal(err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("after RemoveTemps: %v, want config.json alone", entries)
		}
	}
	var ops []Op
	for _, s := range all {
		ops = append(ops, s.Op)
	}
	if want := []Op{OpCreate, OpWrite, OpSync, OpClose, OpRename, OpSyncDir}; !slices.Equal(ops, want) {
		t.Errorf("steps %v, want %v", ops, want)
	}
}

// A killed write's temporary file is named as such and removed; nothing
// else is.
func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	keep := []string{"checkpoint.safetensors", "metrics.jsonl", ".lock", "notes.tmp"}
	for _, name := range append(keep, ".checkpoint.safetensors.tmp-123", ".weights.safetensors.tmp456") {
		os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644)
	}
	f, err := Create(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("half"))
	removed, err := RemoveTemps(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{".checkpoint.safetensors.tmp-123", filepath.Base(f.Name()), ".weights.safetensors.tmp456"}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for _, name := range keep {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A held directory is refused, naming the holder; closed, it is free.
func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	a, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDir(dir)
	var le *LockedError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &le) || le.PID != os.Getpid() || le.Program != filepath.Base(os.Args[0]) {
		t.Fatalf("second lock: %v, want ErrLocked naming pid %d", err, os.Getpid())
	}
	if want := fmt.Sprintf("%s is in use by %s pid %d", dir, filepath.Base(os.Args[0]), os.Getpid()); err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := LockDir(dir)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	b.Close()
	if _, err := LockDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("locked a directory that does not exist")
	}
}

// A lock held by another process names its pid, and is free once that
// process is killed: no stale lock is left.
func TestLockDiesWithProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SAFEFILE_TEST_HOLD="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("holder: %q", line)
	}
	_, err := LockDir(dir)
	var le *LockedError
	if !errors.As(err, &le) || le.PID != cmd.Process.Pid {
		t.Fatalf("lock held by pid %d: %v", cmd.Process.Pid, err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	l, err := LockDir(dir)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	l.Close()
}

// A new file is readable by others (0644, not CreateTemp's 0600); a
// replaced file keeps the mode it had.
func TestFileMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "metrics.json")
	if err := WriteFile(p, []byte("1")); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
		t.Errorf("new file has mode %v, want 0644", st.Mode().Perm())
	}
	os.Chmod(p, 0o640)
	if err := WriteFile(p, []byte("2")); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
		t.Errorf("replaced file has mode %v, want its old 0640", st.Mode().Perm())
	}
}
