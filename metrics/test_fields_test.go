package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A run's test scores are kept apart from its validation; old runs, whose
// val_* scored the test set, still read, and say so.
func TestTestFields(t *testing.T) {
	dir := t.TempDir()
	lines := `{"epoch": 1, "train_top1_err": 0.5, "val_top1_err": 0.4, "val_top5_err": 0.1, "val_loss": 1.2}
{"epoch": 2, "train_top1_err": 0.3, "val_top1_err": 0.2, "val_set": "held-out", "test_top1_err": 0.25, "test_top5_err": 0.05, "test_loss": 0.7}
{"epoch": 3, "train_top1_err": 0.3, "val_top1_err": 0.2, "val_set": "val"}
{"epoch": 4, "train_top1_err": 0.3, "val_top1_err": 0.2, "val_set": "held-out", "test_top1_err": 0}
`
	os.WriteFile(filepath.Join(dir, File), []byte(lines), 0o644)
	ms, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		top1, top5, loss float64
		set              string
	}{{0.4, 0.1, 1.2, "test (as val)"}, {0.25, 0.05, 0.7, "test"}, {0.2, 0, 0, "val"}, {0, 0, 0, "test"}} {
		top1, top5, loss, set := ms[i].Reported()
		if top1 != want.top1 || top5 != want.top5 || loss != want.loss || set != want.set {
			t.Errorf("epoch %d reports %g, %g, %g on %q; want %+v", i+1, top1, top5, loss, set, want)
		}
	}
	// A test error of 0 is kept, not taken for none.
	b, err := Encode(ms)
	if err != nil || !strings.Contains(string(b), `"test_top1_err":0,`) || strings.Count(string(b), "test_top1_err") != 2 {
		t.Errorf("Encode: %v\n%s", err, b)
	}
	if i := Best(ms); i != 1 {
		t.Errorf("Best = %d, want 1 (the first of the lowest validation errors)", i)
	}
	if Best(nil) != -1 {
		t.Error("Best of no epochs is not -1")
	}
	os.WriteFile(filepath.Join(dir, File), []byte(`{"epoch": 1, "train_top1_err": 0.5, "val_top1_err": 0.4, "test_top1_err": 40}`+"\n"), 0o644)
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "test_top1_err 40 is outside [0, 1]") {
		t.Errorf("test error in percent: %v", err)
	}
}
