package cuda

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/alexnet-go/trainer/kernels"
)

// The kernels of package kernels compiled for the host, for the host GPU
// (hostgpu_test.go): g++ builds a shared library from testdata/hostkern.h,
// every kernels/*.cu and a launch function per kernel, and purego loads it
// (no cgo).

//go:embed testdata/hostkern.h
var hostkernH string

// selftestCU holds kernels that are wrong on a GPU, for the host GPU's own
// test; they are compiled in with those of package kernels.
//
//go:embed testdata/selftest.cu
var selftestCU string

// hostSources are the CUDA sources the host library is built from.
func hostSources() []kernels.Source {
	return append(kernels.Sources(), kernels.Source{Name: "selftest.cu", Code: selftestCU})
}

// hostKernels is kernels/*.cu compiled for the host: one launch function
// per kernel.
type hostKernels struct {
	launch map[string]func(grid, block, shmem uint32, params unsafe.Pointer) int32
	// faultAddress is where the last launch that returned 4 faulted.
	faultAddress func() uint64
}

var (
	hostLaunchMu    sync.Mutex
	hostKernelsOnce sync.Once
	hostKernels0    *hostKernels
	hostKernelsErr  error
)

// loadHostKernels compiles and loads the kernels for the host, once per
// test binary. Without g++ the test is skipped, unless the environment
// variable CI is set: CI installs g++, so there a missing one fails.
func loadHostKernels(t *testing.T) *hostKernels {
	t.Helper()
	cxx, err := exec.LookPath("g++")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and there is no g++ to compile kernels/*.cu for the host (apt-get install g++): %v", err)
		}
		t.Skipf("no g++ to compile kernels/*.cu for the host (apt-get install g++): %v", err)
	}
	hostKernelsOnce.Do(func() { hostKernels0, hostKernelsErr = buildHostKernels(cxx) })
	if hostKernelsErr != nil {
		t.Fatal(hostKernelsErr)
	}
	return hostKernels0
}

// paramDecl splits one kernel parameter into its type and name.
var paramDecl = regexp.MustCompile(`^(.*?)\s*(\w+)$`)

// hostKernelsSource returns the C++ file that includes the shim and every
// kernels/*.cu and exports launch_<kernel>(grid, block, shmem, params),
// which unpacks cuLaunchKernel's params as the kernel's parameters.
func hostKernelsSource() (string, []string, error) {
	var b strings.Builder
	b.WriteString("#include \"hostkern.h\"\n")
	var names []string
	for _, s := range hostSources() {
		fmt.Fprintf(&b, "#include %q\n", s.Name)
	}
	for _, s := range hostSources() {
		for _, m := range kernelDecl.FindAllStringSubmatch(s.Code, -1) {
			name := m[1]
			var args []string
			for i, p := range strings.Split(m[2], ",") {
				pm := paramDecl.FindStringSubmatch(strings.Join(strings.Fields(p), " "))
				if pm == nil {
					return "", nil, fmt.Errorf("kernel %s: cannot parse parameter %q", name, p)
				}
				args = append(args, fmt.Sprintf("*(%s*)p[%d]", pm[1], i))
			}
			fmt.Fprintf(&b, "static void hk_%s(void* a) { void** p = (void**)a; %s(%s); }\n", name, name, strings.Join(args, ", "))
			fmt.Fprintf(&b, "extern \"C\" int launch_%s(unsigned grid, unsigned block, unsigned shmem, void** p) { (void)shmem; return hkRun(grid, block, hk_%s, p); }\n", name, name)
			names = append(names, name)
		}
	}
	return b.String(), names, nil
}

func buildHostKernels(cxx string) (*hostKernels, error) {
	dir, err := os.MkdirTemp("", "hostkern")
	if err != nil {
		return nil, err
	}
	// The library stays mapped once loaded.
	defer os.RemoveAll(dir)
	src, names, err := hostKernelsSource()
	if err != nil {
		return nil, err
	}
	files := map[string]string{"hostkern.h": hostkernH, "kernels.cpp": src}
	for _, s := range hostSources() {
		files[s.Name] = s.Code
	}
	for name, code := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(code), 0o644); err != nil {
			return nil, err
		}
	}
	so := filepath.Join(dir, "libhostkern.so")
	cmd := exec.Command(cxx, "-std=c++17", "-O1", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC", "-Wall", "-Wno-unused-function",
		"-o", so, filepath.Join(dir, "kernels.cpp"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("g++ on kernels/*.cu with testdata/hostkern.h: %v\n%s", err, out)
	}
	h, err := purego.Dlopen(so, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, err
	}
	k := &hostKernels{launch: map[string]func(grid, block, shmem uint32, params unsafe.Pointer) int32{}}
	sym, err := purego.Dlsym(h, "hk_fault_address")
	if err != nil {
		return nil, err
	}
	purego.RegisterFunc(&k.faultAddress, sym)
	for _, name := range names {
		sym, err := purego.Dlsym(h, "launch_"+name)
		if err != nil {
			return nil, err
		}
		var f func(grid, block, shmem uint32, params unsafe.Pointer) int32
		purego.RegisterFunc(&f, sym)
		k.launch[name] = f
	}
	return k, nil
}

// The host GPU runs a block's threads as a GPU would as far as barriers
// go: it reports a barrier that only some threads reach, and a block
// reduction missing its barriers gives wrong sums (one thread per block
// would sum right, and hide the mistake). A read past the end of a buffer
// is reported with its address, not a crash.
func TestHostGPUCatchesKernelMistakes(t *testing.T) {
	k := loadHostKernels(t)
	g := newHostGPU(t, k, 1)
	const blocks, block = 64, 256
	mem := func(n int) (uint64, []float32) {
		p, r := g.alloc(4 * uint64(n))
		if r != cudaSuccess {
			t.Fatalf("alloc: %d", r)
		}
		return p, g.floats(p, n)
	}
	hostLaunchMu.Lock()
	defer hostLaunchMu.Unlock()
	yp, _ := mem(block)
	params := []unsafe.Pointer{unsafe.Pointer(&yp)}
	if r := k.launch["selftest_divergent"](1, block, 0, unsafe.Pointer(&params[0])); r != 2 {
		t.Errorf("a barrier that thread 0 skips: launch returned %d; want 2 (divergent barrier)", r)
	}

	const n = 1024 // 4096 bytes: the value past the end is on the guard page
	np, _ := mem(n)
	count := int32(n)
	params = []unsafe.Pointer{unsafe.Pointer(&count), unsafe.Pointer(&yp), unsafe.Pointer(&np)}
	if r := k.launch["selftest_past_end"](1, 32, 0, unsafe.Pointer(&params[0])); r != 4 {
		t.Errorf("a read past the end of a buffer: launch returned %d; want 4 (fault)", r)
	} else if a := k.faultAddress(); a != np+4*n {
		t.Errorf("a read past the end of a buffer at %#x faulted at %#x", np+4*n, a)
	}

	xp, x := mem(blocks * block)
	op, out := mem(blocks)
	for i := range x {
		x[i] = float32(i % 7) // small integers: every order sums exactly
	}
	for _, barrier := range []int32{1, 0} {
		params := []unsafe.Pointer{unsafe.Pointer(&barrier), unsafe.Pointer(&op), unsafe.Pointer(&xp)}
		if r := k.launch["selftest_sum"](blocks, block, 0, unsafe.Pointer(&params[0])); r != 0 {
			t.Fatalf("selftest_sum: launch returned %d", r)
		}
		wrong := 0
		for b := range blocks {
			var want float32
			for _, v := range x[b*block : (b+1)*block] {
				want += v
			}
			if out[b] != want {
				wrong++
			}
		}
		switch {
		case barrier == 1 && wrong > 0:
			t.Errorf("the block sum with its barriers is wrong in %d of %d blocks", wrong, blocks)
		case barrier == 0 && wrong == 0:
			t.Errorf("the block sum without barriers between its levels is right in every block: the threads did not run as a GPU's")
		case barrier == 0:
			t.Logf("without barriers, %d of %d block sums are wrong", wrong, blocks)
		}
	}
}
