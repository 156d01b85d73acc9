package data

import (
	"context"
	"fmt"
	"iter"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// CropLoaderOptions configure a CropLoader. For training: Shuffle,
// DropLast and an Augment with Random, Flip and PCAStd 0.1; for evaluation:
// none of these, which renders every image's centre patch once, in order,
// the last batch possibly partial, or TenCrop for the paper's ten-patch
// evaluation.
type CropLoaderOptions struct {
	// Batch is the number of images per batch (the paper: 128).
	Batch int
	// Seed seeds the epoch orders and the augmentation.
	Seed uint64
	// Shuffle visits the images in a fresh random order every epoch.
	Shuffle bool
	// DropLast drops a final partial batch.
	DropLast bool
	// Augment cuts and colours the patches; its Crop must be in
	// [1, Size] of the source.
	Augment CropAugment
	// Mean is subtracted from every image at the source pixel (see
	// RenderCrop); nil for none.
	Mean []float32 // (C, Size, Size)
	// Workers is the number of goroutines reading and rendering batches;
	// 0 means GOMAXPROCS. It does not change the batches.
	Workers int
	// Prefetch is the most batches being rendered or waiting ahead of the
	// consumer; 0 means 2·Workers.
	Prefetch int
	// TenCrop renders, for every image, the ten patches of TenCrops,
	// consecutively, instead of one patch as Augment draws it; Augment's
	// Random, Flip and PCAStd are ignored. A batch of n images then holds
	// 10·n patches: Batch.N = 10·n, and Labels and Index repeat each image's
	// label and index ten times, so rows 10·j … 10·j+9 are image j's
	// patches, whose softmax outputs the evaluation averages. Choose Batch
	// so that 10·Batch rows fit the network's batch.
	TenCrop bool
}

// CropLoader cuts the paper's Crop×Crop patches (§2, §4.1) from the
// Size×Size images of a CropSource into batches, with worker goroutines
// and a bounded prefetch queue, as Loader does for in-memory sets: the
// same ordering, the same iterator semantics, the same Batch. Each worker
// reads an image into its own scratch memory and renders its patch from
// there. Its methods may be called from several goroutines, but one epoch
// is meant to be consumed by one.
type CropLoader struct {
	src      CropSource
	o        CropLoaderOptions
	size, c  int
	crop     int
	imageLen int // C·Crop·Crop, one patch
	perImage int // patches per image: 1, or 10 with TenCrop
	ten      [10]CropParams

	pool    batchPool  // batches given back with Recycle
	raw     *batchPool // raw batches, made on the first raw epoch
	rawOnce sync.Once

	counters
}

// NewCropLoader returns a loader over src. It returns an error if the
// options do not fit the source (a batch size below 1, a crop larger than
// the images, a mean image of the wrong size, colour noise on images that
// are not RGB, more than 3 channels).
func NewCropLoader(src CropSource, o CropLoaderOptions) (*CropLoader, error) {
	size, c, a := src.Size(), src.C(), o.Augment
	switch {
	case o.Batch < 1:
		return nil, fmt.Errorf("data: crop loader: batch size %d, want at least 1", o.Batch)
	case size < 1 || c < 1 || c > 3:
		return nil, fmt.Errorf("data: crop loader: source of %d×%d×%d images, want 1 to 3 channels", c, size, size)
	case a.Crop < 1 || a.Crop > size:
		return nil, fmt.Errorf("data: crop loader: crop %d of %d×%d images, want 1 to %d", a.Crop, size, size, size)
	case a.PCAStd < 0 || a.PCAStd != 0 && c != 3 && !o.TenCrop:
		return nil, fmt.Errorf("data: crop loader: PCA colour noise σ = %g on %d-channel images, want σ ≥ 0 and RGB", a.PCAStd, c)
	case o.Mean != nil && len(o.Mean) != c*size*size:
		return nil, fmt.Errorf("data: crop loader: mean image has %d values, want C·Size·Size = %d·%d·%d = %d",
			len(o.Mean), c, size, size, c*size*size)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Prefetch <= 0 {
		o.Prefetch = 2 * o.Workers
	}
	l := &CropLoader{src: src, o: o, size: size, c: c, crop: a.Crop, imageLen: c * a.Crop * a.Crop, perImage: 1}
	if o.TenCrop {
		l.perImage, l.ten = 10, TenCrops(size, a.Crop)
	}
	l.pool = newBatchPool(o.Prefetch+1, o.Batch*l.perImage, l.imageLen)
	return l, nil
}

// Crop returns the side of the rendered patches.
func (l *CropLoader) Crop() int { return l.crop }

// Source returns the source the loader reads.
func (l *CropLoader) Source() CropSource { return l.src }

// Batches returns the number of batches in an epoch.
func (l *CropLoader) Batches() int {
	if l.o.DropLast {
		return l.src.N() / l.o.Batch
	}
	return (l.src.N() + l.o.Batch - 1) / l.o.Batch
}

// Order returns the order in which an epoch visits the images, as
// Loader.Order does: with Shuffle, a permutation of [0, N) from
// rand.New(rand.NewPCG(Seed, epoch)).Shuffle; without, 0, 1, …, N−1.
func (l *CropLoader) Order(epoch int) []int {
	return epochOrder(l.src.N(), l.o.Shuffle, l.o.Seed, epoch)
}

// Epoch returns an iterator over the epoch's batches, in order, with
// Loader.Epoch's semantics: workers render at most Prefetch batches ahead;
// the batches are a pure function of (Seed, epoch, the options and the
// source), whatever the number of workers; breaking out of the loop or
// cancelling ctx stops the workers, and the iterator returns only after
// every goroutine it started has ended; on cancellation it yields
// (nil, ctx.Err()) once and stops. If the source fails to read an image,
// it yields (nil, that error) once, when the consumer reaches the batch,
// and stops. A batch stays valid until it is passed to Recycle.
func (l *CropLoader) Epoch(ctx context.Context, epoch int) iter.Seq2[*Batch, error] {
	return l.EpochFrom(ctx, epoch, 0)
}

// EpochFrom is Epoch starting at batch start: the batches a run resumed
// mid-epoch has not trained on yet, identical to those Epoch delivers.
func (l *CropLoader) EpochFrom(ctx context.Context, epoch, start int) iter.Seq2[*Batch, error] {
	return runEpoch(ctx, l.Batches(), start, l.o.Workers, l.o.Prefetch, &l.wait, func(workers int) renderFunc {
		order := l.Order(epoch)
		scratch := make([][]uint8, workers)
		return func(w, k int) (*Batch, error) {
			if scratch[w] == nil {
				scratch[w] = make([]uint8, l.c*l.size*l.size)
			}
			return l.render(order, epoch, k, scratch[w])
		}
	})
}

// render renders batch k of the epoch, reading each image into scratch.
func (l *CropLoader) render(order []int, epoch, k int, scratch []uint8) (*Batch, error) {
	t := time.Now()
	lo := k * l.o.Batch
	idx := order[lo:min(lo+l.o.Batch, len(order))]
	b := l.pool.get(len(idx) * l.perImage)
	a, n := l.o.Augment, l.imageLen
	for j, i := range idx {
		if err := l.src.Read(i, scratch); err != nil {
			l.Recycle(b)
			return nil, err
		}
		label := float32(l.src.Label(i))
		if l.o.TenCrop {
			for p, cp := range l.ten {
				r := j*10 + p
				RenderCrop(b.Images[r*n:(r+1)*n], scratch, l.size, l.crop, cp, l.o.Mean)
				b.Labels[r], b.Index[r] = label, i
			}
			continue
		}
		RenderCrop(b.Images[j*n:(j+1)*n], scratch, l.size, l.crop, a.Draw(l.size, l.o.Seed, epoch, i), l.o.Mean)
		b.Labels[j], b.Index[j] = label, i
	}
	l.images.Add(int64(len(idx)))
	l.batches.Add(1)
	l.work.Add(int64(time.Since(t)))
	return b, nil
}

// Recycle gives a batch back to the loader for reuse, sparing an
// allocation; the caller must not use b afterwards. Recycling is optional,
// and a batch from another loader is ignored.
func (l *CropLoader) Recycle(b *Batch) {
	if b != nil && b.Raw != nil {
		if l.raw != nil { // set before any raw batch was made
			l.raw.put(b)
		}
		return
	}
	l.pool.put(b)
}

// Stats returns the loader's counters so far. Images counts source
// images: with TenCrop an image of ten patches counts once.
func (l *CropLoader) Stats() Stats { return l.counters.stats(l.o.Workers) }

// epochOrder returns the order in which an epoch visits n images: with
// shuffle, a permutation of [0, n) from rand.New(rand.NewPCG(seed,
// epoch)).Shuffle; without, 0, 1, …, n−1. Loader and CropLoader share it.
func epochOrder(n int, shuffle bool, seed uint64, epoch int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	if shuffle {
		r := rand.New(rand.NewPCG(seed, uint64(epoch)))
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	return order
}

// renderFunc renders batch k of an epoch as worker w, 0 ≤ w < workers; a
// worker never runs two batches at once, so it may own scratch memory.
type renderFunc func(w, k int) (*Batch, error)

// rendered is what a worker delivers for one batch.
type rendered struct {
	b   *Batch
	err error
}

// runEpoch is the pipeline behind Loader.EpochFrom and
// CropLoader.EpochFrom: it returns an iterator over batches start … nb−1
// of an epoch, rendered by at most workers goroutines, at most prefetch
// batches ahead of the consumer, and delivered in order. When iteration
// begins (and ctx is not done) it calls setup with the number of workers
// it will start to get the epoch's render function. The consumer's time
// waiting for batches is added to wait. An error from render is yielded,
// with a nil batch, when the consumer reaches that batch, and ends the
// epoch; so does ctx's. The iterator returns only after every goroutine
// it started has ended.
func runEpoch(ctx context.Context, nb, start, workers, prefetch int, wait *atomic.Int64,
	setup func(workers int) renderFunc) iter.Seq2[*Batch, error] {
	return func(yield func(*Batch, error) bool) {
		if start < 0 || start >= nb {
			return
		}
		if err := ctx.Err(); err != nil {
			yield(nil, err)
			return
		}
		nw := min(workers, nb-start)
		render := setup(nw)
		wctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		defer func() {
			cancel()
			wg.Wait()
		}()

		// Batch k is rendered by whichever worker takes it and delivered
		// through its own slot, so the consumer can take them in order. A
		// token in sem is a batch in flight: taken before the batch is
		// handed to a worker, returned when the consumer receives it.
		slots := make([]chan rendered, nb)
		for k := start; k < nb; k++ {
			slots[k] = make(chan rendered, 1)
		}
		sem := make(chan struct{}, prefetch)
		jobs := make(chan int)
		wg.Go(func() {
			defer close(jobs)
			for k := start; k < nb; k++ {
				select {
				case sem <- struct{}{}:
				case <-wctx.Done():
					return
				}
				select {
				case jobs <- k:
				case <-wctx.Done():
					return
				}
			}
		})
		for w := range nw {
			wg.Go(func() {
				for k := range jobs {
					if wctx.Err() != nil {
						return
					}
					b, err := render(w, k)
					slots[k] <- rendered{b, err} // never blocks: one send per slot
				}
			})
		}

		for k := start; k < nb; k++ {
			t := time.Now()
			var r rendered
			select {
			case r = <-slots[k]:
			case <-ctx.Done():
				yield(nil, ctx.Err())
				return
			}
			wait.Add(int64(time.Since(t)))
			<-sem
			if r.err != nil {
				yield(nil, r.err)
				return
			}
			if !yield(r.b, nil) {
				return
			}
		}
	}
}
