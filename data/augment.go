package data

import "fmt"

// Augment says how a set's images become the network's Size×Size inputs, and
// how training images are augmented (§4.1).
//
// Along each axis an image of extent n is conceptually zero-padded, centred,
// to E = max(n, Size) + 2·Pad, and a Size-wide window is taken at an offset
// in [0, E−Size]. For images no larger than the canvas (28 in 32) that is
// [0, 2·Pad]: random translations of up to ±Pad pixels; for larger images it
// is a crop of the image padded by Pad. Evaluation takes the centre window,
// offset (E−Size)/2 (Pad for small images), unreflected.
type Augment struct {
	// Size is the side of the square output; 0 means max(H, W) of the set.
	Size int
	// Pad is the zero padding around the image from which windows are cut.
	Pad int
	// Flip reflects the window horizontally with probability 1/2.
	Flip bool
	// Crop takes a uniformly random window instead of the centre one.
	Crop bool
}

// Placement is where one image's output window lies in its padded image.
type Placement struct {
	// X, Y are the window's offset in the padded image, in [0, E−Size].
	X, Y int
	// Flip reflects the window horizontally.
	Flip bool
}

// size returns the canvas side for h×w images.
func (a Augment) size(h, w int) int {
	if a.Pad < 0 {
		panic(fmt.Sprintf("data: Augment.Pad = %d < 0", a.Pad))
	}
	if a.Size > 0 {
		return a.Size
	}
	return max(h, w)
}

// axis returns, for an image extent n, the range of window offsets [0, r]
// and the image's origin in the padded image.
func (a Augment) axis(n, size int) (r, origin int) {
	e := max(n, size) + 2*a.Pad
	return e - size, (e - n) / 2
}

// Centre returns the evaluation placement for h×w images: the centre window,
// unreflected.
func (a Augment) Centre(h, w int) Placement {
	s := a.size(h, w)
	ry, _ := a.axis(h, s)
	rx, _ := a.axis(w, s)
	return Placement{X: rx / 2, Y: ry / 2}
}

// Draw returns the placement of image i (an h×w image) in the given epoch: a
// uniformly random offset if Crop, else the centre; reflected with
// probability 1/2 if Flip. It is a pure function of (seed, epoch, i), so no
// RNG state is shared between loader workers.
func (a Augment) Draw(h, w int, seed uint64, epoch, i int) Placement {
	p := a.Centre(h, w)
	if !a.Crop && !a.Flip {
		return p
	}
	s := a.size(h, w)
	ry, _ := a.axis(h, s)
	rx, _ := a.axis(w, s)
	k := splitmix64(splitmix64(splitmix64(seed)^uint64(epoch)) ^ uint64(i))
	if a.Crop {
		k2 := splitmix64(k)
		// Multiply-shift maps 32 random bits onto [0, r] without division.
		p.X = int((k & 0xffffffff) * uint64(rx+1) >> 32)
		p.Y = int((k2 & 0xffffffff) * uint64(ry+1) >> 32)
	}
	if a.Flip {
		p.Flip = k>>63 == 1
	}
	return p
}

// splitmix64 is the finaliser of Steele et al.'s SplitMix64 generator: a
// bijective mix of a 64-bit counter into 64 well-distributed bits.
func splitmix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Render writes image i of s, placed at p, into dst, (C, Size, Size):
//
//	dst[c][y][x] = pixel − mean[c][y][x]
//
// where pixel is the padded image's raw value under the window, 0..255 (0
// outside the image), unscaled, as the paper does (§2: subtract the mean
// image, nothing else), and, when p.Flip, the window is mirrored
// (x ↦ Size−1−x) before the mean, which is indexed by output position, is
// subtracted. mean is in the same raw units (see MeanImage), (C, Size, Size),
// or nil for none. The conversion float32(pixel) is exact, so without a mean
// dst holds the pixel values exactly.
func (a Augment) Render(dst []float32, s *Set, i int, p Placement, mean []float32) {
	size := a.size(s.H, s.W)
	n := s.C * size * size
	if len(dst) != n || (mean != nil && len(mean) != n) {
		panic(fmt.Sprintf("data: Render: len(dst) = %d, len(mean) = %d, want C·Size·Size = %d", len(dst), len(mean), n))
	}
	_, oy := a.axis(s.H, size)
	_, ox := a.axis(s.W, size)
	// Output column x reads source column x + dx; it lies in the image for x
	// in [x0, x1).
	dx := p.X - ox
	x0, x1 := max(0, -dx), min(size, s.W-dx)
	img := s.Image(i)
	for c := range s.C {
		for y := range size {
			o := (c*size + y) * size
			row := dst[o : o+size]
			var mrow []float32
			if mean != nil {
				mrow = mean[o : o+size]
			}
			sy := y + p.Y - oy
			if sy < 0 || sy >= s.H || x0 >= x1 {
				clear(row)
				subtract(row, mrow)
				continue
			}
			src := img[(c*s.H+sy)*s.W : (c*s.H+sy+1)*s.W]
			if p.Flip {
				for x := range size {
					var v float32
					if x >= x0 && x < x1 {
						v = float32(src[x+dx])
					}
					row[size-1-x] = v
				}
			} else {
				clear(row[:x0])
				for x := x0; x < x1; x++ {
					row[x] = float32(src[x+dx])
				}
				clear(row[x1:])
			}
			subtract(row, mrow)
		}
	}
}

func subtract(row, mean []float32) {
	if mean == nil {
		return
	}
	mean = mean[:len(row)]
	for x := range row {
		row[x] -= mean[x]
	}
}

// MeanImage returns the mean over s of its images placed centred on a
// size×size canvas (the evaluation placement, with zeros around images
// smaller than the canvas), per pixel and per channel, in raw pixel units
// (0..255), as a (C, size, size) image:
//
//	mean[c][y][x] = (1/N) Σ_i pixel_i[c][y][x]
//
// computed in float64 and rounded once to float32. The paper (§2) subtracts
// the training set's mean image and nothing else; the loader subtracts this
// from every image it renders (see Render), leaving inputs of magnitude up to
// 255. There is deliberately no division by 255: the weight initialisation of
// §5, N(0, 0.01²), was designed for inputs of that magnitude, and on [0, 1]
// inputs the signal vanishes through the eight layers and the net does not
// learn. size 0 means max(H, W). An empty set has a zero mean.
func MeanImage(s *Set, size int) []float32 {
	a := Augment{Size: size}
	size = a.size(s.H, s.W)
	out := make([]float32, s.C*size*size)
	if s.N == 0 {
		return out
	}
	// Sum per source pixel, then place the sums: the same centre mapping
	// as Render.
	per := s.C * s.H * s.W
	sum := make([]uint64, per)
	for i := range s.N {
		for k, v := range s.Pixels[i*per : (i+1)*per] {
			sum[k] += uint64(v)
		}
	}
	p := a.Centre(s.H, s.W)
	_, oy := a.axis(s.H, size)
	_, ox := a.axis(s.W, size)
	d := float64(s.N)
	for c := range s.C {
		for y := range size {
			sy := y + p.Y - oy
			if sy < 0 || sy >= s.H {
				continue
			}
			for x := range size {
				sx := x + p.X - ox
				if sx < 0 || sx >= s.W {
					continue
				}
				out[(c*size+y)*size+x] = float32(float64(sum[(c*s.H+sy)*s.W+sx]) / d)
			}
		}
	}
	return out
}
