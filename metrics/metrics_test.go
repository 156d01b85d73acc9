package metrics

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadWrite(t *testing.T) {
	dir := t.TempDir()
	in := []Epoch{{Epoch: 1, LR: 0.01, TrainTop1Err: 0.5, ValTop1Err: 0.4, ValTop5Err: 0.1}, {Epoch: 2, LR: 0.001, TrainTop1Err: 0.3, ValTop1Err: 0.25, LoaderPerS: 3000}}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, File), append(b, '\n'), 0o644) // a blank line is skipped
	out, err := Read(dir)
	if err != nil || len(out) != 2 || out[1] != in[1] {
		t.Errorf("Read = %+v, %v; want %+v", out, err, in)
	}
	if _, err := Read(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no metrics.jsonl: %v, want fs.ErrNotExist", err)
	}
	for _, tc := range []struct{ line, want string }{
		{`{"epoch": 1, "train_top1_err": 0.5}`, "no val_top1_err"},
		{`{"epoch": 1, "train_top1_err": 50, "val_top1_err": 0.4}`, "train_top1_err 50 is outside [0, 1]"},
		{`not json`, "malformed line 2"},
	} {
		os.WriteFile(filepath.Join(dir, File), append(append([]byte(nil), b[:strings.IndexByte(string(b), '\n')+1]...), tc.line+"\n"...), 0o644)
		if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%s: %v, want an error naming line 2 and saying %q", tc.line, err, tc.want)
		}
	}
}
