package data

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// memSource is an in-memory CropSource of random images; Read of image
// fail fails.
type memSource struct {
	c, size int
	pix     []uint8 // (N, C, Size, Size)
	labels  []int
	fail    int
}

// The prepared shards are what the loader reads at ImageNet scale.
var _ CropSource = (*Shards)(nil)

var errRead = errors.New("memSource: unreadable image")

func newMemSource(n, c, size int, seed uint64) *memSource {
	r := rand.New(rand.NewPCG(seed, 1))
	s := &memSource{c: c, size: size, pix: make([]uint8, n*c*size*size), labels: make([]int, n), fail: -1}
	for i := 0; i < len(s.pix); i += 8 {
		v := r.Uint64()
		for k := range min(8, len(s.pix)-i) {
			s.pix[i+k] = uint8(v >> (8 * k))
		}
	}
	for i := range s.labels {
		s.labels[i] = r.IntN(1000)
	}
	return s
}

func (s *memSource) N() int          { return len(s.labels) }
func (s *memSource) Label(i int) int { return s.labels[i] }
func (s *memSource) C() int          { return s.c }
func (s *memSource) Size() int       { return s.size }
func (s *memSource) image(i int) []uint8 {
	n := s.c * s.size * s.size
	return s.pix[i*n : (i+1)*n]
}
func (s *memSource) Read(i int, dst []uint8) error {
	if i == s.fail {
		return fmt.Errorf("%w %d", errRead, i)
	}
	if len(dst) != s.c*s.size*s.size {
		panic("memSource: Read into a buffer of the wrong size")
	}
	copy(dst, s.image(i))
	return nil
}

var paperAugment = CropAugment{Random: true, Flip: true, PCAStd: 0.1,
	EigVal: [3]float64{55, 5, 1}, EigVec: [3][3]float64{{0.58, 0.58, 0.58}, {-0.71, 0, 0.71}, {0.41, -0.82, 0.41}}}

func cropEpoch(t *testing.T, l *CropLoader, epoch int) []*Batch {
	t.Helper()
	var bs []*Batch
	for b, err := range l.Epoch(context.Background(), epoch) {
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	return bs
}

func TestCropLoaderDeterministicAcrossWorkers(t *testing.T) {
	const size, crop = 20, 15
	src := newMemSource(203, 3, size, 1)
	mean := make([]float32, 3*size*size)
	for i := range mean {
		mean[i] = float32(i%251) * 0.75
	}
	a := paperAugment
	a.Crop = crop
	o := CropLoaderOptions{Batch: 16, Seed: 9, Shuffle: true, DropLast: true, Augment: a, Mean: mean, Workers: 1}
	l1, err := NewCropLoader(src, o)
	if err != nil {
		t.Fatal(err)
	}
	o.Workers, o.Prefetch = 3, 2
	l3, err := NewCropLoader(src, o)
	if err != nil {
		t.Fatal(err)
	}
	if l1.Batches() != 12 || l1.Crop() != crop {
		t.Fatalf("Batches() = %d, Crop() = %d, want 12, %d", l1.Batches(), l1.Crop(), crop)
	}
	n := 3 * crop * crop
	img := make([]float32, n)
	for epoch := range 2 {
		b1, b3 := cropEpoch(t, l1, epoch), cropEpoch(t, l3, epoch)
		if len(b1) != 12 || len(b3) != 12 {
			t.Fatalf("epoch %d: %d and %d batches, want 12", epoch, len(b1), len(b3))
		}
		order := l1.Order(epoch)
		if !slices.Equal(order, epochOrder(src.N(), true, 9, epoch)) {
			t.Fatalf("epoch %d: Order is not the shared epoch order", epoch)
		}
		for k := range b1 {
			if b1[k].N != 16 || !slices.Equal(b1[k].Index, order[k*16:k*16+16]) {
				t.Fatalf("epoch %d batch %d: N %d, indices not the epoch order", epoch, k, b1[k].N)
			}
			if !slices.Equal(b1[k].Images, b3[k].Images) || !slices.Equal(b1[k].Labels, b3[k].Labels) || !slices.Equal(b1[k].Index, b3[k].Index) {
				t.Fatalf("epoch %d batch %d differs between 1 and 3 workers", epoch, k)
			}
			// Every image is RenderCrop(Draw(…)) of its source image.
			for j, i := range b1[k].Index {
				RenderCrop(img, src.image(i), size, crop, a.Draw(size, 9, epoch, i), mean)
				if !slices.Equal(img, b1[k].Images[j*n:(j+1)*n]) || b1[k].Labels[j] != float32(src.labels[i]) {
					t.Fatalf("epoch %d batch %d image %d (%d) is not RenderCrop(Draw(…)) with its label", epoch, k, j, i)
				}
			}
		}
	}
	if st := l3.Stats(); st.Images != 2*12*16 || st.Batches != 24 || st.Rate() <= 0 {
		t.Errorf("stats %+v", st)
	}

	// A resumed epoch delivers exactly the batches it had not reached.
	full := cropEpoch(t, l3, 1)
	k := 0
	for b, err := range l3.EpochFrom(context.Background(), 1, 9) {
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b.Images, full[9+k].Images) || !slices.Equal(b.Index, full[9+k].Index) {
			t.Fatalf("EpochFrom(1, 9): batch %d differs from Epoch's batch %d", k, 9+k)
		}
		k++
	}
	if k != 3 {
		t.Errorf("EpochFrom(1, 9) gave %d batches of 12, want 3", k)
	}
	for range l3.EpochFrom(context.Background(), 1, 12) {
		t.Error("EpochFrom past the end gave a batch")
	}
}

