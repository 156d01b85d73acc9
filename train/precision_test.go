package train

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --precision: fp32, tf32 and bf16 run, anything else is refused in one
// line, --tf32 is an alias of tf32 (also in a config.json from before
// --precision) and goes with no other precision, and a resume compares the
// precision, whichever way it was spelt.
func TestPrecision(t *testing.T) {
	base := Defaults()
	base.Out = "-"
	for _, tc := range []struct {
		precision string
		tf32      bool
		want      string // in the error; "" for none
		uses      bool
	}{
		{"fp32", false, "", false},
		{"tf32", false, "", true},
		{"", true, "", true}, // an old config.json
		{"", false, "", false},
		{"tf32", true, "", true},
		{"bf16", false, "", false},
		{"bf16", true, "--tf32 with --precision bf16", false},
		{"fp16", false, `--precision "fp16": use fp32, tf32 or bf16`, false},
		{"fp32", true, "--tf32 with --precision fp32", false},
	} {
		c := base
		c.Precision, c.TF32 = tc.precision, tc.tf32
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("precision %q, tf32 %v: %v", tc.precision, tc.tf32, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n")):
			t.Errorf("precision %q, tf32 %v: error %v, want one line with %q", tc.precision, tc.tf32, err, tc.want)
		case tc.want == "" && c.UsesTF32() != tc.uses:
			t.Errorf("precision %q, tf32 %v: UsesTF32 %v", tc.precision, tc.tf32, c.UsesTF32())
		}
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, configFile), []byte(`{"net":"alexnet-small","tf32":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	old, err := ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := old
	now.TF32, now.Precision = false, "tf32"
	if err := old.Mismatch(now); err != nil {
		t.Errorf("an old --tf32 run against --precision tf32: %v", err)
	}
	now.Precision = "fp32"
	if err := old.Mismatch(now); err == nil || !strings.Contains(err.Error(), "--precision tf32, not fp32") {
		t.Errorf("an old --tf32 run against --precision fp32: %v", err)
	}

	// A bf16 run resumes in bf16 only, and a float32 run (an old
	// config.json without the field) not in bf16.
	now.Precision = "bf16"
	if err := old.Mismatch(now); err == nil || !strings.Contains(err.Error(), "--precision tf32, not bf16") {
		t.Errorf("an old --tf32 run against --precision bf16: %v", err)
	}
	bf := base
	bf.Precision = "bf16"
	for _, other := range []string{"fp32", "", "tf32"} {
		o := base
		o.Precision = other
		if err := bf.Mismatch(o); err == nil || !strings.Contains(err.Error(), "--precision bf16") {
			t.Errorf("a bf16 run resumed with precision %q: %v", other, err)
		}
		if err := o.Mismatch(bf); err == nil || !strings.Contains(err.Error(), "bf16") {
			t.Errorf("a %q run resumed in bf16: %v", other, err)
		}
	}
	if err := bf.Mismatch(bf); err != nil {
		t.Errorf("a bf16 run against itself: %v", err)
	}
}
