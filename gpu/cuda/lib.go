package cuda

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// A library is one of the native libraries the package loads at run time:
// the environment variable that overrides the search, the file names tried
// in order, and what to tell the user when none loads.
type library struct {
	what  string   // "the CUDA driver", "cuBLAS", …
	env   string   // ALEXNET_LIBCUDA, …
	names []string // sonames, preferred first
	hint  string   // what to do when it is missing
	// siblings are libraries loaded first from the folder the library is
	// found in, so that the ones it opens by name itself (cuDNN's
	// sub-libraries, cuBLAS's cublasLt, NVRTC's builtins) resolve there
	// even when that folder is not on LD_LIBRARY_PATH. Globs.
	siblings []string
}

// The libraries, and the environment variables that point at them.
var (
	libDriver = library{
		what: "the CUDA driver", env: "ALEXNET_LIBCUDA", names: []string{"libcuda.so.1"},
		hint: "install the NVIDIA driver (it provides libcuda.so.1), or point ALEXNET_LIBCUDA at libcuda.so.1",
	}
	libCUBLAS = library{
		what: "cuBLAS", env: "ALEXNET_CUBLAS", names: []string{"libcublas.so.13", "libcublas.so.12"},
		hint:     "pip install nvidia-cublas-cu12 (or nvidia-cublas for CUDA 13), install the CUDA toolkit, or point ALEXNET_CUBLAS at libcublas.so.12",
		siblings: []string{"libcublasLt.so.1[23]"},
	}
	libCUDNN = library{
		what: "cuDNN", env: "ALEXNET_CUDNN", names: []string{"libcudnn.so.9"},
		hint: "pip install nvidia-cudnn-cu12 or point ALEXNET_CUDNN at libcudnn.so.9",
		siblings: []string{"libcudnn_graph.so.9", "libcudnn_engines_precompiled.so.9", "libcudnn_engines_runtime_compiled.so.9",
			"libcudnn_heuristic.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9", "libcudnn_adv.so.9"},
	}
	libNVRTC = library{
		what: "NVRTC", env: "ALEXNET_NVRTC", names: []string{"libnvrtc.so.13", "libnvrtc.so.12"},
		hint:     "pip install nvidia-cuda-nvrtc-cu12 or point ALEXNET_NVRTC at libnvrtc.so.12 (no older than the driver's CUDA version)",
		siblings: []string{"libnvrtc-builtins.so.*"},
	}
)

// env abstracts the process environment and file system for the search, so
// that tests can run it on a fake tree.
type env struct {
	getenv func(string) string
	glob   func(string) ([]string, error)
	exists func(string) bool
	// sitePackages returns Python's site-packages folders; nil or empty
	// when there is no python3.
	sitePackages func() []string
}

// hostEnv is the real process environment.
var hostEnv = env{
	getenv: os.Getenv,
	glob:   filepath.Glob,
	exists: func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && !fi.IsDir()
	},
	sitePackages: pythonSitePackages,
}

