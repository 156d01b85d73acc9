package train

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/alexnet-go/trainer/internal/safefile"
)

// lockRunDir creates dir if need be and locks it for this process: a run
// directory has one writer. flag (--out or --resume) names it in errors.
// It then removes the temporary files of a write that was killed, saying
// so on log. The lock is released by Close, or by the system when the
// process ends however it ends.
func lockRunDir(dir, flag string, log io.Writer) (*safefile.Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s %s: cannot create the run directory: %v", flag, dir, errors.Unwrap(err))
	}
	lk, err := safefile.LockDir(dir)
	if errors.Is(err, safefile.ErrLocked) {
		advice := "wait for it or choose another directory"
		if flag == "--resume" {
			advice = "wait for it to end, or stop it, before resuming"
		}
		return nil, fmt.Errorf("%s %v; %s", flag, err, advice)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: not writable: %v", flag, dir, err)
	}
	removed, err := safefile.RemoveTemps(dir)
	if err != nil {
		lk.Close()
		return nil, fmt.Errorf("%s %s: removing the unfinished files of a killed run: %v", flag, dir, err)
	}
	if len(removed) > 0 {
		fmt.Fprintf(os.Stderr, "trainer: removed %s: unfinished writes of a killed run\n", strings.Join(removed, ", "))
	}
	return lk, nil
}
