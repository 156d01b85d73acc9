package bf16

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
)

// Every method of gpu.Ops is declared by *Device itself, where its doc says
// what it rounds, and not promoted unrounded from the embedded device: a
// method added to gpu.Ops fails here until it is decided in bf16.go (and
// checked in gputest's bf16Suite, which fails too).
func TestEveryOpDecided(t *testing.T) {
	ops := reflect.TypeFor[gpu.Ops]()
	dt := reflect.TypeFor[*Device]()
	for i := range ops.NumMethod() {
		name := ops.Method(i).Name
		m, ok := dt.MethodByName(name)
		if !ok {
			t.Fatalf("*Device has no %s", name)
		}
		pc := m.Func.Pointer()
		file, _ := runtime.FuncForPC(pc).FileLine(pc)
		if !strings.HasSuffix(file, "bf16.go") {
			t.Errorf("gpu.Ops.%s is promoted from the wrapped device (%s), not decided: add a method to gpu/bf16/bf16.go saying what it rounds", name, file)
		}
	}
}

// The optional interfaces of package gpu: each interface type declared in
// gpu/device.go besides Device, Ops, Buffer, Event and Mark must be one
// Wrap forwards (the list optional), so that a new one is decided here.
func TestOptionalInterfacesListed(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../device.go", nil, 0)
	if err != nil {
		t.Skipf("gpu/device.go not here: %v", err)
	}
	var names []string
	for _, o := range optional {
		names = append(names, o.name)
	}
	seen := 0
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok {
			return true
		}
		if _, isIface := ts.Type.(*ast.InterfaceType); !isIface {
			return false
		}
		switch ts.Name.Name {
		case "Device", "Ops", "Buffer", "Event", "Mark":
			return false
		}
		seen++
		if !slices.Contains(names, "gpu."+ts.Name.Name) {
			t.Errorf("gpu.%s is an optional interface package bf16 does not forward: add it to optional and to gpuDevice in bf16.go", ts.Name.Name)
		}
		return false
	})
	if seen != len(optional) {
		t.Errorf("gpu/device.go declares %d optional interfaces, bf16 lists %d", seen, len(optional))
	}
}
