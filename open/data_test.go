package open

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/alexnet-go/trainer/data"
)

// preparedFolder prepares a source of classes × perClass small images,
// stored (as prepare stores them) in class order.
func preparedFolder(t *testing.T, classes, perClass int) string {
	t.Helper()
	src, out := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "prep")
	for _, split := range []string{"train", "val"} {
		for c := range classes {
			d := filepath.Join(src, split, fmt.Sprintf("n%02d", c))
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range perClass {
				img := image.NewRGBA(image.Rect(0, 0, 40, 40))
				for p := range img.Pix {
					img.Pix[p] = uint8(40*c + 3*i + p%7)
				}
				img.Set(0, 0, color.RGBA{255, 0, 0, 255})
				f, err := os.Create(filepath.Join(d, fmt.Sprintf("%d.png", i)))
				if err != nil {
					t.Fatal(err)
				}
				png.Encode(f, img)
				f.Close()
			}
		}
	}
	if _, err := data.Prepare(context.Background(), data.PrepareOptions{Src: src, Out: out, Size: 36}); err != nil {
		t.Fatal(err)
	}
	return out
}

// --limit on prepared data, which is stored in class order, takes images
// of every class (the first N were all of class 0: a run learned one
// class).
func TestLimitPreparedCoversClasses(t *testing.T) {
	dir := preparedFolder(t, 4, 5)
	ds, err := Data(DataOptions{Dir: dir, Net: "alexnet-small", Batch: 4, Seed: 1, Limit: 4, ValLimit: 4, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	for name, l := range map[string]data.Batcher{"training": ds.Train, "validation": ds.Val} {
		seen := map[float32]bool{}
		for b, err := range l.EpochFrom(context.Background(), 1, 0) {
			if err != nil {
				t.Fatal(err)
			}
			for _, y := range b.Labels[:b.N] {
				seen[y] = true
			}
			l.Recycle(b)
		}
		if len(seen) != 4 {
			t.Errorf("--limit 4 of a prepared set of 4 classes: the %s images hold classes %v", name, seen)
		}
	}
}
