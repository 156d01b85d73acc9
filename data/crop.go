package data

import (
	"fmt"
	"math"
)

// CropSource is a data set of N square images, C×Size×Size bytes each,
// read on demand, that a CropLoader cuts patches from: the prepared
// ImageNet-scale sets (their *Shards) or any in-memory stand-in. Read and
// Label must be safe for concurrent use: the loader's workers call them at
// once. (Source is the set of image files that Prepare reads.)
type CropSource interface {
	// N is the number of images.
	N() int
	// Label returns image i's class index.
	Label(i int) int
	// Read copies image i, (C, Size, Size) bytes, into dst, which holds
	// exactly C·Size·Size values.
	Read(i int, dst []uint8) error
	// C is the number of channels, 3 for RGB.
	C() int
	// Size is the side of the square images, 256 in the paper.
	Size() int
}

// CropAugment is the paper's augmentation of Size×Size images (§2, §4.1):
// Crop×Crop patches (227 of 256) at random positions or in the centre,
// horizontal reflections, and PCA colour noise.
type CropAugment struct {
	// Crop is the side of the patches, 227 (the paper prints 224, but only
	// 227 gives its 55×55 maps with 11×11 stride-4 filters).
	Crop int
	// Flip reflects the patch horizontally with probability 1/2.
	Flip bool
	// Random takes the patch at a uniformly random position instead of
	// the centre.
	Random bool
	// PCAStd is σ, the standard deviation of the α_i of the colour noise,
	// 0.1 in the paper; 0 turns the noise off.
	PCAStd float64
	// EigVal and EigVec are λ_i and p_i, the eigenvalues and unit
	// eigenvectors of the 3×3 covariance of the training set's RGB pixel
	// values; EigVec[i] is p_i. The noise Σ α_i λ_i p_i is added to raw
	// pixel values (0..255), so λ_i must be on the scale that makes it the
	// intended size: with α ~ N(0, 0.1), eigenvalues of the covariance of
	// pixel values scaled to [0, 1], times 255, give offsets of a few
	// pixel levels, as the paper intends; eigenvalues of the covariance of
	// raw 0..255 values would give hundreds or more.
	EigVal [3]float64
	EigVec [3][3]float64
}

// CropParams place and colour one patch: what RenderCrop needs besides the
// pixels and the mean.
type CropParams struct {
	// X, Y are the patch's top-left corner in the source image, in
	// [0, Size−Crop].
	X, Y int
	// Flip reflects the patch horizontally.
	Flip bool
	// Offset is added to every pixel of channel c: the colour noise
	// Σ_i α_i λ_i p_i[c], with α_i ~ N(0, PCAStd) drawn once per image per
	// presentation. Zero without noise.
	Offset [3]float32
}

// Centre returns the evaluation patch of a size×size image: the centre
// patch, at ((size−Crop)/2, (size−Crop)/2) rounded down, unreflected,
// without colour noise.
func (a CropAugment) Centre(size int) CropParams {
	r := a.span(size)
	return CropParams{X: r / 2, Y: r / 2}
}

// span returns size−Crop, the largest patch offset, panicking if the patch
// does not fit.
func (a CropAugment) span(size int) int {
	if a.Crop < 1 || a.Crop > size {
		panic(fmt.Sprintf("data: crop %d of a %d×%d image", a.Crop, size, size))
	}
	return size - a.Crop
}

// Draw returns the patch of image i (a size×size image) in the given
// epoch. It is a pure function of (seed, epoch, i): no generator state is
// shared between loader workers, and a resumed run draws the same patches.
//
// The image's key k = splitmix64(splitmix64(splitmix64(seed) ⊕ epoch) ⊕ i)
// (as Augment.Draw) gives six streams r_j = splitmix64(k + j):
//
//   - Random: X = ⌊(r_0 mod 2³²)·(R+1) / 2³²⌋ and Y = ⌊⌊r_0 / 2³²⌋·(R+1) / 2³²⌋
//     with R = size−Crop, each uniform on [0, R] up to 2⁻³² (else the
//     centre);
//   - Flip: the top bit of r_1;
//   - PCAStd > 0: standard normals z_0, z_1, z_2 by the Box–Muller
//     transform, z_0 + i·z_1 = √(−2 ln u)·e^{2πiv} with u, v from the top
//     53 bits of r_2 and r_3 (u in (0, 1], v in [0, 1)), z_2 likewise from
//     r_4 and r_5 (its sine twin unused); then α_i = PCAStd·z_i and
//     Offset[c] = Σ_i α_i λ_i p_i[c], summed in float64 and rounded once.
//
// The streams do not depend on which of Random, Flip and PCAStd are set,
// so turning one on leaves the others' draws unchanged.
func (a CropAugment) Draw(size int, seed uint64, epoch, i int) CropParams {
	p := a.Centre(size)
	k := splitmix64(splitmix64(splitmix64(seed)^uint64(epoch)) ^ uint64(i))
	r := func(j uint64) uint64 { return splitmix64(k + j) }
	if a.Random {
		span := uint64(a.span(size) + 1)
		r0 := r(0)
		// Multiply-shift maps 32 random bits onto [0, span) without division.
		p.X = int((r0 & 0xffffffff) * span >> 32)
		p.Y = int((r0 >> 32) * span >> 32)
	}
	if a.Flip {
		p.Flip = r(1)>>63 == 1
	}
	if a.PCAStd != 0 {
		z0, z1 := boxMuller(r(2), r(3))
		z2, _ := boxMuller(r(4), r(5))
		z := [3]float64{z0, z1, z2}
		for c := range 3 {
			var s float64
			for i := range 3 {
				s += a.PCAStd * z[i] * a.EigVal[i] * a.EigVec[i][c]
			}
			p.Offset[c] = float32(s)
		}
	}
	return p
}

