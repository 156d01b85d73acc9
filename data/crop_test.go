package data

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
)

// renderCropRef is the slow reference for RenderCrop, straight from its doc
// comment, in float64:
//
//	dst[c][y][x] = src[c][Y+y][X+x′] − mean[c][Y+y][X+x′] + Offset[c]
//
// with x′ = crop−1−x if Flip, else x.
func renderCropRef(src []uint8, size, crop int, p CropParams, mean []float32) []float64 {
	c := len(src) / (size * size)
	out := make([]float64, c*crop*crop)
	for ch := range c {
		for y := range crop {
			for x := range crop {
				xs := x
				if p.Flip {
					xs = crop - 1 - x
				}
				at := (ch*size+p.Y+y)*size + p.X + xs
				v := float64(src[at])
				if mean != nil {
					v -= float64(mean[at])
				}
				out[(ch*crop+y)*crop+x] = v + float64(p.Offset[ch])
			}
		}
	}
	return out
}

// randomImage returns c×size×size random bytes, and a random mean image in
// [0, 255) if withMean.
func randomImage(r *rand.Rand, c, size int, withMean bool) ([]uint8, []float32) {
	src := make([]uint8, c*size*size)
	for i := range src {
		src[i] = uint8(r.IntN(256))
	}
	if !withMean {
		return src, nil
	}
	mean := make([]float32, len(src))
	for i := range mean {
		mean[i] = float32(255 * r.Float64())
	}
	return src, mean
}

// cropTol bounds RenderCrop's error against the float64 reference: two
// float32 roundings of values below 512, half an ulp (2⁻¹⁵) each.
const cropTol = 2 * 0x1p-15

func TestRenderCropMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ c, size, crop int }{{3, 37, 29}, {1, 9, 9}, {2, 6, 1}, {3, 256, 227}} {
		for _, withMean := range []bool{false, true} {
			src, mean := randomImage(r, tc.c, tc.size, withMean)
			for k := range 6 {
				span := tc.size - tc.crop
				p := CropParams{X: r.IntN(span + 1), Y: r.IntN(span + 1), Flip: k%2 == 1}
				if k >= 2 {
					for ch := range 3 {
						p.Offset[ch] = float32(40*r.Float64() - 20)
					}
				}
				if k == 4 {
					p.X, p.Y = span, span
				}
				name := fmt.Sprintf("C=%d %d→%d mean=%v %+v", tc.c, tc.size, tc.crop, withMean, p)
				got := make([]float32, tc.c*tc.crop*tc.crop)
				for i := range got {
					got[i] = float32(math.NaN())
				}
				RenderCrop(got, src, tc.size, tc.crop, p, mean)
				want := renderCropRef(src, tc.size, tc.crop, p, mean)
				exact := !withMean && p.Offset == [3]float32{}
				bad := 0
				for i := range want {
					d := math.Abs(float64(got[i]) - want[i])
					if d > cropTol || exact && d != 0 || math.IsNaN(d) {
						t.Errorf("%s: [%d] = %v, want %v", name, i, got[i], want[i])
						if bad++; bad == 10 {
							t.FailNow()
						}
					}
				}
			}
		}
	}
}

func TestRenderCropFlipMirrors(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const c, size, crop = 3, 40, 31
	src, mean := randomImage(r, c, size, true)
	p := CropParams{X: 5, Y: 7, Offset: [3]float32{1.5, -2.25, 3}}
	plain, flipped := make([]float32, c*crop*crop), make([]float32, c*crop*crop)
	RenderCrop(plain, src, size, crop, p, mean)
	p.Flip = true
	RenderCrop(flipped, src, size, crop, p, mean)
	// The mean is cut and reflected with the pixels, so the reflection is
	// exact.
	for row := range c * crop {
		a, b := plain[row*crop:(row+1)*crop], slices.Clone(flipped[row*crop:(row+1)*crop])
		slices.Reverse(b)
		if !slices.Equal(a, b) {
			t.Fatalf("row %d of the flipped patch is not the plain row reversed", row)
		}
	}
}

