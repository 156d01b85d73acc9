package mpitest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Run runs the mpirun command line (behind a prefix such as ip netns exec,
// if any) and returns its combined output and error. It runs in a session
// folder of its own (mpiruns started at once race to create the shared
// one; short, for the sockets' paths), may run as root, and uses shared
// memory without cross-process copies (CMA, which containers often
// forbid) unless the caller chose. It is bounded: past limit the whole
// process group is killed and t fails, as a hang.
func Run(t testing.TB, limit time.Duration, line []string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, line[0], line[1:]...)
	session, err := os.MkdirTemp("", "ompi")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(session)
	cmd.Env = append(os.Environ(), "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", "OMPI_MCA_orte_tmpdir_base="+session)
	if _, ok := os.LookupEnv("OMPI_MCA_btl_vader_single_copy_mechanism"); !ok {
		cmd.Env = append(cmd.Env, "OMPI_MCA_btl_vader_single_copy_mechanism=none")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s did not end within %v: it hangs\n%s", strings.Join(line, " "), limit, out)
	}
	return string(out), err
}
