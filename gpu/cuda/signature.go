package cuda

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/alexnet-go/trainer/kernels"
)

// paramKind is the type of a kernel parameter as launch passes it.
type paramKind byte

const (
	paramInt     paramKind = 'i' // int: a Go int, passed as int32
	paramFloat   paramKind = 'f' // float: a Go float32
	paramUint64  paramKind = 'u' // unsigned long long: a Go uint64
	paramPointer paramKind = 'p' // T*: a *Buffer
)

var kernelDecl = regexp.MustCompile(`extern "C" __global__ void (\w+)\(([^)]*)\)`)

// parseSignatures returns each extern "C" kernel's parameter kinds.
func parseSignatures(code string) (map[string][]paramKind, error) {
	out := map[string][]paramKind{}
	for _, m := range kernelDecl.FindAllStringSubmatch(code, -1) {
		var kinds []paramKind
		for _, p := range strings.Split(m[2], ",") {
			p = strings.Join(strings.Fields(p), " ")
			switch {
			case strings.Contains(p, "*"):
				kinds = append(kinds, paramPointer)
			case strings.HasPrefix(p, "unsigned long long "):
				kinds = append(kinds, paramUint64)
			case strings.HasPrefix(p, "int "):
				kinds = append(kinds, paramInt)
			case strings.HasPrefix(p, "float "):
				kinds = append(kinds, paramFloat)
			default:
				return nil, fmt.Errorf("cuda: kernel %s: parameter %q of a type launch cannot pass", m[1], p)
			}
		}
		out[m[1]] = kinds
	}
	return out, nil
}

var (
	sigOnce sync.Once
	sigs    map[string][]paramKind
)

// signatures returns the parameter kinds of every kernel of package
// kernels. A source launch cannot pass is a programmer's mistake.
func signatures() map[string][]paramKind {
	sigOnce.Do(func() {
		sigs = map[string][]paramKind{}
		for _, s := range kernels.Sources() {
			m, err := parseSignatures(s.Code)
			if err != nil {
				panic(err)
			}
			for k, v := range m {
				sigs[k] = v
			}
		}
	})
	return sigs
}

// checkArgs panics unless args match kernel name's parameters in number
// and kind: a mismatch would pass garbage to the GPU.
func checkArgs(name string, args []any) {
	want, ok := signatures()[name]
	if !ok {
		panic("cuda: no kernel " + name)
	}
	if len(want) != len(args) {
		panic(fmt.Sprintf("cuda: kernel %s takes %d parameters, launched with %d", name, len(want), len(args)))
	}
	for i, a := range args {
		var k paramKind
		switch a.(type) {
		case int:
			k = paramInt
		case float32:
			k = paramFloat
		case uint64:
			k = paramUint64
		case *Buffer:
			k = paramPointer
		}
		if k != want[i] {
			panic(fmt.Sprintf("cuda: kernel %s: parameter %d is %c, launched with a %T", name, i, want[i], a))
		}
	}
}
