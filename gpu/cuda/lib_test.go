package cuda

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/alexnet-go/trainer/kernels"
)

// fakeEnv is an env over the real file system with a made-up environment.
func fakeEnv(vars map[string]string, sites ...string) env {
	e := hostEnv
	e.getenv = func(k string) string { return vars[k] }
	e.sitePackages = func() []string { return sites }
	return e
}

// touch creates an empty file at path, and its folders.
func touch(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCandidatesSearchOrder(t *testing.T) {
	root := t.TempDir()
	ld := touch(t, filepath.Join(root, "ld/libcudnn.so.9"))
	site := filepath.Join(root, "venv/lib/python3.12/site-packages")
	pip := touch(t, filepath.Join(site, "nvidia/cudnn/lib/libcudnn.so.9"))
	user := touch(t, filepath.Join(root, "home/.local/lib/python3.11/site-packages/nvidia/cublas/lib/libcublas.so.12"))
	e := fakeEnv(map[string]string{
		"LD_LIBRARY_PATH": filepath.Join(root, "ld") + ":" + filepath.Join(root, "missing"),
		"HOME":            filepath.Join(root, "home"),
	}, site)

	got := e.candidates(libCUDNN)
	if len(got) < 3 || got[0] != ld {
		t.Fatalf("candidates(cuDNN) = %q; want %s first", got, ld)
	}
	if !slices.Contains(got, pip) {
		t.Errorf("candidates(cuDNN) = %q; want the pip wheel's %s", got, pip)
	}
	if got[len(got)-1] != "libcudnn.so.9" {
		t.Errorf("candidates(cuDNN) end with %q; want the bare soname, for the loader's own search", got[len(got)-1])
	}
	if i, j := slices.Index(got, ld), slices.Index(got, pip); i > j {
		t.Errorf("LD_LIBRARY_PATH's copy at %d after the pip wheel's at %d", i, j)
	}
	if got := e.candidates(libCUBLAS); !slices.Contains(got, user) {
		t.Errorf("candidates(cuBLAS) = %q; want ~/.local's %s", got, user)
	}
	dirs := e.searchDirs()
	if !slices.Contains(dirs, "/usr/local/cuda/lib64") || !slices.Contains(dirs, "/usr/lib/x86_64-linux-gnu") {
		t.Errorf("searchDirs() = %q; want the CUDA and system folders", dirs)
	}
}

func TestEnvOverride(t *testing.T) {
	root := t.TempDir()
	bogus := touch(t, filepath.Join(root, "libcudnn.so.9")) // not an ELF file
	touch(t, filepath.Join(root, "ld/libcudnn.so.9"))
	e := fakeEnv(map[string]string{"ALEXNET_CUDNN": bogus, "LD_LIBRARY_PATH": filepath.Join(root, "ld")})
	if got := e.candidates(libCUDNN); !slices.Equal(got, []string{bogus}) {
		t.Fatalf("with ALEXNET_CUDNN set, candidates = %q; want only %s", got, bogus)
	}
	_, _, err := e.open(libCUDNN)
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("open(bogus cuDNN) = %v; want a *LoadError", err)
	}
	msg := err.Error()
	for _, want := range []string{"cuDNN", bogus, "ALEXNET_CUDNN=", "pip install nvidia-cudnn-cu12"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if errors.Is(err, ErrNoDriver) {
		t.Error("a cuDNN load error matches ErrNoDriver")
	}
}

func TestDriverLoadError(t *testing.T) {
	root := t.TempDir()
	e := fakeEnv(map[string]string{"ALEXNET_LIBCUDA": filepath.Join(root, "nope/libcuda.so.1")})
	_, err := openDriver(e)
	if err == nil {
		t.Fatal("openDriver with a missing ALEXNET_LIBCUDA succeeded")
	}
	if !errors.Is(err, ErrNoDriver) {
		t.Errorf("error %v does not match ErrNoDriver", err)
	}
	if !strings.Contains(err.Error(), "install the NVIDIA driver") {
		t.Errorf("error %q does not say what to do", err)
	}
}

// Without a driver (this machine, CI), Devices and Open fail with a clear
// error; with one, they are exercised by cuda_test.go.
func TestNoDriver(t *testing.T) {
	if _, err := loadDriver(); err == nil {
		t.Skip("a CUDA driver is installed: cuda_test.go covers Devices and Open")
	}
	if _, err := Devices(); !errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), "libcuda.so.1") {
		t.Errorf("Devices() = %v; want ErrNoDriver naming libcuda.so.1", err)
	}
	if _, err := Open(0, Options{}); !errors.Is(err, ErrNoDriver) {
		t.Errorf("Open(0) = %v; want ErrNoDriver", err)
	}
	if s := Libraries(); !strings.Contains(s, "install the NVIDIA driver") {
		t.Errorf("Libraries() = %q; want the driver's load error", s)
	}
}

