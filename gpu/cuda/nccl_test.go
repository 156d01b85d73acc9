package cuda

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/gpu"
)

// The NCCL group on the host GPU: the NCCL path over the fake NCCL of
// hostnccl_test.go, the device-copy path over the host GPU's kernels.

// env returns a getenv of vars.
func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

var multiRankOn = envOf(map[string]string{"NCCL_MULTI_RANK_GPU_ENABLE": "1"})

// replicaBufs allocates, per device, one buffer per size, filled with
// seeded random values, named <letter><replica> in the call record.
func replicaBufs(t *testing.T, g *hostGPU, devs []*Device, sizes []int, seed uint64) [][]gpu.Buffer {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 2))
	out := make([][]gpu.Buffer, len(devs))
	for k, d := range devs {
		for i, n := range sizes {
			b, err := d.Alloc(n)
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				g.nameBuffer(b, fmt.Sprintf("%c%d", 'a'+i, k))
			}
			v := make([]float32, n)
			for j := range v {
				v[j] = float32(rng.NormFloat64())
			}
			if err := d.Upload(b, v); err != nil {
				t.Fatal(err)
			}
			out[k] = append(out[k], b)
		}
	}
	return out
}

// download reads every replica's buffers.
func download(t *testing.T, devs []*Device, bufs [][]gpu.Buffer) [][][]float32 {
	t.Helper()
	out := make([][][]float32, len(devs))
	for k, d := range devs {
		for _, b := range bufs[k] {
			v := make([]float32, b.Len())
			if err := d.Download(v, b); err != nil {
				t.Fatal(err)
			}
			out[k] = append(out[k], v)
		}
	}
	return out
}

// reduceAll calls Reduce from one goroutine per replica, as the replicas'
// workers do, and returns each replica's error.
func reduceAll(ctx context.Context, grp *NCCLGroup, devs []*Device, bufs [][]gpu.Buffer) []error {
	return reduceEach(ctx, grp, devs, bufs, false)
}

// reduceEach is reduceAll, with ReduceAsync followed by a Wait for its
// event if async.
func reduceEach(ctx context.Context, grp *NCCLGroup, devs []*Device, bufs [][]gpu.Buffer, async bool) []error {
	errs := make([]error, len(devs))
	var wg sync.WaitGroup
	for k, d := range devs {
		wg.Go(func() {
			if !async {
				errs[k] = grp.Reduce(ctx, k, d, bufs[k])
				return
			}
			ev, err := grp.ReduceAsync(ctx, k, d, bufs[k])
			if err == nil && ev != nil {
				err = d.Wait(ev)
			}
			errs[k] = err
		})
	}
	wg.Wait()
	return errs
}

