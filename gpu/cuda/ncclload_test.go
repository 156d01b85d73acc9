package cuda

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"
)

// fakeLibNCCL is a libnccl.so.2 in C++, for the loader and for the
// calling convention purego uses: each call checks the arguments it
// receives against the values the test passes, so a misplaced argument
// (ncclUniqueId is 128 bytes passed by value, on the stack;
// ncclAllReduce's seventh argument, the stream, is on the stack too)
// returns an error instead of success.
const fakeLibNCCL = `
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
typedef struct { char internal[128]; } ncclUniqueId;
extern "C" {
int ncclGetVersion(int* v) {
	const char* s = getenv("FAKE_NCCL_VERSION");
	*v = s ? atoi(s) : 23004;
	return 0;
}
const char* ncclGetErrorString(int r) {
	switch (r) {
	case 4: return "invalid argument (fake)";
	case 5: return "invalid usage (fake)";
	}
	return "unknown (fake)";
}
int ncclGetUniqueId(ncclUniqueId* id) {
	for (int i = 0; i < 128; i++) id->internal[i] = (char)(3 * i + 1);
	return 0;
}
int ncclCommInitRank(void** comm, int nranks, ncclUniqueId id, int rank) {
	for (int i = 0; i < 128; i++) if (id.internal[i] != (char)(3 * i + 1)) return 4;
	if (nranks != 4 || rank != 2) return 5;
	*comm = (void*)(uintptr_t)(0x100 + rank);
	return 0;
}
int ncclCommInitAll(void** comms, int n, const int* devs) {
	for (int i = 0; i < n; i++) {
		if (devs[i] != 3 * i) return 4;
		comms[i] = (void*)(uintptr_t)(0x200 + i);
	}
	return 0;
}
int ncclGroupStart() { return 0; }
int ncclGroupEnd() { return 0; }
int ncclAllReduce(const void* send, void* recv, size_t count, int dtype, int op, void* comm, void* stream) {
	if ((uintptr_t)send != 0x1000 || (uintptr_t)recv != 0x2000 || count != 600 || dtype != 7 || op != 4) return 4;
	if ((uintptr_t)comm != 0x102 || (uintptr_t)stream != 0x5157) return 5;
	return 0;
}
int ncclCommAbort(void* comm) { return 0; }
int ncclCommDestroy(void* comm) { return (uintptr_t)comm == 0x102 ? 0 : 4; }
int ncclCommGetAsyncError(void* comm, int* r) { *r = 6; return 0; }
}
`

// buildFakeNCCL compiles fakeLibNCCL into site/nvidia/nccl/lib/libnccl.so.2
// under a temporary folder, as pip's nvidia-nccl-cu13 lays it out, and
// returns the site-packages folder.
func buildFakeNCCL(t *testing.T) (site, lib string) {
	t.Helper()
	cxx, err := exec.LookPath("g++")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and there is no g++ (apt-get install g++): %v", err)
		}
		t.Skipf("no g++ to build a fake libnccl.so.2: %v", err)
	}
	root := t.TempDir()
	site = filepath.Join(root, "venv/lib/python3.12/site-packages")
	lib = filepath.Join(site, "nvidia/nccl/lib/libnccl.so.2")
	if err := os.MkdirAll(filepath.Dir(lib), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, "nccl.cc")
	if err := os.WriteFile(src, []byte(fakeLibNCCL), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cxx, "-shared", "-fPIC", "-O1", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("g++: %v\n%s", err, out)
	}
	return site, lib
}

