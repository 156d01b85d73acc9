// Package safefile writes files so that a process killed at any moment
// leaves either the old file or the new one, never a mix, and locks the
// directories a process writes so that two processes never write the same
// one.
//
// A file is written under a temporary name beside it (".NAME.tmp-RANDOM"),
// synced, renamed into place and the directory synced. Every filesystem
// step goes through one hook, so a test can fail the step or kill the
// process at exactly that step (SetFault).
package safefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// Op is one kind of filesystem step.
type Op string

// The filesystem steps, in the order a write takes them.
const (
	OpCreate  Op = "create"  // create the temporary file
	OpWrite   Op = "write"   // one write to it
	OpSync    Op = "sync"    // fsync it
	OpClose   Op = "close"   // close it
	OpRename  Op = "rename"  // rename Path to To
	OpLink    Op = "link"    // hard-link Path as To
	OpRemove  Op = "remove"  // remove Path
	OpSyncDir Op = "syncdir" // fsync the directory Path
)

// Step is one filesystem step: Op on Path (and To for a rename or link).
type Step struct {
	Op       Op
	Path, To string
}

func (s Step) String() string {
	if s.To != "" {
		return fmt.Sprintf("%s %s %s", s.Op, s.Path, s.To)
	}
	return fmt.Sprintf("%s %s", s.Op, s.Path)
}

var fault atomic.Pointer[func(Step) error]

// SetFault makes f run before every filesystem step of this package, in
// every goroutine, until restore is called. When f returns an error the
// step is not taken and the error is returned in its place; f may also
// end the process. It is for tests: f fails the k-th step, or every step
// from the k-th on (a process that died there), or kills the process.
func SetFault(f func(Step) error) (restore func()) {
	old := fault.Swap(&f)
	return func() { fault.Store(old) }
}

// ErrFault is what a fault from SetFault should wrap.
var ErrFault = errors.New("injected fault")

func before(s Step) error {
	if f := fault.Load(); f != nil && *f != nil {
		return (*f)(s)
	}
	return nil
}

// File is a file being written under a temporary name beside its path;
// Commit puts it in place, Close without Commit discards it.
type File struct {
	f      *os.File
	path   string
	dirty  bool // written since the last sync
	closed bool
	done   bool // committed or discarded
}

// Create starts writing path: to a new temporary file in the same
// directory, so the rename that commits it stays on one filesystem.
func Create(path string) (*File, error) {
	if err := before(Step{Op: OpCreate, Path: path}); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	// CreateTemp makes the file private (0600); what it replaces keeps its
	// mode, and a new file gets the usual 0644, so that the rest of a team
	// (or the container's other user) can read a run.
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &File{f: f, path: path}, nil
}

// Name is the temporary file's path.
func (f *File) Name() string { return f.f.Name() }

// Write writes to the temporary file.
func (f *File) Write(p []byte) (int, error) {
	if err := before(Step{Op: OpWrite, Path: f.f.Name()}); err != nil {
		return 0, err
	}
	f.dirty = true
	return f.f.Write(p)
}

// Sync flushes the temporary file to the disk and closes it: nothing more
// can be written, and Commit needs no further sync.
func (f *File) Sync() error {
	if f.dirty || !f.closed {
		if err := before(Step{Op: OpSync, Path: f.f.Name()}); err != nil {
			return err
		}
		if err := f.f.Sync(); err != nil {
			return err
		}
		f.dirty = false
	}
	if !f.closed {
		if err := before(Step{Op: OpClose, Path: f.f.Name()}); err != nil {
			return err
		}
		f.closed = true
		if err := f.f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Commit syncs the temporary file, renames it to the path and syncs the
// directory: after it returns nil the new file survives a power cut.
func (f *File) Commit() error {
	if f.done {
		return errors.New("safefile: Commit after Commit or Close")
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := Rename(f.f.Name(), f.path); err != nil {
		return err
	}
	f.done = true
	return SyncDir(filepath.Dir(f.path))
}

// Close discards the temporary file unless it was committed. It is
// meant for a defer beside Create.
func (f *File) Close() error {
	if f.done {
		return nil
	}
	f.done = true
	if !f.closed {
		f.closed = true
		f.f.Close()
	}
	return Remove(f.f.Name())
}

// WriteFile writes data to path atomically: a reader, or a process
// started after a crash, sees the old file or the new one.
func WriteFile(path string, data []byte) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Commit()
}

// Rename renames from to to, replacing to.
func Rename(from, to string) error {
	if err := before(Step{Op: OpRename, Path: from, To: to}); err != nil {
		return err
	}
	return os.Rename(from, to)
}

// Link makes to a hard link of from; to must not exist.
func Link(from, to string) error {
	if err := before(Step{Op: OpLink, Path: from, To: to}); err != nil {
		return err
	}
	return os.Link(from, to)
}

// Remove removes path; one that does not exist is no error.
func Remove(path string) error {
	if err := before(Step{Op: OpRemove, Path: path}); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// SyncDir flushes dir's entries (the renames into it) to the disk.
func SyncDir(dir string) error {
	if err := before(Step{Op: OpSyncDir, Path: dir}); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// IsTemp reports whether name (a base name) is a temporary file of an
// unfinished write: this package's ".NAME.tmp-RANDOM", or the
// ".NAME.tmpRANDOM" of os.CreateTemp writers before it.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name[1:], ".tmp")
}

// RemoveTemps removes the temporary files that writes into dir left when
// their process was killed, and returns their names. Call it holding the
// directory's lock, so no write in progress loses its file.
func RemoveTemps(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		if !e.Type().IsRegular() || !IsTemp(e.Name()) {
			continue
		}
		if err := Remove(filepath.Join(dir, e.Name())); err != nil {
			return removed, err
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}
