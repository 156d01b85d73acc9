package data

import (
	"context"
	"fmt"
	"iter"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Batch is one batch of rendered images.
type Batch struct {
	// Images holds the rendered images.
	Images []float32 // (N, C, Size, Size)
	// Labels holds each image's class index, as float32.
	Labels []float32 // (N)
	// Index holds each image's index in the set.
	Index []int // (N)
	// N is the number of images in the batch: the loader's batch size, or
	// fewer in a final partial batch.
	N int
	// Raw holds, in a raw batch (RawBatcher), the images' source bytes
	// instead of Images: N·C·Size·Size bytes (RawSpec), image after image,
	// packed four per float32 word as gpu.PackBytes packs them, the last
	// word's unused bytes zero.
	Raw []float32 // (⌈N·C·Size·Size / 4⌉)
	// Params holds, in a raw batch, each image's parameters for
	// gpu.Ops.Augment: X, Y, Flip, and a colour offset per channel.
	Params []float32 // (N, 3+C)
}

// LoaderOptions configure a Loader. For training: Shuffle, DropLast and an
// Augment with Crop and Flip; for evaluation: none of these, which renders
// every image once, centred, in order, the last batch possibly partial.
type LoaderOptions struct {
	// Batch is the number of images per batch (the paper: 128).
	Batch int
	// Seed seeds the epoch orders and the augmentation.
	Seed uint64
	// Shuffle visits the images in a fresh random order every epoch.
	Shuffle bool
	// Augment places and augments the images; its Size 0 means max(H, W).
	Augment Augment
	// Mean is subtracted from every rendered image (see MeanImage); nil
	// for none.
	Mean []float32 // (C, Size, Size)
	// Workers is the number of goroutines rendering batches; 0 means
	// GOMAXPROCS. It does not change the batches.
	Workers int
	// Prefetch is the most batches being rendered or waiting ahead of the
	// consumer; 0 means 2·Workers.
	Prefetch int
	// DropLast drops a final partial batch.
	DropLast bool
}

// Loader renders a Set into batches with worker goroutines and a bounded
// prefetch queue. Its methods may be called from several goroutines, but one
// epoch is meant to be consumed by one.
type Loader struct {
	set      *Set
	o        LoaderOptions
	size     int // canvas side
	imageLen int // C·Size·Size

	pool    batchPool  // batches given back with Recycle
	raw     *batchPool // raw batches, made on the first raw epoch
	rawOnce sync.Once

	counters
}

// NewLoader returns a loader over s. It returns an error if the options do not
// fit the set (a batch size below 1, a mean image of the wrong size).
func NewLoader(s *Set, o LoaderOptions) (*Loader, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if o.Batch < 1 {
		return nil, fmt.Errorf("data: loader for %q: batch size %d, want at least 1", s.Name, o.Batch)
	}
	if o.Augment.Size < 0 || o.Augment.Pad < 0 {
		return nil, fmt.Errorf("data: loader for %q: Augment.Size %d, Pad %d: want non-negative", s.Name, o.Augment.Size, o.Augment.Pad)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Prefetch <= 0 {
		o.Prefetch = 2 * o.Workers
	}
	size := o.Augment.size(s.H, s.W)
	o.Augment.Size = size
	l := &Loader{set: s, o: o, size: size, imageLen: s.C * size * size}
	if o.Mean != nil && len(o.Mean) != l.imageLen {
		return nil, fmt.Errorf("data: loader for %q: mean image has %d values, want C·Size·Size = %d·%d·%d = %d (use MeanImage(train, %d))",
			s.Name, len(o.Mean), s.C, size, size, l.imageLen, size)
	}
	l.pool = newBatchPool(o.Prefetch+1, o.Batch, l.imageLen)
	return l, nil
}

// Size returns the side of the rendered images.
func (l *Loader) Size() int { return l.size }

// Set returns the set the loader reads.
func (l *Loader) Set() *Set { return l.set }

// Batches returns the number of batches in an epoch.
func (l *Loader) Batches() int {
	if l.o.DropLast {
		return l.set.N / l.o.Batch
	}
	return (l.set.N + l.o.Batch - 1) / l.o.Batch
}

// Order returns the order in which an epoch visits the images: with Shuffle,
// a permutation of [0, N) from rand.New(rand.NewPCG(Seed, epoch)).Shuffle;
// without, 0, 1, …, N−1.
func (l *Loader) Order(epoch int) []int {
	return epochOrder(l.set.N, l.o.Shuffle, l.o.Seed, epoch)
}

// Epoch returns an iterator over the epoch's batches, in order:
//
//	for b, err := range loader.Epoch(ctx, epoch) {
//		if err != nil {
//			return err // ctx was cancelled
//		}
//		... use b ...
//	}
//
// Workers render batches ahead of the loop, at most Prefetch at a time. The
// batches are a pure function of (Seed, epoch, the options), whatever the
// number of workers. Breaking out of the loop, or cancelling ctx, stops the
// workers; the iterator returns only after every goroutine it started has
// ended. On cancellation it yields (nil, ctx.Err()) once and stops. A batch
// stays valid after the loop moves on, until it is passed to Recycle.
func (l *Loader) Epoch(ctx context.Context, epoch int) iter.Seq2[*Batch, error] {
	return l.EpochFrom(ctx, epoch, 0)
}

// EpochFrom is Epoch starting at batch start: the batches a run resumed
// mid-epoch has not trained on yet, identical to those Epoch delivers.
func (l *Loader) EpochFrom(ctx context.Context, epoch, start int) iter.Seq2[*Batch, error] {
	return runEpoch(ctx, l.Batches(), start, l.o.Workers, l.o.Prefetch, &l.wait, func(int) renderFunc {
		order := l.Order(epoch)
		return func(_, k int) (*Batch, error) { return l.render(order, epoch, k), nil }
	})
}

// render renders batch k of the epoch.
func (l *Loader) render(order []int, epoch, k int) *Batch {
	t := time.Now()
	lo := k * l.o.Batch
	idx := order[lo:min(lo+l.o.Batch, len(order))]
	b := l.pool.get(len(idx))
	s, a := l.set, l.o.Augment
	for j, i := range idx {
		p := a.Draw(s.H, s.W, l.o.Seed, epoch, i)
		a.Render(b.Images[j*l.imageLen:(j+1)*l.imageLen], s, i, p, l.o.Mean)
		b.Labels[j] = float32(s.Labels[i])
		b.Index[j] = i
	}
	l.images.Add(int64(len(idx)))
	l.batches.Add(1)
	l.work.Add(int64(time.Since(t)))
	return b
}

// Recycle gives a batch back to the loader for reuse, sparing an allocation;
// the caller must not use b afterwards. Recycling is optional, and a batch
// from another loader is ignored.
func (l *Loader) Recycle(b *Batch) {
	if b != nil && b.Raw != nil {
		if l.raw != nil { // set before any raw batch was made
			l.raw.put(b)
		}
		return
	}
	l.pool.put(b)
}

// batchPool keeps batches of a fixed number of rows, imageLen values each,
// for reuse; or raw batches of rows images, rawLen bytes and paramLen
// parameters each.
type batchPool struct {
	free           chan *Batch
	rows, imageLen int
	rawLen         int // bytes per image of a raw batch; 0 in a pool of rendered batches
	paramLen       int
}

// rawWords is the words n raw images take.
func (p batchPool) rawWords(n int) int { return (n*p.rawLen + 3) / 4 }

// newBatchPool returns a pool that keeps up to n batches.
func newBatchPool(n, rows, imageLen int) batchPool {
	return batchPool{free: make(chan *Batch, n), rows: rows, imageLen: imageLen}
}

// get returns a batch of n rows, recycled if one is free.
func (p batchPool) get(n int) *Batch {
	var b *Batch
	select {
	case b = <-p.free:
	default:
		b = &Batch{
			Images: make([]float32, p.rows*p.imageLen),
			Labels: make([]float32, p.rows),
			Index:  make([]int, p.rows),
		}
		if p.rawLen > 0 {
			b.Raw = make([]float32, p.rawWords(p.rows))
			b.Params = make([]float32, p.rows*p.paramLen)
		}
	}
	b.N = n
	b.Images = b.Images[:n*p.imageLen]
	b.Labels = b.Labels[:n]
	b.Index = b.Index[:n]
	if p.rawLen > 0 {
		b.Raw = b.Raw[:p.rawWords(n)]
		b.Params = b.Params[:n*p.paramLen]
	}
	return b
}

// put keeps b for reuse, if it is of the pool's shape and the pool is not
// full.
func (p batchPool) put(b *Batch) {
	if b == nil || cap(b.Images) != p.rows*p.imageLen || cap(b.Labels) != p.rows || cap(b.Index) != p.rows ||
		cap(b.Raw) != p.rawWords(p.rows) || cap(b.Params) != p.rows*p.paramLen {
		return
	}
	b.Images, b.Labels, b.Index = b.Images[:cap(b.Images)], b.Labels[:cap(b.Labels)], b.Index[:cap(b.Index)]
	b.Raw, b.Params = b.Raw[:cap(b.Raw)], b.Params[:cap(b.Params)]
	select {
	case p.free <- b:
	default:
	}
}

// Stats are a loader's cumulative counters, over all its epochs.
type Stats struct {
	// Images and Batches rendered.
	Images, Batches int64
	// Work is the time spent rendering, summed over the workers.
	Work time.Duration
	// Wait is the time the consumer spent waiting for the next batch: near
	// zero when the loader keeps up.
	Wait time.Duration
	// Workers is the number of worker goroutines.
	Workers int
}

// Stats returns the loader's counters so far.
func (l *Loader) Stats() Stats { return l.counters.stats(l.o.Workers) }

// counters are a loader's Stats as they accrue, added to by its workers.
type counters struct {
	images, batches atomic.Int64
	work, wait      atomic.Int64 // nanoseconds
}

// stats returns the counters so far.
func (c *counters) stats(workers int) Stats {
	return Stats{
		Images:  c.images.Load(),
		Batches: c.batches.Load(),
		Work:    time.Duration(c.work.Load()),
		Wait:    time.Duration(c.wait.Load()),
		Workers: workers,
	}
}

// Rate is the loader's own throughput in images/s: images per second of
// rendering time, times the workers that can run at once (at most
// GOMAXPROCS). It is what the loader could sustain if the consumer never
// made it wait.
func (s Stats) Rate() float64 {
	if s.Work <= 0 {
		return 0
	}
	return float64(s.Images) / s.Work.Seconds() * float64(min(s.Workers, runtime.GOMAXPROCS(0)))
}

// String formats the stats for a log line.
func (s Stats) String() string {
	return fmt.Sprintf("%d images in %d batches, %.0f images/s over %d workers, consumer waited %v",
		s.Images, s.Batches, s.Rate(), s.Workers, s.Wait.Round(time.Millisecond))
}
