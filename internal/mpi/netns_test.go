package mpi

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTwoHosts runs two ranks on two "hosts": two network namespaces
// joined by a veth pair, each rank in its own, talking over TCP only.
// mpirun runs in the first and starts the second's daemon through an rsh
// agent that runs the command in the namespace the host address names, as
// ssh would on another machine.
func TestTwoHosts(t *testing.T) {
	t.Parallel() // with TestFaults, which mostly waits
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
	nsA, nsB := fmt.Sprintf("alexnet-mpi-%d-a", id), fmt.Sprintf("alexnet-mpi-%d-b", id)
	vethA, vethB := fmt.Sprintf("amp%da", id), fmt.Sprintf("amp%db", id)
	subnet := fmt.Sprintf("10.231.%d", id%250)
	hostA, hostB := subnet+".1", subnet+".2"
	run := func(args ...string) error {
		out, err := exec.Command(ip, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("netns", "add", nsA); err != nil {
		t.Skipf("cannot make a network namespace here (a container without CAP_SYS_ADMIN?): %v", err)
	}
	t.Cleanup(func() { run("netns", "del", nsA) })
	if err := run("netns", "add", nsB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run("netns", "del", nsB) })
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
		if err := run(args...); err != nil {
			t.Fatal(err)
		}
	}
	// mpirun calls the agent as "agent host command…", the command one
	// string for a remote shell.
	agent := filepath.Join(t.TempDir(), "netns-rsh")
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
	hosts := func(t *testing.T, s string, extra ...string) job {
		args := append([]string{"--host", hostA + "," + hostB, "--mca", "plm_rsh_agent", agent,
			"--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", subnet + ".0/24",
			"--mca", "oob_tcp_if_include", subnet + ".0/24"}, extra...)
		return mpirunIn(t, []string{ip, "netns", "exec", nsA}, 2, s, args...)
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
		var ns [2]string
		for r := range ns {
			b, _ := os.ReadFile(filepath.Join(j.dir, fmt.Sprint("netns", r)))
			ns[r] = string(b)
		}
		self, _ := os.Readlink("/proc/self/ns/net")
		if ns[0] == "" || ns[0] == ns[1] || ns[0] == self || ns[1] == self {
			t.Errorf("the ranks ran in network namespaces %q and %q (the test's is %q), want two others", ns[0], ns[1], self)
		}
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