func TestErrorMessage(t *testing.T) {
	err := error(&Error{Call: "cuMemAlloc_v2(402653184 bytes)", Code: cudaErrorOutOfMemory,
		Name: "CUDA_ERROR_OUT_OF_MEMORY", Desc: "out of memory", Hint: "lower --batch"})
	want := "cuda: cuMemAlloc_v2(402653184 bytes): CUDA_ERROR_OUT_OF_MEMORY (out of memory): lower --batch"
	if err.Error() != want {
		t.Errorf("Error() = %q; want %q", err, want)
	}
	if !errors.Is(err, ErrOutOfMemory) {
		t.Error("out of memory does not match ErrOutOfMemory")
	}
	if errors.Is(&Error{Call: "cuInit(0)", Name: "CUDA_ERROR_NO_DEVICE"}, ErrOutOfMemory) {
		t.Error("CUDA_ERROR_NO_DEVICE matches ErrOutOfMemory")
	}
}

func TestPreferMajor(t *testing.T) {
	if got := preferMajor(libNVRTC, 12).names; !slices.Equal(got, []string{"libnvrtc.so.12", "libnvrtc.so.13"}) {
		t.Errorf("preferMajor(NVRTC, 12) = %q", got)
	}
	if got := preferMajor(libCUBLAS, 13).names; !slices.Equal(got, []string{"libcublas.so.13", "libcublas.so.12"}) {
		t.Errorf("preferMajor(cuBLAS, 13) = %q", got)
	}
	if VersionString(12040) != "12.4" || VersionString(13000) != "13.0" {
		t.Errorf("VersionString: %s, %s", VersionString(12040), VersionString(13000))
	}
}

// Every kernel the device launches is defined in the embedded sources, so
// a typo shows here rather than on the first GPU run.
func TestLaunchedKernelsExist(t *testing.T) {
	defined := map[string]bool{}
	for _, s := range kernels.Sources() {
		for _, k := range kernels.Kernels(s.Code) {
			defined[k] = true
		}
	}
	src, err := os.ReadFile("ops.go")
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("ops.go not here: a test binary run outside the repository (scripts/gpu-check.sh)")
	}
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`launch\("(\w+)"`).FindAllStringSubmatch(string(src), -1)
	if len(used) < 15 {
		t.Fatalf("found %d launches in ops.go; the pattern is out of date", len(used))
	}
	for _, m := range used {
		if !defined[m[1]] {
			t.Errorf("ops.go launches %s, which no kernels/*.cu defines", m[1])
		}
	}
}

// Every binding's Go type is one purego can register: RegisterFunc panics
// on an unsupported type, which would otherwise show only on a GPU
// machine. The functions are bound to a libc symbol and never called.
func TestBindingTypes(t *testing.T) {
	h, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		t.Skipf("no libc to bind against: %v", err)
	}
	sym, err := purego.Dlsym(h, "abs")
	if err != nil {
		t.Skip(err)
	}
	for _, lib := range []any{&driver{}, &cublas{}, &cudnn{}, &nvrtc{}} {
		v := reflect.ValueOf(lib).Elem()
		n := 0
		for i := range v.NumField() {
			f := v.Field(i)
			if f.Kind() != reflect.Func {
				continue
			}
			name := v.Type().Field(i).Name
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%T.%s: purego cannot bind %s: %v", lib, name, f.Type(), r)
					}
				}()
				purego.RegisterFunc(reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Interface(), sym)
			}()
			n++
		}
		if n == 0 {
			t.Errorf("%T has no bindings", lib)
		}
	}
}
