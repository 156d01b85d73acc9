package parallel

import (
	"context"
	"errors"
	"fmt"

	"github.com/alexnet-go/trainer/gpu"
)

// Augment is how the runner turns raw batches (Batch.Raw) into the net's
// input on the devices that hold the first layers: gpu.Ops.Augment cuts,
// reflects, colours and mean-subtracts each image, and the output mean, if
// any, is subtracted after:
//
//	x[n,c,y,x] = ((float32(src[n,c,Y+y,X+x′]) − Mean[c,Y+y,X+x′]) + off[n,c]) − OutputMean[c,y,x]
//
// The crop is the net's input side. A nil mean subtracts nothing, which
// leaves every value's bits as they are.
type Augment struct {
	C, Size    int       // the source images: C×Size×Size bytes
	Mean       []float32 // (C, Size, Size) indexed by source pixel, or nil
	OutputMean []float32 // (C, H, W) of the net's input, indexed by output position, or nil
}

// Slots is the number of batches Stage can hold ahead of the steps that
// train on them: batch n+1 is uploaded while step n computes.
const Slots = 2

// augmenter is a SetAugment's buffers on every device that reads the image.
type augmenter struct {
	a     Augment
	mean  map[*node]gpu.Buffer // (C, Size, Size), zero when a.Mean is nil
	neg   map[*node]gpu.Buffer // −OutputMean, (C·H·W); nil when there is none
	slots [Slots]*slot
	next  int     // the slot the next Stage fills
	queue []*slot // staged, not yet trained on, oldest first
}

// slot is one staged batch: its bytes, parameters and labels on the
// devices.
type slot struct {
	raw, params map[*node]gpu.Buffer // per input node: the packed bytes, (N, 3+C)
	labels      gpu.Buffer           // (N) on the logits' device
	n           int
	// order is, per device that copies with its own stream (gpu.Stager),
	// when the slot's copies are done (ready: the step waits on it) and
	// when the last step that read the slot is done with it (freed: the
	// next copies into it wait on it). Each device's worker touches only
	// its own entry.
	order map[gpu.Device]*slotOrder
}

type slotOrder struct{ ready, freed gpu.Event }

