package kernels

import (
	"os"
	"strings"
	"testing"
)

// The package doc names every source file and every kernel, so that it
// stays true when a kernel is added.
func TestDocNamesEveryKernel(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Skip("doc.go not here: a test binary run outside the repository")
	}
	text := strings.Join(strings.Fields(string(doc)), " ")
	n := 0
	for _, s := range Sources() {
		if !strings.Contains(text, s.Name) {
			t.Errorf("doc.go does not name %s", s.Name)
		}
		for _, k := range Kernels(s.Code) {
			n++
			if !strings.Contains(text, k) && !strings.Contains(s.Name, strings.Split(k, "_")[0]) {
				t.Errorf("doc.go does not name %s's kernel %s", s.Name, k)
			}
		}
	}
	if !strings.Contains(text, "Thirteen files, twenty-five kernels") || len(Sources()) != 13 || n != 25 {
		t.Errorf("%d files, %d kernels: update the count in doc.go", len(Sources()), n)
	}
}
