package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/internal/mpi/mpitest"
)

// Two ranks on two "hosts" train together: two network namespaces joined
// by a veth pair, each rank in its own, talking over TCP only (mpirun runs
// in the first and starts the second's daemon through an rsh agent that
// runs the command in the namespace the host address names, as ssh would
// on another machine; internal/mpi's TestTwoHosts does the same). The
// filesystem is shared, as a cluster's is. They end where one process of
// two replicas does, bit for bit.
func TestMPITwoHosts(t *testing.T) {
	mpirunPath(t)
	dir := t.TempDir()
	h := mpitest.TwoHosts(t, "tr", 232, dir)

	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	writeIDX(t, data, 48)
	one := filepath.Join(dir, "one")
	if out, err := run(t, mpiArgs(data, one, "cpu,cpu,cpu,cpu", 1)...); err != nil {
		t.Fatalf("in-process run of two replicas: %v\n%s", err, out)
	}
	two := filepath.Join(dir, "two")
	out, err := mpirunTrainerIn(t, h.InA, h.MPIArgs(), 2, []string{"TRAINER_TEST_NETNS=" + dir}, mpiArgs(data, two, "cpu,cpu", 1)...)
	if err != nil || !strings.Contains(out, "[1,0]<stdout>:MPI: rank 0 of 2 on ") {
		t.Fatalf("mpirun on two hosts: %v\n%s", err, out)
	}
	mpitest.Namespaces(t, dir)
	a, _ := os.ReadFile(filepath.Join(one, "weights.safetensors"))
	b, _ := os.ReadFile(filepath.Join(two, "weights.safetensors"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("the weights of two ranks on two hosts differ from those of one process of two replicas\n%s", out)
	}
}
