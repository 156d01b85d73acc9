package mpi

import (
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/internal/mpi/mpitest"
)

// TestTwoHosts runs two ranks on two "hosts": two network namespaces
// joined by a veth pair, each rank in its own, talking over TCP only.
// mpirun runs in the first and starts the second's daemon through an rsh
// agent that runs the command in the namespace the host address names, as
// ssh would on another machine.
func TestTwoHosts(t *testing.T) {
	t.Parallel() // with TestFaults, which mostly waits
	mpirunPath(t)
	h := mpitest.TwoHosts(t, "mpi", 231, t.TempDir())
	hosts := func(t *testing.T, s string, extra ...string) job {
		return mpirunIn(t, h.InA, 2, s, append(h.MPIArgs(), extra...)...)
	}
	t.Run("collectives", func(t *testing.T) {
		j := hosts(t, "collectives")
		for r, rep := range j.reports {
			if rep != "ok" {
				t.Errorf("rank %d: %q", r, rep)
			}
		}
		if j.err != nil || t.Failed() {
			t.Fatalf("mpirun: %v\n%s", j.err, j.out)
		}
		mpitest.Namespaces(t, j.dir)
	})
	// A rank that dies on the other host: its TCP connections close.
	t.Run("kill", func(t *testing.T) {
		j := hosts(t, "kill", "--enable-recovery")
		want := "did not answer within 3s (--rank-timeout): it died or is stopped"
		if got := j.reports[0]; !strings.HasPrefix(got, "mpi: rank 1 (") || !strings.Contains(got, want) || j.exits[0] != "3" {
			t.Errorf("rank 0 reported %q and exited with status %q, want one line naming rank 1: …%s…, and 3", got, j.exits[0], want)
		}
		if t.Failed() {
			t.Logf("mpirun: %v\n%s", j.err, j.out)
		}
	})
}