func TestCropLoaderEvaluation(t *testing.T) {
	const size, crop = 16, 13
	src := newMemSource(23, 3, size, 2)
	a := CropAugment{Crop: crop}
	l, err := NewCropLoader(src, CropLoaderOptions{Batch: 10, Augment: a, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	bs := cropEpoch(t, l, 4)
	n := 3 * crop * crop
	if len(bs) != 3 || bs[2].N != 3 || len(bs[2].Images) != 3*n || len(bs[2].Labels) != 3 {
		t.Fatalf("got %d batches, last N %d", len(bs), bs[len(bs)-1].N)
	}
	img := make([]float32, n)
	for k, b := range bs {
		for j, i := range b.Index {
			if i != k*10+j {
				t.Fatalf("batch %d image %d is image %d, want in order", k, j, i)
			}
			RenderCrop(img, src.image(i), size, crop, a.Centre(size), nil)
			if !slices.Equal(img, b.Images[j*n:(j+1)*n]) {
				t.Fatalf("image %d is not the centre patch", i)
			}
		}
	}
	// Recycled batches come back clean.
	for _, b := range bs {
		l.Recycle(b)
	}
	again, fresh := cropEpoch(t, l, 4), cropEpoch(t, l, 4)
	for k := range again {
		if again[k].N != fresh[k].N || !slices.Equal(again[k].Images, fresh[k].Images) {
			t.Fatalf("batch %d differs after recycling", k)
		}
	}
}

func TestCropLoaderTenCrop(t *testing.T) {
	const size, crop = 16, 11
	src := newMemSource(7, 3, size, 3)
	mean := make([]float32, 3*size*size)
	for i := range mean {
		mean[i] = 100
	}
	// The training augmentation is ignored.
	a := paperAugment
	a.Crop = crop
	l, err := NewCropLoader(src, CropLoaderOptions{Batch: 3, Augment: a, Mean: mean, TenCrop: true, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	bs := cropEpoch(t, l, 0)
	n := 3 * crop * crop
	if len(bs) != 3 || bs[0].N != 30 || bs[2].N != 10 || len(bs[2].Images) != 10*n || len(bs[2].Index) != 10 {
		t.Fatalf("got %d batches of N %d … %d, want 3 of 30, 30, 10", len(bs), bs[0].N, bs[len(bs)-1].N)
	}
	ten := TenCrops(size, crop)
	img := make([]float32, n)
	for k, b := range bs {
		for r := range b.N {
			i := k*3 + r/10
			if b.Index[r] != i || b.Labels[r] != float32(src.labels[i]) {
				t.Fatalf("batch %d row %d: image %d label %v, want image %d", k, r, b.Index[r], b.Labels[r], i)
			}
			RenderCrop(img, src.image(i), size, crop, ten[r%10], mean)
			if !slices.Equal(img, b.Images[r*n:(r+1)*n]) {
				t.Fatalf("batch %d row %d is not patch %d of image %d", k, r, r%10, i)
			}
		}
	}
	if st := l.Stats(); st.Images != 7 {
		t.Errorf("Stats().Images = %d, want 7 (images, not patches)", st.Images)
	}
	// Ten-patch batches recycle and come back clean.
	fresh := cropEpoch(t, l, 0)
	for _, b := range bs {
		l.Recycle(b)
	}
	for k, b := range cropEpoch(t, l, 0) {
		if b.N != fresh[k].N || !slices.Equal(b.Images, fresh[k].Images) || !slices.Equal(b.Index, fresh[k].Index) {
			t.Fatalf("batch %d differs after recycling", k)
		}
	}
}

func TestNewCropLoaderErrors(t *testing.T) {
	rgb, grey := newMemSource(4, 3, 8, 1), newMemSource(4, 1, 8, 1)
	four := &memSource{c: 4, size: 8, labels: make([]int, 4)}
	for _, tc := range []struct {
		src CropSource
		o   CropLoaderOptions
	}{
		{rgb, CropLoaderOptions{Batch: 0, Augment: CropAugment{Crop: 5}}},
		{rgb, CropLoaderOptions{Batch: 2}},
		{rgb, CropLoaderOptions{Batch: 2, Augment: CropAugment{Crop: 9}}},
		{rgb, CropLoaderOptions{Batch: 2, Augment: CropAugment{Crop: 5}, Mean: make([]float32, 3*5*5)}},
		{rgb, CropLoaderOptions{Batch: 2, Augment: CropAugment{Crop: 5, PCAStd: -1}}},
		{grey, CropLoaderOptions{Batch: 2, Augment: CropAugment{Crop: 5, PCAStd: 0.1}}},
		{four, CropLoaderOptions{Batch: 2, Augment: CropAugment{Crop: 5}}},
	} {
		if _, err := NewCropLoader(tc.src, tc.o); err == nil {
			t.Errorf("NewCropLoader(C=%d, %+v) accepted", tc.src.C(), tc.o)
		}
	}
	if _, err := NewCropLoader(grey, CropLoaderOptions{Batch: 2, Augment: CropAugment{Crop: 5, Random: true}}); err != nil {
		t.Errorf("grey images without colour noise: %v", err)
	}
}

func TestCropLoaderReadError(t *testing.T) {
	src := newMemSource(40, 3, 8, 4)
	src.fail = 21 // in batch 5 of 4 images, unshuffled
	l, err := NewCropLoader(src, CropLoaderOptions{Batch: 4, Augment: CropAugment{Crop: 6}, Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	got, errs := 0, 0
	for b, err := range l.Epoch(context.Background(), 0) {
		if err != nil {
			if !errors.Is(err, errRead) || b != nil {
				t.Errorf("err = %v with batch %v, want the read error and no batch", err, b)
			}
			errs++
			continue
		}
		got++
	}
	if got != 5 || errs != 1 {
		t.Errorf("%d batches then %d errors, want 5 batches, then the error once", got, errs)
	}
	waitGoroutines(t, base)
}

func TestCropLoaderCancel(t *testing.T) {
	src := newMemSource(400, 3, 8, 5)
	l, err := NewCropLoader(src, CropLoaderOptions{Batch: 4, Workers: 3, Prefetch: 4, Augment: CropAugment{Crop: 6, Random: true}})
	if err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	n := 0
	for range l.Epoch(context.Background(), 0) {
		if n++; n == 3 {
			break
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var gotErr error
	n = 0
	for _, err := range l.Epoch(ctx, 0) {
		if err != nil {
			gotErr = err
			break
		}
		if n++; n == 2 {
			cancel()
		}
	}
	if !errors.Is(gotErr, context.Canceled) {
		t.Errorf("after cancel: err = %v, want context.Canceled", gotErr)
	}
	for _, err := range l.Epoch(ctx, 1) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled epoch: err = %v", err)
		}
	}
	waitGoroutines(t, base)
}

// waitGoroutines fails t unless the goroutine count falls back to base.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	for range 100 {
		if runtime.NumGoroutine() <= base {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines after the epoch stopped, %d before", runtime.NumGoroutine(), base)
}

// processCPU returns the CPU time, user and system, the process has used
// so far, from /proc/self/stat (in ticks of 1/100 s); false where there is
// no /proc. On a machine shared with other work, images per CPU-second is
// the per-core rate that wall-clock images/s understates.
func processCPU() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	// Fields after the command, which is in parentheses and may hold
	// spaces: state is field 3, utime and stime fields 14 and 15.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+s) * 10 * time.Millisecond, true
}

// BenchmarkCropLoader measures the loader on the paper's training input:
// 227×227 patches of 256×256×3 images in memory, random positions and
// reflections, PCA colour noise and the mean, batches of 128. It reports
// images/s, images/s per core (per worker that can run at once) and, where
// it can tell, images per CPU-second of the whole process.
func BenchmarkCropLoader(b *testing.B) {
	const size, crop = 256, 227
	mem := newMemSource(512, 3, size, 1)
	mean := make([]float32, 3*size*size)
	for i := range mean {
		mean[i] = float32(i%255) + 0.5
	}
	a := paperAugment
	a.Crop = crop
	// The same images in shards on disk (the page cache, after the first
	// epoch): what training from a prepared folder reads, CRC checks included.
	dir := b.TempDir()
	for k := 0; k < 2; k++ {
		w, err := createShard(dir, "train", k, 2, 3, size, ShardImages)
		if err != nil {
			b.Fatal(err)
		}
		for i := k * 256; i < (k+1)*256; i++ {
			if err := w.add(mem.image(i), mem.Label(i)); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.finish(); err != nil {
			b.Fatal(err)
		}
	}
	shards, err := OpenShards(dir, "train")
	if err != nil {
		b.Fatal(err)
	}
	defer shards.Close()
	for _, workers := range []int{1, 2} {
		for _, from := range []struct {
			name string
			src  CropSource
		}{{"memory", mem}, {"shards", shards}} {
			src := from.src
			b.Run(fmt.Sprintf("%s/workers=%d", from.name, workers), func(b *testing.B) {
				l, err := NewCropLoader(src, CropLoaderOptions{Batch: 128, Seed: 1, Shuffle: true, DropLast: true,
					Augment: a, Mean: mean, Workers: workers})
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				cpu0, cpuOK := processCPU()
				n, epoch := 0, 0
				for n < b.N {
					for bt, err := range l.Epoch(context.Background(), epoch) {
						if err != nil {
							b.Fatal(err)
						}
						l.Recycle(bt)
						if n++; n == b.N {
							break
						}
					}
					epoch++
				}
				rate := float64(b.N*128) / b.Elapsed().Seconds()
				b.ReportMetric(rate, "images/s")
				b.ReportMetric(rate/float64(min(workers, runtime.GOMAXPROCS(0))), "images/s/core")
				if cpu1, ok := processCPU(); ok && cpuOK && cpu1 > cpu0 {
					b.ReportMetric(float64(b.N*128)/(cpu1-cpu0).Seconds(), "images/cpu-s")
				}
			})
		}
	}
}
