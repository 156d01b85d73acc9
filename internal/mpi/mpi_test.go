package mpi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/internal/mpi/mpitest"
)

// The tests run the test binary itself under mpirun: TestMain sees
// childEnv set and runs the named scenario as one rank, which writes what
// it saw to the file rank<r> in the folder dirEnv names, then exits.
const (
	childEnv = "ALEXNET_MPI_TEST_CHILD"
	dirEnv   = "ALEXNET_MPI_TEST_DIR"
)

// faultTimeout is the deadline of the fault scenarios' collectives.
const faultTimeout = 3 * time.Second

func TestMain(m *testing.M) {
	if s := os.Getenv(childEnv); s != "" {
		os.Exit(child(s))
	}
	os.Exit(m.Run())
}

// child runs scenario s as one rank and returns its exit status.
func child(s string) int {
	// The fault scenarios' deadline is short; their start is not, as
	// mpirun may take seconds to start the ranks on a busy machine,
	// except where the fault strikes before MPI starts.
	o := Options{}
	if s != "collectives" {
		o.Timeout, o.StartTimeout = faultTimeout, time.Minute
	}
	if s == "stop-init" {
		o.StartTimeout = faultTimeout
	}
	if s == "stop-init" && os.Getenv("OMPI_COMM_WORLD_RANK") == "1" {
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	}
	w, err := Init(o)
	if err == nil && w == nil {
		err = errors.New("Init returned no world under mpirun")
	}
	report := func(msg string) { writeReport("rank", msg) }
	if err != nil {
		report("Init: " + err.Error())
		return 2
	}
	if err = run(s, w); err != nil {
		report(err.Error())
		w.Close() // without MPI_Finalize: the world is broken
		return 3
	}
	if err := w.Close(); err != nil {
		report("Close: " + err.Error())
		return 4
	}
	// Which network namespace the rank ran in, for TestTwoHosts.
	ns, _ := os.Readlink("/proc/self/ns/net")
	writeReport("netns", ns)
	report("ok")
	return 0
}

// writeReport writes a file of this rank's report.
func writeReport(kind, msg string) {
	os.WriteFile(filepath.Join(os.Getenv(dirEnv), kind+os.Getenv("OMPI_COMM_WORLD_RANK")), []byte(msg), 0o644)
}

// run is scenario s's work on this rank.
func run(s string, w *World) error {
	switch s {
	case "collectives":
		return collectives(w)
	case "bench":
		return benchReduce(w)
	case "mismatch":
		return w.AllReduceFloat32(make([]float32, 3+w.Rank()))
	case "kill", "stop", "hang":
		// Both ranks take part in one collective first, so that the fault
		// strikes a running world.
		if err := w.Barrier(); err != nil {
			return fmt.Errorf("first barrier: %v", err)
		}
		if w.Rank() == 1 {
			switch s {
			case "kill":
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			case "stop":
				syscall.Kill(os.Getpid(), syscall.SIGSTOP)
			case "hang":
				select {} // the MPI goroutine still answers
			}
		}
		x := []float64{1}
		return w.AllReduceFloat64(x)
	}
	return fmt.Errorf("no scenario %q", s)
}

// nilDeref dereferences a nil pointer and returns the panic.
func nilDeref() (err error) {
	defer func() { err, _ = recover().(error) }()
	var p *int
	return fmt.Errorf("read %d", *p)
}

// gradsOf returns rank r's gradients in the collectives scenario: seeded,
// of lengths that the chunked gather splits unevenly.
func gradsOf(r int, lens []int) [][]float32 {
	rng := rand.New(rand.NewPCG(1, uint64(r)))
	g := make([][]float32, len(lens))
	for i, n := range lens {
		g[i] = make([]float32, n)
		for j := range g[i] {
			g[i][j] = float32(rng.NormFloat64() * float64(1+i))
		}
	}
	return g
}

// meanOf is the in-process reference of package parallel, from its
// formula: every replica's value summed in replica order in float64,
// divided by R, rounded once to float32.
func meanOf(R int, lens []int) [][]float32 {
	all := make([][][]float32, R)
	for r := range R {
		all[r] = gradsOf(r, lens)
	}
	mean := make([][]float32, len(lens))
	for i, n := range lens {
		mean[i] = make([]float32, n)
		for j := range n {
			var s float64
			for r := range R {
				s += float64(all[r][i][j])
			}
			mean[i][j] = float32(s / float64(R))
		}
	}
	return mean
}