// TestNCCLCalls records the NCCL calls of a group's life, per rank, and
// the launches of the device-copy reduction, and compares them with
// testdata/ncclcalls.golden (go test -run TestNCCLCalls -update rewrites
// it: review the diff against nccl.h). Mistakes it was seen to fail on:
// ncclSum for ncclAvg; the stream of replica 0 for every rank; count in
// bytes; the device copies adding replica 0's tensor twice.
func TestNCCLCalls(t *testing.T) {
	g := newHostGPU(t, nil, 2)
	var out strings.Builder
	var said string // the group's String, shown under the next title
	section := func(title string, h *hostNCCL) {
		fmt.Fprintf(&out, "\n== %s\n", title)
		if said != "" {
			fmt.Fprintf(&out, "String: %s\n", said)
			said = ""
		}
		if h != nil {
			out.WriteString(h.take())
		}
		for _, c := range g.takeCalls() {
			fmt.Fprintln(&out, c)
		}
	}
	devs := []*Device{g.open(Options{}), g.open(Options{}), g.open(Options{})}
	g.takeCalls()
	h := newHostNCCL(g, 23004)
	h.name(devs...)
	grp, err := newNCCLGroup(devs, h.lib(), nil, multiRankOn)
	if err != nil {
		t.Fatal(err)
	}
	said = grp.String()
	section("NewNCCLGroup: 3 devices on one GPU, NCCL 2.30.4, NCCL_MULTI_RANK_GPU_ENABLE=1", h)
	sizes := []int{600, 7, 0}
	bufs := replicaBufs(t, g, devs, sizes, 1)
	before := download(t, devs, bufs)
	for k, err := range reduceAll(context.Background(), grp, devs, bufs) {
		if err != nil {
			t.Fatalf("replica %d: %v", k, err)
		}
	}
	section("Reduce([a (600), b (7), c (empty)]) on each replica's goroutine", h)
	after := download(t, devs, bufs)
	checkNCCLMean(t, before, after)
	before = after
	for k, err := range reduceEach(context.Background(), grp, devs, bufs, true) {
		if err != nil {
			t.Fatalf("replica %d: %v", k, err)
		}
	}
	section("ReduceAsync: the same, on a stream of the group's per device", h)
	after = download(t, devs, bufs)
	checkNCCLMean(t, before, after)
	if err := grp.Close(); err != nil {
		t.Fatal(err)
	}
	section("Close", h)

	old := newHostNCCL(g, 22304)
	grp, err = newNCCLGroup(devs, old.lib(), nil, multiRankOn)
	if err != nil {
		t.Fatal(err)
	}
	said = grp.String()
	section("NewNCCLGroup: the same devices, NCCL 2.23.4", old)
	for k, err := range reduceAll(context.Background(), grp, devs, bufs) {
		if err != nil {
			t.Fatalf("replica %d: %v", k, err)
		}
	}
	section("Reduce: device copies (the kernels are recorded, not run)", old)
	if err := grp.Close(); err != nil {
		t.Fatal(err)
	}
	section("Close", old)

	var id NCCLID
	if id, err = h.lib().newID(); err != nil {
		t.Fatal(err)
	}
	grp, err = newNCCLGroupRanks(devs[:2], h.lib(), id, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	said = grp.String()
	section("NewNCCLID, NewNCCLGroupRanks: this process's ranks 2 and 3 of 4", h)
	if err := grp.Abort(); err != nil {
		t.Fatal(err)
	}
	section("Abort", h)

	path := filepath.Join("testdata", "ncclcalls.golden")
	const header = `# The NCCL calls (per rank) and kernel launches of an NCCLGroup, recorded
# by TestNCCLCalls (nccl_test.go) on the host GPU with the fake NCCL of
# hostnccl_test.go. Regenerate with go test ./gpu/cuda -run TestNCCLCalls
# -update and review the diff against nccl.h: ncclFloat32 = 7, ncclSum = 0,
# ncclAvg = 4; count is in elements; each rank's tensors in one group.
`
	got := header + out.String()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run TestNCCLCalls -update writes it)", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			var a, b string
			if i < len(gl) {
				a = gl[i]
			}
			if i < len(wl) {
				b = wl[i]
			}
			if a != b {
				t.Fatalf("%s differs at line %d:\n got  %s\n want %s\n(after a reviewed change: go test -run TestNCCLCalls -update)", path, i+1, a, b)
			}
		}
	}
}

// checkNCCLMean checks that every replica's tensors in after are the
// float64 mean of before's, rounded, as the fake NCCL computes it.
func checkNCCLMean(t *testing.T, before, after [][][]float32) {
	t.Helper()
	for i := range before[0] {
		for j := range before[0][i] {
			var s float64
			for k := range before {
				s += float64(before[k][i][j])
			}
			want := float32(s / float64(len(before)))
			for k := range after {
				if after[k][i][j] != want {
					t.Fatalf("replica %d tensor %d [%d] = %g after the all-reduce; want the mean %g", k, i, j, after[k][i][j], want)
				}
			}
		}
	}
}

// Which reduction a group picks, and the reason it gives.
func TestNCCLChoice(t *testing.T) {
	g := newHostGPU(t, nil, 2)
	three := []*Device{g.open(Options{}), g.open(Options{}), g.open(Options{})}
	loadErr := &LoadError{What: "NCCL", Tried: []string{"libnccl.so.2: not found"}, Hint: libNCCL.hint}
	cases := []struct {
		name    string
		devs    []*Device
		version int
		env     func(string) string
		refuse  bool
		libErr  error
		nccl    bool
		says    string
	}{
		{"no NCCL", three, 0, multiRankOn, false, loadErr, false, "NCCL is not loadable"},
		{"NCCL 2.23", three, 22304, multiRankOn, false, nil, false, "allows one rank per GPU"},
		{"NCCL 2.30 without the variable", three, 23004, envOf(nil), false, nil, false, "only with NCCL_MULTI_RANK_GPU_ENABLE=1"},
		{"NCCL 2.30 refusing", three, 23004, multiRankOn, true, nil, false, "NCCL refused several ranks on one GPU"},
		{"NCCL 2.30 with the variable", three, 23004, multiRankOn, false, nil, true, "NCCL 2.30.4 all-reduce"},
		{"one rank", three[:1], 22304, envOf(nil), false, nil, true, "NCCL 2.23.4 all-reduce (ncclAvg) over cuda:host"},
	}
	for _, c := range cases {
		var lib *nccl
		if c.libErr == nil {
			h := newHostNCCL(g, c.version)
			h.refuse = c.refuse
			lib = h.lib()
		}
		grp, err := newNCCLGroup(c.devs, lib, c.libErr, c.env)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if grp.UsesNCCL() != c.nccl || !strings.Contains(grp.String(), c.says) {
			t.Errorf("%s: UsesNCCL %v, %q; want %v, saying %q", c.name, grp.UsesNCCL(), grp, c.nccl, c.says)
		}
		if !c.nccl && !strings.HasPrefix(grp.String(), "device copies over cuda:host, cuda:host/1, cuda:host/2, on cuda:host's stream: ") {
			t.Errorf("%s: %q does not say it copies on cuda:host's stream", c.name, grp)
		}
		_ = grp.Close()
	}
	if _, err := newNCCLGroup(nil, nil, loadErr, envOf(nil)); err == nil {
		t.Error("a group of no devices was made")
	}
}