// NCCL is found where pip's wheel puts it, and every binding passes its
// arguments where the C functions look for them. Mistakes it was seen to
// fail on: the unique id passed by pointer.
func TestNCCLLoad(t *testing.T) {
	site, path := buildFakeNCCL(t)
	e := fakeEnv(nil, site)
	c, err := openNCCL(e, libNCCL)
	if err != nil {
		t.Fatal(err)
	}
	if c.path != path || c.version != 23004 || ncclVersionString(c.version) != "2.30.4" {
		t.Fatalf("openNCCL found %s, version %d; want %s, 23004 (2.30.4)", c.path, c.version, path)
	}
	id, err := c.newID()
	if err != nil {
		t.Fatal(err)
	}
	if last := 3*127 + 1; id[0] != 1 || id[127] != byte(last) {
		t.Errorf("ncclGetUniqueId wrote % x … % x", id[:4], id[124:])
	}
	var comm uintptr
	if err := c.check(c.commInitRank(&comm, 4, ncclUniqueID{Internal: id}, 2), "ncclCommInitRank"); err != nil || comm != 0x102 {
		t.Errorf("ncclCommInitRank(4, id, 2) = %v, comm %#x; want success, 0x102", err, comm)
	}
	id[5]++
	err = c.check(c.commInitRank(&comm, 4, ncclUniqueID{Internal: id}, 2), "ncclCommInitRank(rank 2 of 4)")
	if err == nil || err.Error() != "cuda: ncclCommInitRank(rank 2 of 4): invalid argument (fake)" {
		t.Errorf("ncclCommInitRank with another id = %v; want the fake's invalid argument", err)
	}
	comms := make([]uintptr, 3)
	devs := []int32{0, 3, 6}
	if err := c.check(c.commInitAll(&comms[0], 3, &devs[0]), "ncclCommInitAll"); err != nil || comms[2] != 0x202 {
		t.Errorf("ncclCommInitAll = %v, %#x", err, comms)
	}
	if err := c.check(c.allReduce(0x1000, 0x2000, 600, ncclFloat32, ncclAvg, 0x102, 0x5157), "ncclAllReduce"); err != nil {
		t.Errorf("ncclAllReduce: %v", err)
	}
	if err := c.check(c.allReduce(0x1000, 0x2000, 600, ncclFloat32, ncclAvg, 0x5157, 0x102), "ncclAllReduce"); err == nil {
		t.Error("ncclAllReduce with comm and stream swapped succeeded: the fake does not check them")
	}
	var async Result
	if err := c.check(c.commGetAsyncError(0x102, &async), "ncclCommGetAsyncError"); err != nil || async != ncclRemoteError {
		t.Errorf("ncclCommGetAsyncError = %v, %d", err, async)
	}
	if c.check(c.groupStart(), "") != nil || c.check(c.groupEnd(), "") != nil || c.check(c.commAbort(0x102), "") != nil || c.check(c.commDestroy(0x102), "") != nil {
		t.Error("ncclGroupStart, ncclGroupEnd, ncclCommAbort or ncclCommDestroy failed")
	}

	// NCCL before 2.10 has no ncclAvg: refused, saying what to install.
	// The fake reads its version from the process environment (C's
	// getenv, which os.Setenv reaches through purego's runtime).
	t.Setenv("FAKE_NCCL_VERSION", "2804")
	if _, err := openNCCL(e, libNCCL); err == nil || !strings.Contains(err.Error(), "is NCCL 2.8.4; NCCL 2.10 or later is needed") || !strings.Contains(err.Error(), "pip install nvidia-nccl-cu13") {
		t.Errorf("openNCCL of NCCL 2.8.4 = %v", err)
	}

	// Not there at all: a LoadError naming what to install.
	_, err = openNCCL(fakeEnv(map[string]string{"ALEXNET_NCCL": filepath.Join(t.TempDir(), "libnccl.so.2")}), libNCCL)
	if err == nil || !strings.Contains(err.Error(), "cannot load NCCL") || !strings.Contains(err.Error(), "ALEXNET_NCCL=") {
		t.Errorf("openNCCL of a missing ALEXNET_NCCL = %v", err)
	}
}

// Every NCCL binding's Go type is one purego can register (the struct
// passed by value among them), checked without g++ or NCCL.
func TestNCCLBindingTypes(t *testing.T) {
	h, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		t.Skipf("no libc to bind against: %v", err)
	}
	sym, err := purego.Dlsym(h, "abs")
	if err != nil {
		t.Skip(err)
	}
	v := reflect.ValueOf(&nccl{}).Elem()
	n := 0
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() != reflect.Func {
			continue
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("nccl.%s: purego cannot bind %s: %v", v.Type().Field(i).Name, f.Type(), r)
				}
			}()
			purego.RegisterFunc(reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Interface(), sym)
		}()
		n++
	}
	if n != 11 {
		t.Errorf("nccl has %d bindings; want 11", n)
	}
}