// SetAugment prepares the runner to train on raw batches (Batch.Raw,
// Batch.Params) rendered as a says, allocating Slots staging buffers on
// every device that reads the image. On two streams of one GPU the image
// is rendered once and copied, as an uploaded one is.
func (r *Runner) SetAugment(a Augment) error {
	in := r.net.Input
	switch {
	case r.aug != nil:
		return errors.New("parallel: SetAugment called twice")
	case a.C != in.C || in.H != in.W || a.Size < in.H:
		return fmt.Errorf("parallel: raw images of %d×%d×%d for the net's %v input: want %d channels and a side of at least %d",
			a.C, a.Size, a.Size, in, in.C, in.H)
	case a.Mean != nil && len(a.Mean) != a.C*a.Size*a.Size:
		return fmt.Errorf("parallel: mean of %d values for %d×%d×%d images", len(a.Mean), a.C, a.Size, a.Size)
	case a.OutputMean != nil && len(a.OutputMean) != in.Len():
		return fmt.Errorf("parallel: output mean of %d values for the net's %v input", len(a.OutputMean), in)
	}
	g := &augmenter{a: a, mean: map[*node]gpu.Buffer{}, neg: map[*node]gpu.Buffer{}}
	s := gpu.AugmentShape{N: r.batch, C: a.C, Size: a.Size, Crop: in.H}
	alloc := func(d gpu.Device, n int) (gpu.Buffer, error) {
		b, err := d.Alloc(n)
		if err != nil {
			return nil, fmt.Errorf("parallel: allocating %d values on %s: %w", n, d.Name(), err)
		}
		r.bufs = append(r.bufs, b)
		return b, nil
	}
	for k := range g.slots {
		sl := &slot{raw: map[*node]gpu.Buffer{}, params: map[*node]gpu.Buffer{}, order: map[gpu.Device]*slotOrder{}}
		for _, d := range r.devs {
			if _, ok := d.(gpu.Stager); ok {
				sl.order[d] = &slotOrder{}
			}
		}
		var err error
		for _, in := range r.inputs {
			if sl.raw[in], err = alloc(in.dev, s.SrcLen()); err != nil {
				return err
			}
			if sl.params[in], err = alloc(in.dev, s.ParamsLen()); err != nil {
				return err
			}
		}
		if sl.labels, err = alloc(r.logits.dev, r.batch); err != nil {
			return err
		}
		g.slots[k] = sl
	}
	mean := a.Mean
	if mean == nil {
		mean = make([]float32, s.MeanLen())
	}
	var neg []float32
	if a.OutputMean != nil {
		neg = make([]float32, len(a.OutputMean))
		for i, m := range a.OutputMean {
			neg[i] = -m // x − m and x + (−m) are the same bits
		}
	}
	for _, in := range r.inputs {
		var err error
		if g.mean[in], err = alloc(in.dev, len(mean)); err != nil {
			return err
		}
		if neg != nil {
			if g.neg[in], err = alloc(in.dev, len(neg)); err != nil {
				return err
			}
		}
	}
	err := r.all(func(_ context.Context, wk *worker) error {
		for _, in := range r.inputs {
			if in.w != wk {
				continue
			}
			if err := in.dev.Upload(g.mean[in], mean); err != nil {
				return err
			}
			if neg != nil {
				if err := in.dev.Upload(g.neg[in], neg); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.aug = g
	return nil
}

// augmentShape is Augment's shape for n images.
func (r *Runner) augmentShape(n int) gpu.AugmentShape {
	return gpu.AugmentShape{N: n, C: r.aug.a.C, Size: r.aug.a.Size, Crop: r.net.Input.H}
}

// Stage uploads a raw batch's bytes, parameters and labels into the next
// free staging slot on every device that needs them, ahead of the step
// that trains on it: Train and Eval take the staged batches in order.
// Call it with batch n+1 before training on batch n, so that the copy is
// issued before the step and the host is free to load the batch after:
// on a GPU the upload is enqueued on the device's stream and the call
// returns at once; on the CPU device it copies, in the same order. b's
// memory may be reused once Stage returns. At most Slots batches can be
// staged.
func (r *Runner) Stage(b Batch) error {
	g := r.aug
	if g == nil {
		return errors.New("parallel: Stage before SetAugment")
	}
	if b.Raw == nil {
		return errors.New("parallel: Stage takes raw batches (Batch.Raw)")
	}
	if err := r.check(b, false); err != nil {
		return err
	}
	if len(g.queue) == Slots {
		return fmt.Errorf("parallel: %d batches staged already", Slots)
	}
	sl := g.slots[g.next]
	g.next = (g.next + 1) % Slots
	labels := make([]float32, b.N)
	copy(labels, b.Labels)
	err := r.all(func(_ context.Context, wk *worker) error {
		// A device with a copy stream (gpu.Stager) copies while it
		// computes, after the last step that read the slot; the others
		// upload in order on their stream.
		d := wk.dev
		up := d.Upload
		if st, ok := d.(gpu.Stager); ok {
			o := sl.order[d]
			up = func(dst gpu.Buffer, src []float32) error {
				ev, err := st.StageUpload(dst, src, o.freed)
				if ev != nil {
					o.ready = ev // the copies are in order: the last event covers them all
				}
				return err
			}
		}
		for _, in := range r.inputs {
			if in.w != wk {
				continue
			}
			if err := up(sl.raw[in], b.Raw); err != nil {
				return err
			}
			if err := up(sl.params[in], b.Params); err != nil {
				return err
			}
		}
		if r.logits.w == wk {
			return up(sl.labels, labels)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sl.n = b.N
	g.queue = append(g.queue, sl)
	return nil
}

// Staged is the number of batches staged and not yet trained on.
func (r *Runner) Staged() int {
	if r.aug == nil {
		return 0
	}
	return len(r.aug.queue)
}

// Unstage drops the staged batches: what a loop cut short calls so that
// the next starts afresh.
func (r *Runner) Unstage() {
	if r.aug != nil {
		r.aug.queue = nil
	}
}

// take returns the staged slot for raw batch b, staging b first if none
// is staged.
func (r *Runner) take(b Batch) (*slot, error) {
	g := r.aug
	if g == nil {
		return nil, errors.New("parallel: a raw batch before SetAugment")
	}
	if len(g.queue) == 0 {
		if err := r.Stage(b); err != nil {
			return nil, err
		}
	}
	sl := g.queue[0]
	if sl.n != b.N {
		return nil, fmt.Errorf("parallel: the staged batch has %d images, this one %d: stage batches in the order they are trained on", sl.n, b.N)
	}
	g.queue = g.queue[1:]
	return sl, nil
}

// render writes the staged batch's net input into in.y on in's device.
func (r *Runner) render(in *node, sl *slot, N int) error {
	d, g := in.dev, r.aug
	if err := d.Augment(in.y, sl.raw[in], g.mean[in], sl.params[in], r.augmentShape(N)); err != nil {
		return fmt.Errorf("parallel: augment on %s: %w", d.Name(), err)
	}
	if neg := g.neg[in]; neg != nil {
		if err := d.AddBias(in.y, neg, gpu.BiasShape{N: N, C: neg.Len(), Inner: 1}); err != nil {
			return fmt.Errorf("parallel: mean on %s: %w", d.Name(), err)
		}
	}
	return nil
}

// awaitSlot makes wk's device wait for sl's copies before the step reads
// them (only a device with a copy stream of its own needs to).
func (r *Runner) awaitSlot(wk *worker, sl *slot) error {
	if sl == nil {
		return nil
	}
	if o := sl.order[wk.dev]; o != nil && o.ready != nil {
		return wk.dev.Wait(o.ready)
	}
	return nil
}

// releaseSlot records, on wk's device, that the step has enqueued all its
// reads of sl: the next copies into sl wait for that point.
func (r *Runner) releaseSlot(wk *worker, sl *slot) error {
	if sl == nil {
		return nil
	}
	o := sl.order[wk.dev]
	if o == nil {
		return nil
	}
	ev, err := wk.dev.Record()
	if err != nil {
		return err
	}
	o.ready, o.freed = nil, ev
	return nil
}