// pythonSitePackages asks python3, if there is one, for its site-packages
// folders.
func pythonSitePackages() []string {
	py, err := exec.LookPath("python3")
	if err != nil {
		return nil
	}
	out, err := exec.Command(py, "-c", "import site,sys; print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]))").Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

// searchDirs returns the folders searched for the libraries, in order:
// LD_LIBRARY_PATH, the CUDA toolkit folders (newest first), the system
// library folders, then every Python site-packages' nvidia/*/lib (where
// the pip wheels nvidia-cudnn-cu12 etc. put them). Duplicates are dropped.
func (e env) searchDirs() []string {
	var dirs []string
	add := func(d ...string) {
		for _, x := range d {
			if x != "" && !slices.Contains(dirs, filepath.Clean(x)) {
				dirs = append(dirs, filepath.Clean(x))
			}
		}
	}
	globDesc := func(pattern string) []string {
		m, _ := e.glob(pattern)
		slices.Sort(m)
		slices.Reverse(m)
		return m
	}
	add(filepath.SplitList(e.getenv("LD_LIBRARY_PATH"))...)
	add("/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib")
	add(globDesc("/usr/local/cuda-*/lib64")...)
	add(globDesc("/usr/local/cuda-*/targets/x86_64-linux/lib")...)
	add("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu", "/usr/lib/wsl/lib",
		"/usr/local/nvidia/lib64", "/usr/local/nvidia/lib")
	var sites []string
	for _, p := range []string{
		"/usr/lib/python3*/site-packages", "/usr/lib/python3*/dist-packages", "/usr/lib/python3/dist-packages",
		"/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
	} {
		sites = append(sites, globDesc(p)...)
	}
	if home := e.getenv("HOME"); home != "" {
		sites = append(sites, globDesc(filepath.Join(home, ".local/lib/python3*/site-packages"))...)
	}
	if v := e.getenv("VIRTUAL_ENV"); v != "" {
		sites = append(sites, globDesc(filepath.Join(v, "lib/python3*/site-packages"))...)
	}
	if e.sitePackages != nil {
		sites = append(sites, e.sitePackages()...)
	}
	for _, s := range sites {
		add(globDesc(filepath.Join(s, "nvidia/*/lib"))...)
		add(globDesc(filepath.Join(s, "nvidia/cu1[23]/lib"))...)
	}
	return dirs
}

// candidates returns the paths to try for lib, in order: the override
// alone when its variable is set; else each name in each search folder
// where the file exists, then each bare name, for the dynamic loader's own
// search (ld.so.cache).
func (e env) candidates(lib library) []string {
	if p := e.getenv(lib.env); p != "" {
		return []string{p}
	}
	var out []string
	dirs := e.searchDirs()
	for _, name := range lib.names {
		for _, d := range dirs {
			if p := filepath.Join(d, name); e.exists(p) {
				out = append(out, p)
			}
		}
	}
	return append(out, lib.names...)
}

// LoadError says a library could not be loaded: which, every path tried
// with the loader's message, and what to do.
type LoadError struct {
	What  string   // "cuDNN"
	Tried []string // "path: dlopen message"
	Hint  string
}

// ErrNoDriver matches (errors.Is) the LoadError for the CUDA driver: the
// machine has no NVIDIA driver, or none this process can load.
var ErrNoDriver = errors.New("cuda: no CUDA driver found")

func (e *LoadError) Error() string {
	return fmt.Sprintf("cuda: cannot load %s (tried %s): %s", e.What, strings.Join(e.Tried, "; "), e.Hint)
}

// Is makes errors.Is(err, ErrNoDriver) true for the driver's LoadError.
func (e *LoadError) Is(target error) bool { return target == ErrNoDriver && e.What == libDriver.what }

// open loads the first candidate of lib that dlopen accepts and returns
// its handle and path.
func (e env) open(lib library) (uintptr, string, error) {
	le := &LoadError{What: lib.what, Hint: lib.hint}
	for _, p := range e.candidates(lib) {
		if strings.Contains(p, "/") {
			for _, sib := range lib.siblings {
				m, _ := e.glob(filepath.Join(filepath.Dir(p), sib))
				for _, s := range m {
					// Best effort: a sibling that fails to load will
					// fail again, with its message, when the library
					// needs it.
					_, _ = purego.Dlopen(s, purego.RTLD_NOW|purego.RTLD_GLOBAL)
				}
			}
		}
		h, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			return h, p, nil
		}
		le.Tried = append(le.Tried, p+": "+err.Error())
	}
	if v := e.getenv(lib.env); v != "" {
		le.Hint = lib.env + "=" + v + " is not loadable; " + lib.hint
	}
	return 0, "", le
}

// binder binds a library's symbols into Go function variables; the first
// missing symbol is kept as its error.
type binder struct {
	lib    string
	handle uintptr
	err    error
}

// bind registers the C function name into fptr, a pointer to a function
// variable. A missing symbol is recorded, not a panic.
func (b *binder) bind(fptr any, name string) {
	if b.err != nil {
		return
	}
	sym, err := purego.Dlsym(b.handle, name)
	if err != nil {
		b.err = fmt.Errorf("cuda: %s has no symbol %s (too old a version?): %v", b.lib, name, err)
		return
	}
	purego.RegisterFunc(fptr, sym)
}

// optional binds name if the library has it and reports whether it did.
func (b *binder) optional(fptr any, name string) bool {
	sym, err := purego.Dlsym(b.handle, name)
	if err != nil {
		return false
	}
	purego.RegisterFunc(fptr, sym)
	return true
}

// cString returns s as a NUL-terminated byte slice; pass &v[0].
func cString(s string) []byte { return append([]byte(s), 0) }

// goString copies the NUL-terminated C string at p.
func goString(p uintptr) string {
	if p == 0 {
		return ""
	}
	var b []byte
	for i := uintptr(0); ; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(nil), p+i)) //nolint:govet // C memory, not Go's
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}
