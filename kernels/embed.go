package kernels

import (
	"embed"
	"io/fs"
	"slices"
	"strings"
)

//go:embed *.cu
var sources embed.FS

// Source is one CUDA C file of this package, compiled at run time by NVRTC.
type Source struct {
	Name string // the file name, e.g. "lrn.cu"
	Code string
}

// Sources returns the embedded CUDA C sources, sorted by name. Each holds
// extern "C" __global__ kernels that package gpu/cuda launches by name.
func Sources() []Source {
	names, err := fs.Glob(sources, "*.cu")
	if err != nil {
		panic(err) // the pattern is constant
	}
	slices.Sort(names)
	out := make([]Source, 0, len(names))
	for _, n := range names {
		b, err := sources.ReadFile(n)
		if err != nil {
			panic(err) // embedded, so it is there
		}
		out = append(out, Source{Name: n, Code: string(b)})
	}
	return out
}

// Kernels returns the names of the extern "C" __global__ functions in code.
func Kernels(code string) []string {
	var out []string
	for _, line := range strings.Split(code, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), `extern "C" __global__ void `)
		if !ok {
			continue
		}
		if i := strings.IndexByte(rest, '('); i > 0 {
			out = append(out, strings.TrimSpace(rest[:i]))
		}
	}
	return out
}

// Code returns the code of the embedded file name ("lrn.cu"), or "" if
// there is none.
func Code(name string) string {
	b, err := sources.ReadFile(name)
	if err != nil {
		return ""
	}
	return string(b)
}
