package kernels

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSourcesEmbedded checks that every .cu file of the folder is embedded,
// opens with a comment block stating its math and layout, and defines at
// least one extern "C" kernel, with no kernel name defined twice.
func TestSourcesEmbedded(t *testing.T) {
	files, err := filepath.Glob("*.cu")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skip("no .cu files here: a test binary run outside the repository")
	}
	var embedded []string
	for _, s := range Sources() {
		embedded = append(embedded, s.Name)
	}
	for _, f := range files {
		if !slices.Contains(embedded, f) {
			t.Errorf("%s is not embedded", f)
		}
	}
	if len(files) != len(embedded) {
		t.Errorf("%d .cu files, %d embedded", len(files), len(embedded))
	}
	seen := map[string]string{}
	for _, s := range Sources() {
		disk, err := os.ReadFile(s.Name)
		if err != nil || string(disk) != s.Code {
			t.Errorf("%s: embedded copy differs from the file (%v)", s.Name, err)
		}
		var head []string
		for _, line := range strings.Split(s.Code, "\n") {
			if !strings.HasPrefix(line, "//") {
				break
			}
			head = append(head, line)
		}
		text := strings.ToLower(strings.Join(head, "\n"))
		if len(head) < 5 {
			t.Errorf("%s: opens with %d comment lines; want a block stating the math and the layout", s.Name, len(head))
		}
		for _, want := range []string{"the paper, §", "layout", "="} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: opening comment does not mention %q", s.Name, want)
			}
		}
		ks := Kernels(s.Code)
		if len(ks) == 0 {
			t.Errorf("%s: no extern \"C\" __global__ kernel", s.Name)
		}
		for _, k := range ks {
			if f, dup := seen[k]; dup {
				t.Errorf("kernel %s defined in %s and %s", k, f, s.Name)
			}
			seen[k] = s.Name
		}
		if strings.Contains(s.Code, "#include") {
			t.Errorf("%s: #include; NVRTC compiles these without host headers", s.Name)
		}
	}
}
