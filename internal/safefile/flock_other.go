//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package safefile

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("would block")

// flock has no advisory lock to take on this system: the directory is
// not protected against a second process there.
func flock(f *os.File) error { return nil }
