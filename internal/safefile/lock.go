package safefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockName is the file in a locked directory that holds the lock and its
// holder's pid and program name.
const LockName = ".lock"

// ErrLocked is wrapped by the error of LockDir on a directory another
// process holds.
var ErrLocked = errors.New("directory in use")

// LockedError says which process holds a directory.
type LockedError struct {
	Dir     string
	PID     int    // 0 if the holder has not written it yet
	Program string // the holder's program name, if known
}

func (e *LockedError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = fmt.Sprintf("pid %d", e.PID)
		if e.Program != "" {
			who = e.Program + " " + who
		}
	}
	return fmt.Sprintf("%s is in use by %s", e.Dir, who)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// Lock is a held directory lock: an advisory lock (flock(2)) on the
// directory's .lock file. The operating system releases it when the
// process ends, however it ends, so a killed process never leaves a
// directory locked.
type Lock struct {
	f   *os.File
	dir string
}

// LockDir locks dir, which must exist, for this process; it never waits.
// When another process holds it the error is a *LockedError naming that
// process. A second LockDir of the same directory in one process also
// fails: each Lock is one holder.
func LockDir(dir string) (*Lock, error) {
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := flock(f); err != nil {
		defer f.Close()
		if !errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("locking %s: %v", path, err)
		}
		e := &LockedError{Dir: dir}
		b := make([]byte, 256)
		n, _ := f.ReadAt(b, 0)
		fields := strings.Fields(string(b[:n]))
		if len(fields) > 0 {
			e.PID, _ = strconv.Atoi(fields[0])
		}
		if len(fields) > 1 {
			e.Program = fields[1]
		}
		return nil, e
	}
	// Only the holder writes the file, so no reader sees half a pid for long.
	who := fmt.Sprintf("%d %s\n", os.Getpid(), filepath.Base(os.Args[0]))
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(who), 0)
	}
	return &Lock{f: f, dir: dir}, nil
}

// Dir is the locked directory.
func (l *Lock) Dir() string { return l.dir }

// Close releases the lock. The lock file stays: removing it would let a
// process that opened it before the removal lock a file no one else sees.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	l.f.Truncate(0)
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}
