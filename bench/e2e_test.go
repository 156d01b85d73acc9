package bench

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cifarDir writes CIFAR-10's six binary batches of n random images each.
func cifarDir(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"} {
		rec := make([]byte, n*3073)
		for i := range rec {
			rec[i] = byte(rng.IntN(256))
		}
		for i := range n {
			rec[i*3073] = byte(i % 10)
		}
		if err := os.WriteFile(filepath.Join(dir, name), rec, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// With --data, every synthetic row has an end-to-end twin that trains
// through the loader, renders on the devices, and reports its wait for
// data.
func TestSpeedEndToEnd(t *testing.T) {
	rows, err := Speed(SpeedOptions{Nets: []string{"alexnet-small"}, Placements: []string{"cpu", "cpu,cpu", "0"}, Batch: 8, Repeats: 3, Threads: 1,
		Data: cifarDir(t, 4), Workers: 2, Out: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 6 {
		t.Fatalf("%d rows, want a synthetic and an end-to-end row for each of 3 placements", len(rows))
	}
	for i, r := range rows {
		wantMode := []string{"synthetic", "end-to-end"}[i%2]
		if r.Mode != wantMode || r.Precision != "fp32" {
			t.Errorf("row %d: mode %q precision %q, want %q fp32", i, r.Mode, r.Precision, wantMode)
		}
		if r.Placement == "0" {
			if r.Skipped == "" {
				t.Errorf("row %d on GPU 0 without a driver: %+v", i, r)
			}
			continue
		}
		if r.ImagesPerS <= 0 || len(r.StepsMs) != 3 || r.DataWaitMs < 0 {
			t.Errorf("row %d: %+v", i, r)
		}
		if r.Mode == "end-to-end" && (r.Augment != "device" || len(r.MemoryBytes) == 0) {
			t.Errorf("row %d: augment %q, memory %v: want the batches rendered on the devices", i, r.Augment, r.MemoryBytes)
		}
	}
	if two := rows[3]; two.MovedBytes == 0 || len(two.Devices) != 2 {
		t.Errorf("end to end on cpu,cpu: %+v", two)
	}
	if md := SpeedMarkdown(rows); !strings.Contains(md, "waited for data") || !strings.Contains(md, "end-to-end, augment on device") {
		t.Errorf("markdown:\n%s", md)
	}
}
