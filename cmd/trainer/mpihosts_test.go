package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	ip, err := exec.LookPath("ip")
	if err != nil {
		msg := "no ip command (apt-get install iproute2): cannot make two network namespaces"
		if os.Getenv("CI") != "" { // .ci/run installs it
			t.Fatal("CI: " + msg)
		}
		t.Skip(msg)
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot make network namespaces")
	}
	id := os.Getpid() % 10000
	nsA, nsB := fmt.Sprintf("alexnet-tr-%d-a", id), fmt.Sprintf("alexnet-tr-%d-b", id)
	vethA, vethB := fmt.Sprintf("atr%da", id), fmt.Sprintf("atr%db", id)
	subnet := fmt.Sprintf("10.232.%d", id%250)
	hostA, hostB := subnet+".1", subnet+".2"
	ipRun := func(args ...string) error {
		out, err := exec.Command(ip, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := ipRun("netns", "add", nsA); err != nil {
		t.Skipf("cannot make a network namespace here (a container without CAP_SYS_ADMIN?): %v", err)
	}
	t.Cleanup(func() { ipRun("netns", "del", nsA) })
	if err := ipRun("netns", "add", nsB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ipRun("netns", "del", nsB) })
	for _, args := range [][]string{
		{"link", "add", vethA, "type", "veth", "peer", "name", vethB},
		{"link", "set", vethA, "netns", nsA},
		{"link", "set", vethB, "netns", nsB},
		{"-n", nsA, "addr", "add", hostA + "/24", "dev", vethA},
		{"-n", nsB, "addr", "add", hostB + "/24", "dev", vethB},
		{"-n", nsA, "link", "set", vethA, "up"},
		{"-n", nsB, "link", "set", vethB, "up"},
		{"-n", nsA, "link", "set", "lo", "up"},
		{"-n", nsB, "link", "set", "lo", "up"},
	} {
		if err := ipRun(args...); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	agent := filepath.Join(dir, "netns-rsh")
	script := fmt.Sprintf(`#!/bin/sh
host=$1; shift
case $host in
%s) ns=%s ;;
%s) ns=%s ;;
*) echo "netns-rsh: no namespace for host $host" >&2; exit 1 ;;
esac
exec %s netns exec $ns /bin/sh -c "$*"
`, hostA, nsA, hostB, nsB, ip)
	if err := os.WriteFile(agent, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	writeIDX(t, data, 48)
	one := filepath.Join(dir, "one")
	if out, err := run(t, mpiArgs(data, one, "cpu,cpu,cpu,cpu", 1)...); err != nil {
		t.Fatalf("in-process run of two replicas: %v\n%s", err, out)
	}
	two := filepath.Join(dir, "two")
	extra := []string{"--host", hostA + "," + hostB, "--mca", "plm_rsh_agent", agent,
		"--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", subnet + ".0/24",
		"--mca", "oob_tcp_if_include", subnet + ".0/24"}
	out, err := mpirunTrainerIn(t, []string{ip, "netns", "exec", nsA}, extra, 2, []string{"TRAINER_TEST_NETNS=" + dir}, mpiArgs(data, two, "cpu,cpu", 1)...)
	if err != nil || !strings.Contains(out, "[1,0]<stdout>:MPI: rank 0 of 2 on ") {
		t.Fatalf("mpirun on two hosts: %v\n%s", err, out)
	}
	var ns [2]string
	for r := range ns {
		b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprint("netns", r)))
		ns[r] = string(b)
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	if ns[0] == "" || ns[0] == ns[1] || ns[0] == self || ns[1] == self {
		t.Errorf("the ranks ran in network namespaces %q and %q (the test's is %q), want two others", ns[0], ns[1], self)
	}
	a, _ := os.ReadFile(filepath.Join(one, "weights.safetensors"))
	b, _ := os.ReadFile(filepath.Join(two, "weights.safetensors"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("the weights of two ranks on two hosts differ from those of one process of two replicas\n%s", out)
	}
}