func TestTenCrops(t *testing.T) {
	const size, crop = 256, 227
	ps := TenCrops(size, crop)
	want := [5][2]int{{0, 0}, {29, 0}, {0, 29}, {29, 29}, {14, 14}}
	for k, p := range ps {
		w := CropParams{X: want[k%5][0], Y: want[k%5][1], Flip: k >= 5}
		if p != w {
			t.Errorf("TenCrops[%d] = %+v, want %+v", k, p, w)
		}
	}
	if c := (CropAugment{Crop: crop}).Centre(size); c != ps[4] {
		t.Errorf("Centre = %+v, TenCrops[4] = %+v", c, ps[4])
	}
	// The patches' corners are the image's corners, reflected or not.
	src := make([]uint8, size*size)
	for y := range size {
		for x := range size {
			src[y*size+x] = uint8(7*x + 13*y)
		}
	}
	pix := func(x, y int) float32 { return float32(src[y*size+x]) }
	dst := make([]float32, crop*crop)
	last := crop - 1
	for k, corner := range []struct {
		at   int // index in the patch
		want float32
	}{
		{0, pix(0, 0)},                          // top-left: its top-left
		{last, pix(size-1, 0)},                  // top-right: its top-right
		{last * crop, pix(0, size-1)},           // bottom-left: its bottom-left
		{last*crop + last, pix(size-1, size-1)}, // bottom-right
		{0, pix(14, 14)},                        // centre
		{last, pix(0, 0)},                       // reflected top-left: its top-right
		{0, pix(size-1, 0)},                     // reflected top-right: its top-left
		{last*crop + last, pix(0, size-1)},      // reflected bottom-left
		{last * crop, pix(size-1, size-1)},      // reflected bottom-right
		{last, pix(14, 14)},                     // reflected centre
	} {
		RenderCrop(dst, src, size, crop, ps[k], nil)
		if dst[corner.at] != corner.want {
			t.Errorf("patch %d: [%d] = %v, want %v", k, corner.at, dst[corner.at], corner.want)
		}
	}
}

func TestCropDrawDeterministicAndCovering(t *testing.T) {
	const size, crop, n = 256, 227, 20000
	a := CropAugment{Crop: crop, Random: true, Flip: true, PCAStd: 0.1,
		EigVal: [3]float64{55, 5, 1}, EigVec: [3][3]float64{{0.58, 0.58, 0.58}, {-0.71, 0, 0.71}, {0.41, -0.82, 0.41}}}
	var xs, ys [size - crop + 1]int
	flips, sameAsNext := 0, 0
	for i := range n {
		p := a.Draw(size, 7, 3, i)
		if p != a.Draw(size, 7, 3, i) {
			t.Fatalf("Draw(i=%d) differs between calls", i)
		}
		if p.X < 0 || p.X > size-crop || p.Y < 0 || p.Y > size-crop {
			t.Fatalf("Draw(i=%d) = %+v outside [0, %d]", i, p, size-crop)
		}
		xs[p.X]++
		ys[p.Y]++
		if p.Flip {
			flips++
		}
		if p == a.Draw(size, 7, 4, i) || p == a.Draw(size, 8, 3, i) {
			sameAsNext++
		}
	}
	// Each of the 30 offsets is drawn n/30 ≈ 667 times; 5 standard
	// deviations is about ±125.
	for v := range xs {
		if xs[v] < 540 || xs[v] > 790 || ys[v] < 540 || ys[v] > 790 {
			t.Errorf("offset %d drawn %d times as X, %d as Y, want about %d", v, xs[v], ys[v], n/len(xs))
		}
	}
	if flips < n/2-360 || flips > n/2+360 {
		t.Errorf("%d of %d patches reflected, want about half", flips, n)
	}
	if sameAsNext > 0 {
		t.Errorf("%d images drew the same patch in another epoch or with another seed", sameAsNext)
	}

	// Without Random and Flip: the centre; without PCAStd: no offset, and
	// turning the others off leaves the crops as they were.
	noPCA := a
	noPCA.PCAStd = 0
	for i := range 100 {
		p, q := a.Draw(size, 7, 3, i), noPCA.Draw(size, 7, 3, i)
		if q.Offset != [3]float32{} {
			t.Fatalf("Draw without PCA noise: Offset = %v", q.Offset)
		}
		if p.Offset == [3]float32{} || p.X != q.X || p.Y != q.Y || p.Flip != q.Flip {
			t.Fatalf("image %d: with PCA %+v, without %+v", i, p, q)
		}
		if c := (CropAugment{Crop: crop}).Draw(size, 7, 3, i); c != a.Centre(size) {
			t.Fatalf("Draw without augmentation = %+v, want the centre", c)
		}
	}
}

