package data

import (
	"crypto/sha256"
	"encoding/hex"
	"image"
	"math/rand/v2"
	"testing"
)

// goldenImages returns synthetic images of every type the resampler reads
// specially, and some it reads through At, at sizes that shrink, enlarge
// and keep, bounds not at the origin.
func goldenImages() []image.Image {
	rng := rand.New(rand.NewPCG(31, 32))
	var imgs []image.Image
	for _, d := range [][2]int{{40, 30}, {30, 40}, {64, 64}, {500, 375}, {17, 300}, {3, 3}, {1, 1}, {100, 99}} {
		for _, kind := range []string{"gray", "gray16", "rgba", "nrgba", "ycbcr", "cmyk", "paletted"} {
			imgs = append(imgs, randImage(rng, kind, image.Rect(2, 1, 2+d[0], 1+d[1])))
		}
	}
	return imgs
}

// What Prepare writes must not change: a rerun over a data set prepared
// by an earlier version resumes it, keeping its shards, and the new ones
// must hold the same bytes as the old. These are the SHA-256 of the
// resampler's outputs over goldenImages: prepImage's as Prepare wrote them
// before the resampler was shared with FromImage, and FromImage's since.
// A change to the resampler's arithmetic fails here; it must not be made
// without a new format version. The values are the same on every build:
// the resampler rounds each product on its own (see resample.go), so they
// hold where Go fuses multiply-adds too (checked with GOAMD64=v3).
func TestResampleGolden(t *testing.T) {
	const (
		wantPrep = "e94d3ac67d1f617af7579403b4611f5ba4cfde1cc2ff6d6eea72d8718f2917e8"
		wantFrom = "b5a6bb21f9db8024ea154611ae5441915678525c48bf3ee856e8d0c9a8c3891a"
	)
	prep, from := sha256.New(), sha256.New()
	var sc resampleScratch
	for _, img := range goldenImages() {
		for _, size := range []int{8, 32, 227, 256} {
			dst := make([]uint8, 3*size*size)
			if err := prepImage(img, size, dst, &sc); err != nil {
				t.Fatal(err)
			}
			prep.Write(dst)
			for _, c := range []int{1, 3} {
				from.Write(FromImage(img, c, size, size+3))
			}
		}
	}
	if got := hex.EncodeToString(prep.Sum(nil)); got != wantPrep {
		t.Errorf("prepImage's outputs hash to %s, want %s: Prepare would write other bytes than before", got, wantPrep)
	}
	if got := hex.EncodeToString(from.Sum(nil)); got != wantFrom {
		t.Errorf("FromImage's outputs hash to %s, want %s", got, wantFrom)
	}
}
