package train

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --precision: fp32 and tf32 run, bf16 is refused in one line, --tf32 is
// an alias of tf32 (also in a config.json from before --precision), and a
// resume compares the precision, whichever way it was spelt.
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
		{"bf16", false, "--precision bf16: not built yet", false},
		{"fp16", false, `--precision "fp16"`, false},
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
}
