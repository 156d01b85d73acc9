package data

import (
	"context"
	"encoding/binary"
	"fmt"
	"iter"
	"math"
	"time"
	"unsafe"
)

// RawSpec describes the raw batches of a RawBatcher: what a device needs
// to turn them into the network's inputs with gpu.Ops.Augment.
//
// Image j of a raw batch is C·Size·Size source bytes; the device cuts a
// Crop×Crop window at (X, Y), reflects it if Flip, subtracts Mean at the
// source pixel and adds the colour offset (Ops.Augment), then subtracts
// OutputMean at the output position:
//
//	input[c,y,x] = ((float32(src[c,Y+y,X+x′]) − Mean[c,Y+y,X+x′]) + off[c]) − OutputMean[c,y,x]
//
// A nil mean is none: subtracting zero leaves every value as it is, so
// the result is the same bits as the host's rendering (RenderCrop for
// prepared sets, Augment.Render for in-memory ones).
type RawSpec struct {
	C, Size, Crop int
	// Mean is indexed by source pixel (the prepared sets' mean image).
	Mean []float32 // (C, Size, Size), or nil
	// OutputMean is indexed by output position (the in-memory sets' mean
	// image, which Augment.Render subtracts after placing the window).
	OutputMean []float32 // (C, Crop, Crop), or nil
}

// RawLen is the number of source bytes of one image.
func (s RawSpec) RawLen() int { return s.C * s.Size * s.Size }

// RawWords is the number of float32 words n images' bytes occupy, packed
// four per word (gpu.PackBytes).
func (s RawSpec) RawWords(n int) int { return (n*s.RawLen() + 3) / 4 }

// ParamLen is the number of augmentation parameters per image: X, Y,
// Flip and one colour offset per channel (data.AugmentParams).
func (s RawSpec) ParamLen() int { return 3 + s.C }

// RawBatcher is a Batcher that can also hand over its batches as the
// stored bytes with each image's augmentation parameters (Batch.Raw,
// Batch.Params), for the device to render them: uint8 from disk to the
// device, a quarter of the float32 upload, and no rendering on the host.
// The parameters are the same pure function of (Seed, epoch, image) as
// the rendered batches', so rendering a raw batch on the device gives the
// bits EpochFrom delivers.
type RawBatcher interface {
	Batcher
	// Raw returns the shape of the raw batches, or false if this loader
	// cannot deliver them (ten-patch evaluation).
	Raw() (RawSpec, bool)
	// RawEpochFrom is EpochFrom delivering raw batches: Raw, Params,
	// Labels, Index and N are set, Images is empty.
	RawEpochFrom(ctx context.Context, epoch, start int) iter.Seq2[*Batch, error]
}

var (
	_ RawBatcher = (*Loader)(nil)
	_ RawBatcher = (*CropLoader)(nil)
)

// Raw returns the shape of the loader's raw batches: each image zero-padded
// as Augment describes, to a square of side max(H, W, Size) + 2·Pad, from
// which the device cuts the Size×Size window; the mean image is
// subtracted at the output position.
func (l *Loader) Raw() (RawSpec, bool) {
	s, a := l.set, l.o.Augment
	ey, _ := a.axis(s.H, l.size)
	ex, _ := a.axis(s.W, l.size)
	side := l.size + max(ey, ex)
	return RawSpec{C: s.C, Size: side, Crop: l.size, OutputMean: l.o.Mean}, true
}

// RawEpochFrom is EpochFrom delivering raw batches (RawBatcher).
func (l *Loader) RawEpochFrom(ctx context.Context, epoch, start int) iter.Seq2[*Batch, error] {
	spec, _ := l.Raw()
	pool := l.rawPool(spec)
	return runEpoch(ctx, l.Batches(), start, l.o.Workers, l.o.Prefetch, &l.wait, func(int) renderFunc {
		order := l.Order(epoch)
		return func(_, k int) (*Batch, error) { return l.renderRaw(pool, spec, order, epoch, k), nil }
	})
}

// rawPool returns the loader's pool of raw batches, made on first use.
func (l *Loader) rawPool(spec RawSpec) *batchPool {
	l.rawOnce.Do(func() {
		p := newRawPool(l.o.Prefetch+1, l.o.Batch, spec)
		l.raw = &p
	})
	return l.raw
}

// renderRaw fills batch k of the epoch with padded source bytes and
// placements.
func (l *Loader) renderRaw(pool *batchPool, spec RawSpec, order []int, epoch, k int) *Batch {
	t := time.Now()
	lo := k * l.o.Batch
	idx := order[lo:min(lo+l.o.Batch, len(order))]
	b := pool.get(len(idx))
	s, a := l.set, l.o.Augment
	_, oy := a.axis(s.H, l.size)
	_, ox := a.axis(s.W, l.size)
	bytes := rawView(b.Raw, len(idx)*spec.RawLen())
	clear(bytes)
	n, np := spec.RawLen(), spec.ParamLen()
	for j, i := range idx {
		p := a.Draw(s.H, s.W, l.o.Seed, epoch, i)
		dst, img := bytes[j*n:(j+1)*n], s.Image(i)
		for c := range s.C {
			for y := range s.H {
				at := (c*spec.Size+oy+y)*spec.Size + ox
				copy(dst[at:at+s.W], img[(c*s.H+y)*s.W:(c*s.H+y+1)*s.W])
			}
		}
		setParams(b.Params[j*np:(j+1)*np], CropParams{X: p.X, Y: p.Y, Flip: p.Flip}, s.C)
		b.Labels[j] = float32(s.Labels[i])
		b.Index[j] = i
	}
	packTail(b.Raw, bytes)
	l.images.Add(int64(len(idx)))
	l.batches.Add(1)
	l.work.Add(int64(time.Since(t)))
	return b
}

