package bench

import "testing"

// --precision reaches the devices and the rows: bf16 rows say so, and the
// default is fp32.
func TestSpeedPrecision(t *testing.T) {
	for _, p := range []string{"", "bf16"} {
		rows, err := Speed(SpeedOptions{Nets: []string{"alexnet-small"}, Placements: []string{"cpu"}, Batch: 4, Repeats: 1, Threads: 1, Out: t.TempDir(), Precision: p})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"": "fp32", "bf16": "bf16"}[p]
		if len(rows) != 1 || rows[0].Precision != want || rows[0].ImagesPerS <= 0 {
			t.Errorf("precision %q: rows %+v, want one %s row", p, rows, want)
		}
	}
	if _, err := Speed(SpeedOptions{Nets: []string{"alexnet-small"}, Placements: []string{"cpu"}, Batch: 4, Repeats: 1, Out: t.TempDir(), Precision: "fp16"}); err == nil {
		t.Error("--precision fp16 ran")
	}
}
