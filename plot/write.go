package plot

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
)

// CheckOut reports whether path may be written as a PNG: it must end in .png
// (so a run's metrics.jsonl, config.json or weights .safetensors can never be
// overwritten by a slip of the arguments) and must not be a directory.
func CheckOut(path string) error {
	ext := strings.ToLower(filepath.Ext(path))
	switch ext {
	case ".jsonl", ".json", ".safetensors":
		return fmt.Errorf("plot: %s is a run's input (%s), not an image: refusing to overwrite it", path, ext)
	case ".png":
	default:
		return fmt.Errorf("plot: %s: the output is a PNG; give it a .png name", path)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("plot: %s is a directory", path)
	}
	return nil
}

// WritePNG encodes img as PNG to path, atomically: a temporary file in the
// same directory renamed over path, so a reader never sees half an image and
// a failed write leaves any old file in place.
func WritePNG(path string, img image.Image) error {
	if err := CheckOut(path); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("plot: write %s: %v", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("plot: write %s: %v", path, err)
	}
	if err := png.Encode(f, img); err != nil {
		return fail(err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("plot: write %s: %v", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("plot: write %s: %v", path, err)
	}
	return nil
}