// boxMuller turns two 64-bit random words into two independent standard
// normals: √(−2 ln u)·(cos 2πv, sin 2πv), u = (⌊a/2¹¹⌋+1)/2⁵³ in (0, 1] so
// the logarithm is finite, v = ⌊b/2¹¹⌋/2⁵³ in [0, 1).
func boxMuller(a, b uint64) (float64, float64) {
	const ulp = 1.0 / (1 << 53)
	u := float64(a>>11+1) * ulp
	v := float64(b>>11) * ulp
	r := math.Sqrt(-2 * math.Log(u))
	s, c := math.Sincos(2 * math.Pi * v)
	return r * c, r * s
}

// TenCrops returns the paper's ten test patches of a size×size image (§2,
// Table 1): the four corner patches and the centre one, then the same five
// reflected. In order: top-left, top-right, bottom-left, bottom-right,
// centre, and patch k+5 is patch k reflected. None has colour noise.
func TenCrops(size, crop int) [10]CropParams {
	a := CropAugment{Crop: crop}
	r := a.span(size)
	var ps [10]CropParams
	for k, p := range [5]CropParams{{}, {X: r}, {Y: r}, {X: r, Y: r}, a.Centre(size)} {
		ps[k] = p
		p.Flip = true
		ps[k+5] = p
	}
	return ps
}

// RenderCrop writes the patch p of a size×size image into dst, (C, Crop,
// Crop), from src, (C, Size, Size) raw bytes:
//
//	dst[c][y][x] = (float32(src[c][Y+y][X+x′]) − mean[c][Y+y][X+x′]) + Offset[c]
//
// with x′ = crop−1−x if p.Flip, else x, and both operations rounded to
// float32 in this order. The mean is taken at the source pixel, not the
// output position: the mean image is a property of where a pixel lies in
// the Size×Size image, so the patch and its mean are cut and reflected
// together. mean is in raw units (0..255), (C, Size, Size), or nil for
// none (the same as a zero mean). C is len(src)/(size·size), at most 3.
// gpu.Ops.Augment computes the same function, bit for bit, on a device.
//
// Without a mean or offset dst holds the pixel values exactly.
func RenderCrop(dst []float32, src []uint8, size, crop int, p CropParams, mean []float32) {
	plane := size * size
	c := len(src) / max(plane, 1)
	switch {
	case size < 1 || crop < 1 || crop > size || c < 1 || c > 3 || len(src) != c*plane:
		panic(fmt.Sprintf("data: RenderCrop: %d source values, size %d, crop %d: want C·size·size with C in 1..3 and crop in 1..size",
			len(src), size, crop))
	case len(dst) != c*crop*crop || (mean != nil && len(mean) != len(src)):
		panic(fmt.Sprintf("data: RenderCrop: len(dst) = %d, len(mean) = %d, want C·crop·crop = %d and C·size·size = %d",
			len(dst), len(mean), c*crop*crop, len(src)))
	case p.X < 0 || p.Y < 0 || p.X > size-crop || p.Y > size-crop:
		panic(fmt.Sprintf("data: RenderCrop: patch at (%d, %d) outside [0, %d]", p.X, p.Y, size-crop))
	}
	for ch := range c {
		off := p.Offset[ch]
		for y := range crop {
			at := (ch*size+p.Y+y)*size + p.X
			o := (ch*crop + y) * crop
			d, s := dst[o:o+crop], src[at:at+crop]
			switch {
			case mean == nil:
				cropRowNoMean(d, s, off, p.Flip)
			case p.Flip:
				cropRowFlip(d, s, mean[at:at+crop], off)
			default:
				cropRow(d, s, mean[at:at+crop], off)
			}
		}
	}
}

// The row loops below are written so that the compiler proves every index
// in bounds (go build -gcflags=-d=ssa/check_bce shows none in the loops):
// one conversion, one subtraction and one addition per value.

// cropRow sets d[x] = (float32(s[x]) − m[x]) + off.
func cropRow(d []float32, s []uint8, m []float32, off float32) {
	s, m = s[:len(d)], m[:len(d)]
	for x := range d {
		d[x] = (float32(s[x]) - m[x]) + off
	}
}

// cropRowFlip sets d[len−1−j] = (float32(s[j]) − m[j]) + off.
func cropRowFlip(d []float32, s []uint8, m []float32, off float32) {
	n := len(d)
	s, m = s[:n], m[:n]
	for j := n - 1; j >= 0; j-- {
		d[n-1-j] = (float32(s[j]) - m[j]) + off
	}
}

// cropRowNoMean is cropRow or cropRowFlip with a zero mean: x − 0 = x
// exactly, so the result is the same.
func cropRowNoMean(d []float32, s []uint8, off float32, flip bool) {
	n := len(d)
	s = s[:n]
	if flip {
		for j := n - 1; j >= 0; j-- {
			d[n-1-j] = float32(s[j]) + off
		}
		return
	}
	for x := range d {
		d[x] = float32(s[x]) + off
	}
}

// AugmentParams returns the params buffer of gpu.Ops.Augment for patches
// ps of C-channel images: per patch X, Y, Flip (0 or 1) and Offset[0..C),
// (len(ps), 3+C). C is at most 3.
func AugmentParams(ps []CropParams, c int) []float32 {
	if c < 1 || c > 3 {
		panic(fmt.Sprintf("data: AugmentParams: %d channels, want 1..3", c))
	}
	v := make([]float32, 0, len(ps)*(3+c))
	for _, p := range ps {
		flip := float32(0)
		if p.Flip {
			flip = 1
		}
		v = append(v, float32(p.X), float32(p.Y), flip)
		v = append(v, p.Offset[:c]...)
	}
	return v
}