// NCCL's failures come back as one-line errors with ncclGetErrorString's
// text, and leave the group unusable. It was seen to fail with the
// asynchronous error not asked for.
func TestNCCLErrors(t *testing.T) {
	g := newHostGPU(t, nil, 2)
	devs := []*Device{g.open(Options{}), g.open(Options{})}
	bufs := replicaBufs(t, g, devs, []int{600}, 3)
	for _, c := range []struct {
		name       string
		fail       Result
		async      Result
		want, text string
	}{
		{"ncclAllReduce fails", ncclInvalidArgument, 0, "cuda: ncclAllReduce(600 floats, ncclAvg) on cuda:host", ncclErrorText[ncclInvalidArgument]},
		{"asynchronous error", 0, ncclRemoteError, "cuda: NCCL communicator of cuda:host", ncclErrorText[ncclRemoteError]},
	} {
		h := newHostNCCL(g, 23004)
		h.failAllReduce, h.async = c.fail, c.async
		grp, err := newNCCLGroup(devs, h.lib(), nil, multiRankOn)
		if err != nil {
			t.Fatal(err)
		}
		errs := reduceAll(context.Background(), grp, devs, bufs)
		err = errs[0]
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || !strings.Contains(err.Error(), c.text) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: replica 0's Reduce = %v; want one line starting %q with %q", c.name, err, c.want, c.text)
		}
		if again := grp.Reduce(context.Background(), 1, devs[1], bufs[1]); again == nil || !strings.Contains(again.Error(), c.text) {
			t.Errorf("%s: Reduce after the failure = %v; want the failure again", c.name, again)
		}
		_ = grp.Close()
	}

	// ncclCommInitAll's failure, on devices that do not repeat a GPU
	// (one device), is the constructor's error.
	h := newHostNCCL(g, 23004)
	one := []*Device{devs[0]}
	lib := h.lib()
	lib.commInitAll = func(comms *uintptr, n int32, devlist *int32) Result { return ncclInvalidUsage }
	if _, err := newNCCLGroup(one, lib, nil, envOf(nil)); err == nil || !strings.Contains(err.Error(), "ncclCommInitAll(1 ranks on GPUs 0): invalid usage") {
		t.Errorf("newNCCLGroup with a failing ncclCommInitAll = %v", err)
	}
}