func TestCropPCAStatistics(t *testing.T) {
	// A random orthonormal basis p_i and the eigenvalues λ_i; the offset
	// Σ α_i λ_i p_i with α_i ~ N(0, σ²) independent has mean 0 and
	// covariance σ² Σ λ_i² p_i p_iᵀ.
	r := rand.New(rand.NewPCG(5, 6))
	var p [3][3]float64
	for i := range 3 {
		for {
			for c := range 3 {
				p[i][c] = r.NormFloat64()
			}
			for j := range i {
				d := p[i][0]*p[j][0] + p[i][1]*p[j][1] + p[i][2]*p[j][2]
				for c := range 3 {
					p[i][c] -= d * p[j][c]
				}
			}
			norm := math.Sqrt(p[i][0]*p[i][0] + p[i][1]*p[i][1] + p[i][2]*p[i][2])
			if norm > 0.1 {
				for c := range 3 {
					p[i][c] /= norm
				}
				break
			}
		}
	}
	const sigma, n = 0.1, 40000
	a := CropAugment{Crop: 5, PCAStd: sigma, EigVal: [3]float64{60, 15, 4}, EigVec: p}
	var want [3][3]float64
	for j := range 3 {
		for k := range 3 {
			for i := range 3 {
				want[j][k] += sigma * sigma * a.EigVal[i] * a.EigVal[i] * p[i][j] * p[i][k]
			}
		}
	}
	var sum [3]float64
	var prod [3][3]float64
	for i := range n {
		o := a.Draw(8, 11, 2, i).Offset
		for j := range 3 {
			sum[j] += float64(o[j])
			for k := range 3 {
				prod[j][k] += float64(o[j]) * float64(o[k])
			}
		}
	}
	for j := range 3 {
		mean := sum[j] / n
		if se := math.Sqrt(want[j][j] / n); math.Abs(mean) > 5*se {
			t.Errorf("mean offset of channel %d = %.4f, want 0 ± %.4f", j, mean, 5*se)
		}
		for k := range 3 {
			got := prod[j][k]/n - sum[j]/n*sum[k]/n
			// The standard error of a Gaussian sample covariance.
			se := math.Sqrt((want[j][j]*want[k][k] + want[j][k]*want[j][k]) / n)
			if math.Abs(got-want[j][k]) > 5*se {
				t.Errorf("covariance[%d][%d] = %.4f, want %.4f ± %.4f", j, k, got, want[j][k], 5*se)
			}
		}
	}
	t.Logf("%d offsets; σ² Σ λ² p pᵀ = %.3f", n, want)
}

// TestRenderCropMatchesDevice checks that RenderCrop and the CPU device's
// Augment, which implements the same formula on packed bytes, give the
// same float32 values, bit for bit.
func TestRenderCropMatchesDevice(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const n, c, size, crop = 6, 3, 45, 37
	src, mean := randomImage(r, n*c, size, true)
	mean = mean[:c*size*size]
	a := CropAugment{Crop: crop, Random: true, Flip: true, PCAStd: 0.1,
		EigVal: [3]float64{55, 5, 1}, EigVec: [3][3]float64{{0.58, 0.58, 0.58}, {-0.71, 0, 0.71}, {0.41, -0.82, 0.41}}}
	ps := make([]CropParams, n)
	for i := range ps {
		ps[i] = a.Draw(size, 1, 0, i)
	}
	ps[0].Flip, ps[1].Flip = false, true

	dev := cpu.New(cpu.Options{Threads: 2})
	s := gpu.AugmentShape{N: n, C: c, Size: size, Crop: crop}
	upload := func(v []float32) gpu.Buffer {
		b, err := dev.Alloc(len(v))
		if err != nil {
			t.Fatal(err)
		}
		if err := dev.Upload(b, v); err != nil {
			t.Fatal(err)
		}
		return b
	}
	srcB, paramsB, dstB := upload(gpu.PackBytes(src)), upload(AugmentParams(ps, c)), upload(make([]float32, s.DstLen()))
	for _, m := range [][]float32{mean, nil} {
		devMean := m
		if m == nil {
			devMean = make([]float32, c*size*size) // a zero mean is no mean
		}
		if err := dev.Augment(dstB, srcB, upload(devMean), paramsB, s); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, s.DstLen())
		if err := dev.Download(got, dstB); err != nil {
			t.Fatal(err)
		}
		img, out := c*size*size, c*crop*crop
		want := make([]float32, out)
		for i, p := range ps {
			RenderCrop(want, src[i*img:(i+1)*img], size, crop, p, m)
			for j := range want {
				if math.Float32bits(got[i*out+j]) != math.Float32bits(want[j]) {
					t.Fatalf("mean %v, image %d %+v: device [%d] = %v, RenderCrop %v", m != nil, i, p, j, got[i*out+j], want[j])
				}
			}
		}
	}
}

// BenchmarkRenderCrop renders 227×227×3 patches of 256×256×3 images, as
// the loader's workers do, in one goroutine: random positions, reflections
// and colour offsets, and the mean.
func BenchmarkRenderCrop(b *testing.B) {
	const c, size, crop, images = 3, 256, 227, 16
	r := rand.New(rand.NewPCG(1, 2))
	src, mean := randomImage(r, images*c, size, true)
	mean = mean[:c*size*size]
	a := CropAugment{Crop: crop, Random: true, Flip: true, PCAStd: 0.1,
		EigVal: [3]float64{55, 5, 1}, EigVec: [3][3]float64{{0.58, 0.58, 0.58}, {-0.71, 0, 0.71}, {0.41, -0.82, 0.41}}}
	dst := make([]float32, c*crop*crop)
	img := c * size * size
	i := 0
	cpu0, cpuOK := processCPU()
	for b.Loop() {
		j := i % images
		RenderCrop(dst, src[j*img:(j+1)*img], size, crop, a.Draw(size, 1, 0, i), mean)
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
	b.ReportMetric(float64(b.N*len(dst))/b.Elapsed().Seconds()/1e6, "Mvalues/s")
	if cpu1, ok := processCPU(); ok && cpuOK && cpu1 > cpu0 {
		b.ReportMetric(float64(b.N)/(cpu1-cpu0).Seconds(), "images/cpu-s")
	}
}
