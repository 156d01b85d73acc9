package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An unknown --precision is refused in one line before anything runs, and
// --tf32 (the alias of --precision tf32) cannot be given with another
// precision.
func TestPrecisionFlag(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.Mkdir(good, 0o755)
	writeIDX(t, good, 20)
	for i, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--precision", "int8"}, `--precision "int8": use fp32, tf32 or bf16`},
		{[]string{"--tf32", "--precision", "bf16"}, "--tf32 with --precision bf16"},
		{[]string{"--tf32", "--precision", "fp32"}, "--tf32 with --precision fp32"},
	} {
		out := filepath.Join(dir, "runs", string(rune('a'+i)))
		args := append([]string{"train", "--data", good, "--out", out}, tc.args...)
		_, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("trainer %s: error %v, want one line with %q", strings.Join(args, " "), err, tc.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("trainer %s made its run directory", strings.Join(args, " "))
		}
	}
}