// Raw returns the shape of the loader's raw batches: the stored images,
// the mean subtracted at the source pixel. A ten-patch loader has none.
func (l *CropLoader) Raw() (RawSpec, bool) {
	if l.o.TenCrop {
		return RawSpec{}, false
	}
	return RawSpec{C: l.c, Size: l.size, Crop: l.crop, Mean: l.o.Mean}, true
}

// RawEpochFrom is EpochFrom delivering raw batches (RawBatcher). With
// TenCrop it yields one error.
func (l *CropLoader) RawEpochFrom(ctx context.Context, epoch, start int) iter.Seq2[*Batch, error] {
	spec, ok := l.Raw()
	if !ok {
		return func(yield func(*Batch, error) bool) {
			yield(nil, fmt.Errorf("data: crop loader: ten-patch batches cannot be delivered raw"))
		}
	}
	pool := l.rawPool(spec)
	return runEpoch(ctx, l.Batches(), start, l.o.Workers, l.o.Prefetch, &l.wait, func(int) renderFunc {
		order := l.Order(epoch)
		return func(_, k int) (*Batch, error) { return l.renderRaw(pool, spec, order, epoch, k) }
	})
}

func (l *CropLoader) rawPool(spec RawSpec) *batchPool {
	l.rawOnce.Do(func() {
		p := newRawPool(l.o.Prefetch+1, l.o.Batch, spec)
		l.raw = &p
	})
	return l.raw
}

// renderRaw reads batch k's images straight into the batch and draws
// their patches.
func (l *CropLoader) renderRaw(pool *batchPool, spec RawSpec, order []int, epoch, k int) (*Batch, error) {
	t := time.Now()
	lo := k * l.o.Batch
	idx := order[lo:min(lo+l.o.Batch, len(order))]
	b := pool.get(len(idx))
	bytes := rawView(b.Raw, len(idx)*spec.RawLen())
	n, np := spec.RawLen(), spec.ParamLen()
	for j, i := range idx {
		if err := l.src.Read(i, bytes[j*n:(j+1)*n]); err != nil {
			pool.put(b)
			return nil, err
		}
		setParams(b.Params[j*np:(j+1)*np], l.o.Augment.Draw(l.size, l.o.Seed, epoch, i), l.c)
		b.Labels[j], b.Index[j] = float32(l.src.Label(i)), i
	}
	packTail(b.Raw, bytes)
	l.images.Add(int64(len(idx)))
	l.batches.Add(1)
	l.work.Add(int64(time.Since(t)))
	return b, nil
}

// setParams writes p as gpu.Ops.Augment's parameters of one c-channel
// image: X, Y, Flip (0 or 1), Offset[0..c).
func setParams(dst []float32, p CropParams, c int) {
	dst[0], dst[1], dst[2] = float32(p.X), float32(p.Y), 0
	if p.Flip {
		dst[2] = 1
	}
	copy(dst[3:3+c], p.Offset[:c])
}

// newRawPool returns a pool of up to n raw batches of rows images.
func newRawPool(n, rows int, spec RawSpec) batchPool {
	return batchPool{free: make(chan *Batch, n), rows: rows, rawLen: spec.RawLen(), paramLen: spec.ParamLen()}
}

// littleEndian reports whether the host stores a word's low byte first,
// as gpu.PackBytes packs them.
var littleEndian = func() bool {
	w := uint32(1)
	return *(*byte)(unsafe.Pointer(&w)) == 1
}()

// rawView returns n bytes to write a raw batch's images into: on a
// little-endian host the words' own memory, so that the bytes are packed
// as gpu.PackBytes packs them with no copy; elsewhere a scratch slice that
// packTail copies in.
func rawView(w []float32, n int) []uint8 {
	if 4*len(w) < n {
		panic(fmt.Sprintf("data: %d bytes in %d words", n, len(w)))
	}
	if !littleEndian {
		return make([]uint8, n)
	}
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), 4*len(w))[:n:n]
}

// packTail finishes a raw batch: it zeroes the bytes past the images in
// the last word, and, on a big-endian host, packs the scratch bytes into
// the words.
func packTail(w []float32, b []uint8) {
	if littleEndian {
		all := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), 4*len(w))
		clear(all[len(b):])
		return
	}
	var word [4]uint8
	for k := range w {
		clear(word[:])
		copy(word[:], b[min(4*k, len(b)):min(4*k+4, len(b))])
		w[k] = math.Float32frombits(binary.LittleEndian.Uint32(word[:]))
	}
}
