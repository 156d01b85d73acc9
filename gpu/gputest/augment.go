package gputest

import (
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// augmentCases are the Augment shapes checked: RGB and grey, a patch as
// large as the image and one of a single pixel, byte counts that leave a
// partial last word (2·1·7·7 = 98, 5·3·13·13 = 2535), and one large
// enough to be split over threads.
var augmentCases = []struct {
	name string
	s    gpu.AugmentShape
}{
	{"rgb_9to5", gpu.AugmentShape{N: 3, C: 3, Size: 9, Crop: 5}},
	{"grey_whole", gpu.AugmentShape{N: 2, C: 1, Size: 7, Crop: 7}},
	{"odd_13to6", gpu.AugmentShape{N: 5, C: 3, Size: 13, Crop: 6}},
	{"pixel", gpu.AugmentShape{N: 4, C: 2, Size: 5, Crop: 1}},
	{"mid_160to147", gpu.AugmentShape{N: 4, C: 3, Size: 160, Crop: 147}},
}

// checkAugment covers Augment on random bytes, a random mean and random
// patch positions (the first image at the top-left corner, the second at
// the bottom-right), flip off and on, and random colour offsets.
func checkAugment(c *checker) {
	c.run("PackBytes", checkPackBytes)
	for _, tc := range augmentCases {
		c.run(tc.name, func(c *checker) { augmentCase(c, tc.s) })
	}
}

func augmentCase(c *checker, s gpu.AugmentShape) {
	if err := s.Validate(); err != nil {
		c.fatalf("%v", err)
	}
	src := make([]uint8, s.N*s.C*s.Size*s.Size) // (N, C, Size, Size)
	for i := range src {
		src[i] = uint8(c.rng.IntN(256))
	}
	src[0], src[len(src)-1] = 0, 255
	mean := make([]float32, s.MeanLen()) // (C, Size, Size)
	for i := range mean {
		mean[i] = float32(255 * c.rng.Float64())
	}
	r := s.Size - s.Crop
	params := make([]float32, 0, s.ParamsLen()) // (N, 3+C)
	for n := range s.N {
		x, y := c.rng.IntN(r+1), c.rng.IntN(r+1)
		switch n {
		case 0:
			x, y = 0, 0
		case 1:
			x, y = r, r
		}
		params = append(params, float32(x), float32(y), float32((n/2)%2))
		params = append(params, c.sym(s.C, 30)...)
	}

	packed := gpu.PackBytes(src)
	if len(packed) != s.SrcLen() {
		c.fatalf("PackBytes gave %d words for %d bytes, SrcLen is %d", len(packed), len(src), s.SrcLen())
	}
	db := c.out(s.DstLen()) // (N, C, Crop, Crop)
	c.must(c.dev.Augment(db, c.in(packed), c.in(mean), c.in(params), s), "Augment")
	got := c.get(db, s.DstLen())
	// The formula in float64: the two float32 roundings of the result are
	// each within half an ulp of 256, 2⁻¹⁶.
	if !c.close("dst", got, augmentRef(src, mean, params, s, false), 1e-4, 0) {
		return
	}
	// The operations in the documented order, in float32: the same bits.
	c.close("dst in float32, (pixel − mean) + offset", got, augmentRef(src, mean, params, s, true), 0, 0)
}

// augmentRef is Augment's formula:
//
//	dst[n,c,y,x] = (src[n,c,Y+y,X+x′] − mean[c,Y+y,X+x′]) + off[n,c]
//
// with x′ = Crop−1−x if Flip, else x; in float64, or, if f32, rounding
// each operation to float32.
func augmentRef(src []uint8, mean, params []float32, s gpu.AugmentShape, f32 bool) []float64 {
	round := func(v float64) float64 {
		if f32 {
			return float64(float32(v))
		}
		return v
	}
	out := make([]float64, s.DstLen())
	for n := range s.N {
		p := params[n*(3+s.C) : (n+1)*(3+s.C)]
		x0, y0, flip := int(p[0]), int(p[1]), p[2] == 1
		for ch := range s.C {
			for y := range s.Crop {
				for x := range s.Crop {
					sx := x0 + x
					if flip {
						sx = x0 + s.Crop - 1 - x
					}
					sy := y0 + y
					v := float64(src[at4(s.C, s.Size, s.Size, n, ch, sy, sx)])
					v = round(v - float64(mean[(ch*s.Size+sy)*s.Size+sx]))
					out[at4(s.C, s.Crop, s.Crop, n, ch, y, x)] = round(v + float64(p[3+ch]))
				}
			}
		}
	}
	return out
}

// checkPackBytes checks the layout of gpu.PackBytes, which every backend's
// Augment relies on, and that packed words, NaN bit patterns among them,
// survive a round trip through the device unchanged.
func checkPackBytes(c *checker) {
	b := make([]uint8, 4*256+3)
	for i := range b {
		b[i] = uint8(i * 37)
	}
	// Bit patterns that are signalling and quiet NaNs must survive.
	copy(b, []uint8{0x01, 0x00, 0x80, 0x7f, 0x01, 0x00, 0xc0, 0xff})
	w := gpu.PackBytes(b)
	if len(w) != 257 {
		c.fatalf("PackBytes(%d bytes) gave %d words, want 257", len(b), len(w))
	}
	if v := math.Float32bits(w[1]); v != 0xffc00001 {
		c.errorf("PackBytes: word 1 = %#08x, want 0xffc00001 (little-endian bytes)", v)
	}
	// Through the device and back.
	buf := c.in(w)
	back := gpu.UnpackBytes(c.get(buf, len(w)), len(b))
	for i := range b {
		if back[i] != b[i] {
			c.fatalf("byte %d: packed %#x, unpacked %#x after a round trip through the device", i, b[i], back[i])
		}
	}
}