// The device-copy reduction averages: every replica ends with the same
// bits, ((g0 + g1) + g2 + …)·fl(1/R) summed in float32, on the host GPU's
// kernels, over several rounds (Reduce, then ReduceAsync) and tensors
// that outgrow the scale's buffer. Mistakes it was seen to fail on: the scale left out; replica
// 0's own tensor added twice; the copy back to the other replicas left
// out. (The host GPU runs each call at once: a missing stream wait needs
// a GPU to show, TestNCCLFallback.)
func TestNCCLCopiesAverage(t *testing.T) {
	k := loadHostKernels(t)
	for _, R := range []int{2, 3, 4} {
		g := newHostGPU(t, k, 2)
		devs := make([]*Device, R)
		for i := range devs {
			devs[i] = g.open(Options{})
		}
		grp, err := newNCCLGroup(devs, nil, errors.New("no NCCL here"), envOf(nil))
		if err != nil {
			t.Fatal(err)
		}
		for round, sizes := range [][]int{{1000, 7, 0, 33}, {5000, 1}} {
			bufs := replicaBufs(t, g, devs, sizes, uint64(10*R+round))
			before := download(t, devs, bufs)
			for r, err := range reduceEach(context.Background(), grp, devs, bufs, round == 1) {
				if err != nil {
					t.Fatalf("R=%d replica %d: %v", R, r, err)
				}
			}
			after := download(t, devs, bufs)
			scale := float32(1 / float64(R))
			for i, n := range sizes {
				for j := range n {
					s := before[0][i][j]
					for r := 1; r < R; r++ {
						s += before[r][i][j]
					}
					want := s * scale
					for r := range R {
						if math.Float32bits(after[r][i][j]) != math.Float32bits(want) {
							t.Fatalf("R=%d round %d: replica %d tensor %d [%d] = %g; want %g", R, round, r, i, j, after[r][i][j], want)
						}
					}
				}
			}
		}
		if err := grp.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A replica that never comes leaves the others waiting only as long as
// their context allows; tensors that differ between replicas are an
// error, not a wrong mean.
func TestNCCLCopiesFailures(t *testing.T) {
	g := newHostGPU(t, nil, 2)
	devs := []*Device{g.open(Options{}), g.open(Options{})}
	grp, err := newNCCLGroup(devs, nil, errors.New("no NCCL here"), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	bufs := replicaBufs(t, g, devs, []int{10}, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := grp.Reduce(ctx, 0, devs[0], bufs[0]); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for the other replicas") {
		t.Errorf("Reduce without the other replica = %v; want the deadline, waiting for the other replicas", err)
	}

	grp, err = newNCCLGroup(devs, nil, errors.New("no NCCL here"), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	odd := replicaBufs(t, g, devs[1:], []int{11}, 5)
	errs := reduceAll(context.Background(), grp, devs, [][]gpu.Buffer{bufs[0], odd[0]})
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "replica 1's tensor 0 holds 11 values, replica 0's 10") {
			t.Errorf("replica %d's Reduce of mismatched tensors = %v", r, err)
		}
	}
}

// NewNCCLGroups groups the w-th distinct device of every replica, as the
// runner's workers are; it leaves replicas with a non-CUDA device to the
// caller, and refuses replicas placed differently. It was seen to fail
// with the groups made per replica instead of per worker.
func TestNCCLGroups(t *testing.T) {
	g := newHostGPU(t, nil, 2)
	d := []*Device{g.open(Options{}), g.open(Options{}), g.open(Options{}), g.open(Options{})}
	h := newHostNCCL(g, 23004)
	mk := func(devs []*Device) (*NCCLGroup, error) { return newNCCLGroup(devs, h.lib(), nil, multiRankOn) }
	names := func(groups []*NCCLGroup) string {
		var s []string
		for _, grp := range groups {
			s = append(s, "["+grp.names()+"]")
			_ = grp.Close()
		}
		return strings.Join(s, " ")
	}
	groups, err := newNCCLGroups([][]gpu.Device{{d[0], d[1]}, {d[2], d[3]}}, mk)
	if got, want := names(groups), "[cuda:host, cuda:host/2] [cuda:host/1, cuda:host/3]"; err != nil || got != want {
		t.Errorf("two replicas of two devices: %v, groups %s; want %s", err, got, want)
	}
	groups, err = newNCCLGroups([][]gpu.Device{{d[0], d[0]}, {d[1], d[1]}}, mk)
	if got, want := names(groups), "[cuda:host, cuda:host/1]"; err != nil || got != want {
		t.Errorf("two replicas of one device each (both towers on it): %v, groups %s; want %s", err, got, want)
	}
	if groups, err := newNCCLGroups([][]gpu.Device{{d[0], d[1]}, {d[2], d[2]}}, mk); err == nil || groups != nil ||
		!strings.Contains(err.Error(), "replica 1 has 1 devices, replica 0 2") {
		t.Errorf("replicas placed differently: %v, %d groups", err, len(groups))
	}
	// A wrapping device (gpu/bf16's) is its CUDA device's for NCCL.
	groups, err = newNCCLGroups([][]gpu.Device{{wrapped{d[0]}, wrapped{d[1]}}, {wrapped{d[2]}, wrapped{d[3]}}}, mk)
	if got, want := names(groups), "[cuda:host, cuda:host/2] [cuda:host/1, cuda:host/3]"; err != nil || got != want {
		t.Errorf("two replicas of two wrapped devices: %v, groups %s; want %s", err, got, want)
	}
	if groups, err := newNCCLGroups([][]gpu.Device{{d[0]}, {cpuDevice{}}}, mk); err != nil || groups != nil {
		t.Errorf("a replica on a CPU device: %v, %d groups; want none, for the caller", err, len(groups))
	}
}

// wrapped stands for a device that wraps a CUDA device (gpu/bf16's).
type wrapped struct{ gpu.Device }

func (w wrapped) Unwrap() gpu.Device { return w.Device }

// cpuDevice stands for a device of another backend.
type cpuDevice struct{ gpu.Device }