// collectives checks every collective against values computed here.
func collectives(w *World) error {
	R, r := w.Size(), w.Rank()
	// Go's signal handlers survive MPI_Init: a nil dereference is still a
	// panic that recover catches, not Open MPI's backtrace and abort.
	if err := nilDeref(); err == nil {
		return errors.New("a nil dereference did not panic")
	}
	if want, _ := strconv.Atoi(os.Getenv("OMPI_COMM_WORLD_SIZE")); R != want {
		return fmt.Errorf("Size() = %d, mpirun started %d", R, want)
	}
	if want, _ := strconv.Atoi(os.Getenv("OMPI_COMM_WORLD_RANK")); r != want {
		return fmt.Errorf("Rank() = %d, mpirun says %d", r, want)
	}

	// TestCollectives binds each rank to one core, which Describe must
	// tell on a host of several.
	d, prefix := w.Describe(), fmt.Sprintf("rank %d of %d on ", r, R)
	if !strings.HasPrefix(d, prefix) || !strings.Contains(d, "Open MPI") {
		return fmt.Errorf("Describe() = %q, want %q… naming Open MPI", d, prefix)
	}
	if bound := strings.Contains(d, "bound to 1 of"); bound != (runtime.NumCPU() == 1 && onlineCPUs() > 1) {
		return fmt.Errorf("Describe() = %q on %d of %d CPUs", d, runtime.NumCPU(), onlineCPUs())
	}

	// Bcast from the last rank.
	root := R - 1
	buf := make([]byte, 1000)
	want := make([]byte, len(buf))
	for i := range want {
		want[i] = byte(7*i + 3)
	}
	if r == root {
		copy(buf, want)
	}
	if err := w.Bcast(buf, root); err != nil {
		return err
	}
	if !bytes.Equal(buf, want) {
		return fmt.Errorf("Bcast from rank %d: rank %d got %v…, want %v…", root, r, buf[:8], want[:8])
	}

	// Sums, rank r contributing (r+1)·x_i.
	x64 := []float64{1, 0.1, -3.5, 1e-300}
	x32 := []float32{1, 0.1, -3.5, 1e-30}
	got64, got32 := make([]float64, len(x64)), make([]float32, len(x32))
	for i := range x64 {
		got64[i], got32[i] = float64(r+1)*x64[i], float32(r+1)*x32[i]
	}
	if err := w.AllReduceFloat64(got64); err != nil {
		return err
	}
	if err := w.AllReduceFloat32(got32); err != nil {
		return err
	}
	for i := range x64 {
		var s64, s32 float64
		for k := range R {
			s64 += float64(k+1) * x64[i]
			s32 += float64(float32(k+1) * x32[i])
		}
		if got64[i] != s64 || got32[i] != float32(s32) {
			return fmt.Errorf("AllReduce on rank %d: [%d] = %v and %v, want %v and %v", r, i, got64[i], got32[i], s64, float32(s32))
		}
	}

	// Two gradient groups reducing at once, as a two-tower replica's
	// workers do, with gathers split into chunks.
	chunkValues = 1000
	lens := [][]int{{5, 2500, 37}, {1, 4097}}
	dev := cpu.New(cpu.Options{Index: r, Threads: 1})
	var groups []*Group
	for range lens {
		g, err := w.NewGroup()
		if err != nil {
			return err
		}
		groups = append(groups, g)
	}
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for k, g := range groups {
		wg.Go(func() { errs[k] = reduceOnce(g, dev, r, R, lens[k]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// reduceOnce reduces rank r's gradients of lengths lens with g and
// compares the result with the reference, bit for bit.
func reduceOnce(g *Group, dev gpu.Device, r, R int, lens []int) error {
	grads := gradsOf(r, lens)
	bufs := make([]gpu.Buffer, len(lens))
	for i, v := range grads {
		b, err := dev.Alloc(len(v))
		if err != nil {
			return err
		}
		defer dev.Free(b)
		if err := dev.Upload(b, v); err != nil {
			return err
		}
		bufs[i] = b
	}
	if err := g.Reduce(context.Background(), 0, dev, bufs); err != nil {
		return err
	}
	mean := meanOf(R, lens)
	for i, b := range bufs {
		got := make([]float32, b.Len())
		if err := dev.Download(got, b); err != nil {
			return err
		}
		for j := range got {
			if got[j] != mean[i][j] {
				return fmt.Errorf("Reduce on rank %d: tensor %d [%d] = %v, want %v (the in-process mean)", r, i, j, got[j], mean[i][j])
			}
		}
	}
	return nil
}

// mpirunPath returns mpirun's path, skipping the test without it (failing
// on CI, where .ci/run installs it).
func mpirunPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("mpirun")
	if err != nil {
		msg := "mpirun not found: apt-get install openmpi-bin libopenmpi3 to run the MPI tests"
		if os.Getenv("CI") != "" { // .ci/run installs them
			t.Fatal("CI: " + msg)
		}
		t.Skip(msg)
	}
	return p
}

// job is what an mpirun run left.
type job struct {
	err     error    // mpirun's
	out     string   // mpirun's output, the ranks' included
	reports []string // per rank, what it reported
	exits   []string // per rank, its exit status ("" when its shell was killed first)
	dir     string   // the folder of the ranks' files
}

// mpirun runs scenario s on np ranks, with mpirun's extra arguments. The
// whole job is bounded: a hang fails the test.
func mpirun(t testing.TB, np int, s string, extra ...string) job {
	t.Helper()
	return mpirunIn(t, nil, np, s, extra...)
}

// mpirunIn is mpirun run through the command prefix (ip netns exec …).
func mpirunIn(t testing.TB, prefix []string, np int, s string, extra ...string) job {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := []string{"--oversubscribe", "-np", strconv.Itoa(np), "-x", childEnv + "=" + s, "-x", dirEnv + "=" + dir}
	// Through a shell that records the rank's exit status.
	record := `"$0"; s=$?; echo $s > "$` + dirEnv + `/exit$OMPI_COMM_WORLD_RANK"; exit $s`
	args = append(append(args, extra...), "/bin/sh", "-c", record, self)
	line := append(append(append([]string{}, prefix...), mpirunPath(t)), args...)
	out, err := mpitest.Run(t, 60*time.Second, line)
	reports, exits := make([]string, np), make([]string, np)
	for r := range np {
		b, _ := os.ReadFile(filepath.Join(dir, "rank"+strconv.Itoa(r)))
		reports[r] = string(b)
		b, _ = os.ReadFile(filepath.Join(dir, "exit"+strconv.Itoa(r)))
		exits[r] = strings.TrimSpace(string(b))
	}
	return job{err, out, reports, exits, dir}
}

func TestCollectives(t *testing.T) {
	j := mpirun(t, 3, "collectives", "--bind-to", "core:overload-allowed")
	for r, rep := range j.reports {
		if rep != "ok" {
			t.Errorf("rank %d: %q", r, rep)
		}
	}
	if j.err != nil || t.Failed() {
		t.Fatalf("mpirun: %v\n%s", j.err, j.out)
	}
}

// Ranks that pass different lengths fail at once, saying so (a rank may
// be ended by mpirun before it reports).
func TestMismatch(t *testing.T) {
	t.Parallel()
	j := mpirun(t, 2, "mismatch")
	reported := 0
	for r, want := range []string{
		"mpi: all-reduce: rank 1 passes 4 values in 1 tensors, rank 0 3 in 1: every rank must pass the same lengths",
		"mpi: all-reduce: rank 0 passes 3 values in 1 tensors, rank 1 4 in 1: every rank must pass the same lengths",
	} {
		if j.reports[r] == "" {
			continue
		}
		reported++
		if !strings.HasPrefix(j.reports[r], want) || j.exits[r] != "3" {
			t.Errorf("rank %d reported %q and exited with %q, want %q… and 3", r, j.reports[r], j.exits[r], want)
		}
	}
	if j.err == nil || reported == 0 {
		t.Errorf("mpirun: %v, with %d reports; want a failure and at least one report\n%s", j.err, reported, j.out)
	}
}

// TestFaults kills, stops or hangs rank 1 after a first collective: rank 0
// must end its next collective with the one-line error that names rank 1,
// and exit non-zero, whereupon the whole job ends. mpirun itself ends the
// job when a rank dies, naming it; with --enable-recovery it lets the
// others run on, as srun does without --kill-on-bad-exit, and the deadline
// ends them.
func TestFaults(t *testing.T) {
	const silent = `^mpi: rank 1 \(.+\) did not answer within 3s \(--rank-timeout\): it died or is stopped \(rank 0 waited in the all-reduce; last heard .+ ago\)$`
	for _, c := range []struct {
		name, scenario string
		args           []string
		report         string // a regular expression that rank 0's report matches
		exit           string // rank 0's exit status
		mpirun         string // a regular expression that mpirun's output matches
	}{
		{"kill", "kill", nil, "", "", `process rank 1 with PID|Process name: \[\[\d+,\d+\],1\]`},
		{"kill-recovery", "kill", []string{"--enable-recovery"}, silent, "3", ""},
		{"stop", "stop", nil, silent, "3", ""},
		{"hang", "hang", nil, `^mpi: rank 1 \(.+\) answers but did not reach the all-reduce within 3s \(--rank-timeout\): it hangs or is slower than the timeout \(rank 0 waited\)$`, "3", ""},
		{"stop-init", "stop-init", nil, `^Init: mpi: MPI did not start within 3s: a rank did not start, died or is stopped$`, "2", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // each mostly waits for its deadline
			j := mpirun(t, 2, c.scenario, c.args...)
			// With --enable-recovery mpirun exits 0 whatever its ranks did.
			if j.err == nil && c.args == nil {
				t.Errorf("mpirun succeeded, want a failure")
			}
			if c.mpirun != "" && !regexp.MustCompile(c.mpirun).MatchString(j.out) {
				t.Errorf("mpirun's output does not name rank 1 (%s)", c.mpirun)
			}
			if c.report != "" {
				if got := j.reports[0]; !regexp.MustCompile(c.report).MatchString(got) {
					t.Errorf("rank 0 reported %q, want one line that matches %s", got, c.report)
				}
				if j.exits[0] != c.exit {
					t.Errorf("rank 0 exited with status %q, want %s", j.exits[0], c.exit)
				}
			}
			if t.Failed() {
				t.Logf("mpirun: %v\n%s", j.err, j.out)
			}
		})
	}
}

// benchValues is the size of the gradients BenchmarkGroupReduce reduces:
// the two-tower net's, one tower's worth (alexnet: 61M parameters).
const benchValues = 30 << 20

// benchReduce times Group.Reduce of benchValues values from a CPU device
// and reports the seconds per reduction.
func benchReduce(w *World) error {
	n, _ := strconv.Atoi(os.Getenv("ALEXNET_MPI_BENCH_N"))
	dev := cpu.New(cpu.Options{Threads: 1})
	b, err := dev.Alloc(benchValues)
	if err != nil {
		return err
	}
	defer dev.Free(b)
	dev.Fill(b, float32(w.Rank()))
	g, err := w.NewGroup()
	if err != nil {
		return err
	}
	if err := w.Barrier(); err != nil {
		return err
	}
	start := time.Now()
	for range n {
		if err := g.Reduce(context.Background(), 0, dev, []gpu.Buffer{b}); err != nil {
			return err
		}
	}
	writeReport("seconds", fmt.Sprint(time.Since(start).Seconds()/float64(n)))
	return nil
}

// BenchmarkGroupReduce reduces one tower's gradients (benchValues
// float32) between two ranks on this machine, through shared memory.
func BenchmarkGroupReduce(b *testing.B) {
	j := mpirun(b, 2, "bench", "-x", "ALEXNET_MPI_BENCH_N="+strconv.Itoa(b.N))
	if j.err != nil || j.reports[0] != "ok" {
		b.Fatalf("mpirun: %v %q\n%s", j.err, j.reports, j.out)
	}
	out, _ := os.ReadFile(filepath.Join(j.dir, "seconds0"))
	sec, _ := strconv.ParseFloat(string(out), 64)
	b.ReportMetric(sec, "s/reduce")
	b.ReportMetric(4*benchValues/sec/1e9, "GB/s")
}
