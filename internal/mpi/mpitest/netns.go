// Package mpitest sets up what the multi-process tests need: two "hosts"
// on one machine. It is imported by tests only (internal/mpi's and
// cmd/trainer's).
package mpitest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Hosts are two network namespaces joined by a veth pair, each a "host"
// with its own address, talking over TCP only.
type Hosts struct {
	A, B   string // the hosts' addresses
	Subnet string // their /24, for Open MPI's btl_tcp_if_include
	Agent  string // an rsh agent that runs a command in the namespace its host names, as ssh would on another machine
	InA    []string
}

// MPIArgs are mpirun's arguments for a job of one rank per host: the hosts,
// the agent, and TCP on the pair's subnet only.
func (h Hosts) MPIArgs() []string {
	return []string{"--host", h.A + "," + h.B, "--mca", "plm_rsh_agent", h.Agent,
		"--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", h.Subnet + ".0/24",
		"--mca", "oob_tcp_if_include", h.Subnet + ".0/24"}
}

// TwoHosts makes the namespaces (removed when t ends), named with prefix
// and on the subnet 10.<net>.x.0/24, and the agent in dir. It skips t
// where namespaces cannot be made (no `ip`, not root, no CAP_SYS_ADMIN),
// except that under CI a missing `ip` fails it (.ci/run installs
// iproute2). mpirun started with InA as its prefix runs in the first
// host's namespace.
func TwoHosts(t *testing.T, prefix string, net int, dir string) Hosts {
	t.Helper()
	ip, err := exec.LookPath("ip")
	if err != nil {
		msg := "no ip command (apt-get install iproute2): cannot make two network namespaces"
		if os.Getenv("CI") != "" {
			t.Fatal("CI: " + msg)
		}
		t.Skip(msg)
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot make network namespaces")
	}
	id := os.Getpid() % 10000
	nsA, nsB := fmt.Sprintf("alexnet-%s-%d-a", prefix, id), fmt.Sprintf("alexnet-%s-%d-b", prefix, id)
	vethA, vethB := fmt.Sprintf("a%s%da", prefix[:2], id), fmt.Sprintf("a%s%db", prefix[:2], id)
	h := Hosts{Subnet: fmt.Sprintf("10.%d.%d", net, id%250)}
	h.A, h.B = h.Subnet+".1", h.Subnet+".2"
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
		{"-n", nsA, "addr", "add", h.A + "/24", "dev", vethA},
		{"-n", nsB, "addr", "add", h.B + "/24", "dev", vethB},
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
	h.Agent = filepath.Join(dir, "netns-rsh")
	script := fmt.Sprintf(`#!/bin/sh
host=$1; shift
case $host in
%s) ns=%s ;;
%s) ns=%s ;;
*) echo "netns-rsh: no namespace for host $host" >&2; exit 1 ;;
esac
exec %s netns exec $ns /bin/sh -c "$*"
`, h.A, nsA, h.B, nsB, ip)
	if err := os.WriteFile(h.Agent, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h.InA = []string{ip, "netns", "exec", nsA}
	return h
}

// Namespaces fails t unless the ranks' reports in dir (files netns0 and
// netns1, each rank's /proc/self/ns/net) name two namespaces other than
// the test's own.
func Namespaces(t *testing.T, dir string) {
	t.Helper()
	var ns [2]string
	for r := range ns {
		b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprint("netns", r)))
		ns[r] = string(b)
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	if ns[0] == "" || ns[0] == ns[1] || ns[0] == self || ns[1] == self {
		t.Errorf("the ranks ran in network namespaces %q and %q (the test's is %q), want two others", ns[0], ns[1], self)
	}
}
