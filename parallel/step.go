package parallel

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/model"
)

// Batch is one step's input: rendered images, or a raw batch (Raw and
// Params) that the devices render as SetAugment says.
type Batch struct {
	N      int
	Images []float32 // (N, C, H, W), preprocessed; empty in a raw batch
	Labels []float32 // (N) class indices; nil when there are none
	// Raw holds a raw batch's source bytes, N·C·Size·Size packed four per
	// word (gpu.PackBytes), and Params each image's gpu.Ops.Augment
	// parameters, (N, 3+C).
	Raw, Params []float32
}

// Result is what a step computed.
type Result struct {
	N          int
	Loss       float64   // the mean cross-entropy
	Top1, Top5 int       // images whose label is not the top class, not in the top 5
	Prob       []float32 // (N, Classes) the softmax
}

// Train runs one training step on b: forward with dropout, backward, and the
// SGD update with learning rate lr. It is Start followed by Result.
func (r *Runner) Train(b Batch, lr float32) (Result, error) {
	p, err := r.Start(b, lr)
	if err != nil {
		return Result{}, err
	}
	return p.Result()
}

// Pending is a training step whose scores have not been read back yet.
// The step's softmax and losses are copied on the device after its last
// kernel, so reading them back waits for nothing but that step; the
// runner keeps Slots steps' scores, and reads a step's back itself before
// a later step would overwrite them.
type Pending struct {
	r      *Runner
	k, n   int
	labels []float32
	done   bool
	res    Result
	err    error
}

// Start enqueues one training step on b, as Train, and returns without
// reading anything back from the devices: on a GPU the step may still be
// running. A raw batch is taken from the staging slots (Stage), or staged
// first if none is. Result reads the step's scores back; call it after
// staging and starting what comes next, and from the goroutine that
// calls Start.
func (r *Runner) Start(b Batch, lr float32) (*Pending, error) {
	if err := r.check(b, true); err != nil {
		return nil, err
	}
	var sl *slot
	if b.Raw != nil {
		var err error
		if sl, err = r.take(b); err != nil {
			return nil, err
		}
	}
	k := r.outNext
	if p := r.pending[k]; p != nil {
		p.resolve() // before this step overwrites its scores
	}
	r.stepLabels = r.labels
	if sl != nil {
		r.stepLabels = sl.labels
	}
	r.step++
	err := r.all(func(ctx context.Context, wk *worker) error {
		if err := r.awaitSlot(wk, sl); err != nil {
			return err
		}
		if err := r.forward(ctx, wk, b, sl, true, nil); err != nil {
			return err
		}
		if err := r.backward(ctx, wk, b.N, lr); err != nil {
			return err
		}
		if err := r.releaseSlot(wk, sl); err != nil {
			return err
		}
		if r.logits.w != wk {
			return nil
		}
		d := wk.dev
		return first(d.Copy(r.probOut[k], r.prob), d.Copy(r.lossOut[k], r.loss))
	})
	if err != nil {
		return nil, err
	}
	p := &Pending{r: r, k: k, n: b.N, labels: append([]float32(nil), b.Labels...)}
	r.pending[k] = p
	r.outNext = (k + 1) % Slots
	return p, nil
}

// Result reads the step's softmax and losses back and scores them.
func (p *Pending) Result() (Result, error) {
	p.resolve()
	return p.res, p.err
}

func (p *Pending) resolve() {
	if p.done {
		return
	}
	p.done = true
	r := p.r
	if r.pending[p.k] == p {
		r.pending[p.k] = nil
	}
	prob := make([]float32, p.n*r.net.Classes)
	loss := make([]float32, p.n)
	p.err = r.onWorker(r.logits.w, func() error {
		d := r.logits.dev
		return first(d.Download(prob, r.probOut[p.k]), d.Download(loss, r.lossOut[p.k]))
	})
	if p.err == nil {
		p.res = r.score(prob, loss, p.labels)
	}
}

// score is a step's Result from its softmax, losses and labels.
func (r *Runner) score(prob, loss, labels []float32) Result {
	res := Result{N: len(loss), Prob: prob}
	if labels == nil {
		return res
	}
	for i, l := range loss {
		res.Loss += float64(l)
		top1, top5 := Rank(prob[i*r.net.Classes:(i+1)*r.net.Classes], int(labels[i]))
		if !top1 {
			res.Top1++
		}
		if !top5 {
			res.Top5++
		}
	}
	res.Loss /= float64(len(loss))
	return res
}

// Eval runs the forward pass without dropout and scores b's labels if any.
func (r *Runner) Eval(b Batch) (Result, error) {
	if err := r.check(b, false); err != nil {
		return Result{}, err
	}
	var sl *slot
	if b.Raw != nil {
		var err error
		if sl, err = r.take(b); err != nil {
			return Result{}, err
		}
	}
	r.stepLabels = r.labels
	if sl != nil {
		r.stepLabels = sl.labels
	}
	var res Result
	err := r.all(func(ctx context.Context, wk *worker) error {
		if err := r.awaitSlot(wk, sl); err != nil {
			return err
		}
		if err := r.forward(ctx, wk, b, sl, false, &res); err != nil {
			return err
		}
		return r.releaseSlot(wk, sl)
	})
	return res, err
}

// Outputs downloads each named layer's output of the last step, N images
// of it: (N, C, H, W), or (N, features) for fully-connected layers.
func (r *Runner) Outputs(n int, names []string) (map[string][]float32, error) {
	out := map[string][]float32{}
	for _, name := range names {
		var nd *node
		for _, c := range r.nodes {
			if c.l.Name == name {
				nd = c
			}
		}
		if nd == nil {
			return nil, fmt.Errorf("parallel: net %s has no layer %q", r.net.Name, name)
		}
		v := make([]float32, n*nd.l.Out.Len())
		if err := r.onWorker(nd.w, func() error { return nd.dev.Download(v, nd.y) }); err != nil {
			return nil, err
		}
		if r.reluInLRN(nd) { // y is stored before the ReLU
			for i, x := range v {
				v[i] = max(x, 0)
			}
		}
		out[name] = v
	}
	return out, nil
}

func (r *Runner) onWorker(wk *worker, f func() error) error {
	done := make(chan error, 1)
	wk.jobs <- func() { done <- f() }
	return <-done
}

func (r *Runner) check(b Batch, needLabels bool) error {
	in := r.net.Input
	switch {
	case b.N < 1 || b.N > r.batch:
		return fmt.Errorf("parallel: batch of %d images; this runner takes 1 to %d", b.N, r.batch)
	case b.Raw == nil && len(b.Images) != b.N*in.Len():
		return fmt.Errorf("parallel: %d image values for %d images of %v", len(b.Images), b.N, in)
	case b.Raw != nil && r.aug == nil:
		return errors.New("parallel: a raw batch before SetAugment")
	case b.Raw != nil && (len(b.Raw) != r.augmentShape(b.N).SrcLen() || len(b.Params) != r.augmentShape(b.N).ParamsLen() || len(b.Images) != 0):
		s := r.augmentShape(b.N)
		return fmt.Errorf("parallel: raw batch of %d images: %d words, %d parameters, %d image values; want %d, %d and none",
			b.N, len(b.Raw), len(b.Params), len(b.Images), s.SrcLen(), s.ParamsLen())
	case needLabels && len(b.Labels) != b.N:
		return fmt.Errorf("parallel: %d labels for %d images", len(b.Labels), b.N)
	}
	for _, l := range b.Labels {
		if l < 0 || int(l) >= r.net.Classes || l != float32(int(l)) {
			return fmt.Errorf("parallel: label %g outside the net's %d classes", l, r.net.Classes)
		}
	}
	return nil
}

// dropoutOffset shifts a layer's mask to the runner's place in a batch
// that replicas split: gpu.DropoutKeep(seed, i) draws from seed + (i+1)·γ,
// so seed + o·γ draws for element i what seed draws for element o + i.
func (r *Runner) dropoutOffset(features int) uint64 {
	return uint64(r.opt.ImageOffset*features) * 0x9E3779B97F4A7C15
}

// dropoutSeed gives every (step, layer) its own mask, the same on any
// placement.
func (r *Runner) dropoutSeed(idx int) uint64 {
	z := r.opt.Seed ^ (r.step * 0x9E3779B97F4A7C15) ^ (uint64(idx) * 0xD1B54A32D192ED03)
	z = (z ^ (z >> 29)) * 0xBF58476D1CE4E5B9
	return z ^ (z >> 32)
}

// forward runs wk's share of the forward pass, rendering the image from
// slot sl if b is raw; the logits' worker also computes the softmax and,
// when res is not nil, reads it back and scores it into res.
func (r *Runner) forward(ctx context.Context, wk *worker, b Batch, sl *slot, train bool, res *Result) error {
	d := wk.dev
	for _, in := range r.inputs {
		if in.w == wk {
			var err error
			if sl != nil {
				err = r.render(in, sl, b.N)
			} else {
				err = d.Upload(in.y, b.Images)
			}
			if err != nil {
				return err
			}
			for _, e := range in.sends { // to the streams sharing this GPU
				if err := r.send(e); err != nil {
					return err
				}
			}
		}
	}
	got := map[*edge]bool{}
	for _, n := range r.nodes {
		if n.w != wk {
			continue
		}
		for _, in := range n.ins {
			if in.edge != nil && !got[in.edge] {
				if err := recv(ctx, in.edge); err != nil {
					return err
				}
				got[in.edge] = true
			}
		}
		began := time.Now()
		if err := r.timed(d, &n.fmarks, func() error { return r.forwardNode(n, b.N, train) }); err != nil {
			return fmt.Errorf("parallel: %s on %s: %w", n.l.Name, d.Name(), err)
		}
		n.fwd += time.Since(began)
		for _, e := range n.sends {
			if err := r.send(e); err != nil {
				return err
			}
		}
	}
	if r.logits.w != wk {
		return nil
	}
	if sl == nil {
		labels := make([]float32, b.N)
		copy(labels, b.Labels)
		if err := d.Upload(r.stepLabels, labels); err != nil {
			return err
		}
	}
	s := gpu.SoftmaxShape{N: b.N, Classes: r.net.Classes}
	if err := d.SoftmaxCrossEntropy(r.prob, r.loss, r.logits.y, r.stepLabels, s); err != nil {
		return fmt.Errorf("parallel: softmax on %s: %w", d.Name(), err)
	}
	if res == nil {
		return nil
	}
	prob := make([]float32, b.N*r.net.Classes)
	if err := d.Download(prob, r.prob); err != nil {
		return err
	}
	if b.Labels == nil {
		*res = Result{N: b.N, Prob: prob}
		return nil
	}
	loss := make([]float32, b.N)
	if err := d.Download(loss, r.loss); err != nil {
		return err
	}
	*res = r.score(prob, loss, b.Labels)
	return nil
}

// Rank reports whether label is the most probable class, and whether it is
// among the five most probable. A class tied with the label counts against
// it, so a constant output scores as wrong.
func Rank(prob []float32, label int) (top1, top5 bool) {
	p := prob[label]
	if math.IsNaN(float64(p)) {
		return false, false
	}
	above := 0
	for c, q := range prob {
		if c != label && (q >= p || math.IsNaN(float64(q))) {
			above++
		}
	}
	return above == 0, above < 5
}

func (r *Runner) forwardNode(n *node, N int, train bool) error {
	d, l := n.dev, n.l
	x := n.ins[0].buf
	if len(n.ins) > 1 {
		if err := d.Concat(n.xcat, n.inBufs(), n.concatShape(N)); err != nil {
			return err
		}
		x = n.xcat
	}
	cnt := N * l.Out.Len()
	// A ReLU after a conv or FC layer runs in the bias's pass, or in the
	// LRN's that reads the layer (then y is stored before the ReLU).
	relu, reluInLRN := l.ReLU, r.reluInLRN(n)
	var err error
	switch l.Kind {
	case model.Conv:
		s, bs := convShape(l, N), gpu.BiasShape{N: N, C: l.Filters, Inner: l.Out.H * l.Out.W}
		err = d.Conv(n.y, x, n.wt, s)
		switch {
		case err != nil:
		case relu && !reluInLRN:
			err = d.BiasReLU(n.y, n.b, bs)
		default:
			err = d.AddBias(n.y, n.b, bs)
		}
		relu = false
	case model.Linear:
		ls := gpu.LinearShape{N: N, In: l.In.Len(), Out: l.Filters}
		if relu && !reluInLRN {
			err = d.LinearReLU(n.y, x, n.wt, n.b, ls)
		} else {
			err = d.Linear(n.y, x, n.wt, n.b, ls)
		}
		relu = false
	case model.LRN:
		if len(n.ins) == 1 && r.reluInLRN(n.ins[0].src) {
			err = d.ReLULRN(n.y, x, lrnShape(l, N))
		} else {
			err = d.LRN(n.y, x, lrnShape(l, N))
		}
	case model.Pool:
		err = d.MaxPool(n.y, x, poolShape(l, N))
	case model.Dropout:
		if train {
			err = d.Dropout(n.y, n.mask, x, gpu.DropoutShape{N: cnt, P: l.P, Seed: r.dropoutSeed(n.idx) + r.dropoutOffset(l.Out.Len())})
		} else {
			err = d.Copy(n.y, x)
		}
	}
	if err == nil && relu {
		err = d.ReLU(n.y, n.y, cnt)
	}
	if err == nil && l.Tanh {
		err = d.Tanh(n.y, n.y, cnt)
	}
	return err
}

// backward runs wk's share of the backward pass and updates its weights:
// every layer's weights and biases of the device in one SGDMulti call at
// the end (one kernel launch on a GPU, not two per layer), which gives the
// same bits as updating each layer after its backward pass, since nothing
// reads a layer's weights after it.
//
// A worker that will wait for another device's gradients leaves the
// weight gradients of the layers above that wait (see split) until just
// before it: it sends the input gradients the other device waits for
// first, and computes the weight gradients while the other device
// catches up, rather than idling at the wait. Each is the same call on
// the same buffers as in place, so the bits are the same.
func (r *Runner) backward(ctx context.Context, wk *worker, N int, lr float32) error {
	d := wk.dev
	wk.backward = true
	var ws, vs, dws []gpu.Buffer
	upd := gpu.SGDMultiShape{LR: lr, Momentum: r.opt.Momentum}
	bk := r.buckets(ctx, wk) // nil without replicas
	var later []*node        // layers whose weight gradient is left for later, in backward order
	weightsNow := func(n *node) error {
		began := time.Now()
		if err := r.timed(d, &n.bmarks, func() error { return r.backwardWeights(n, N) }); err != nil {
			return fmt.Errorf("parallel: %s weight gradient on %s: %w", n.l.Name, d.Name(), err)
		}
		n.bwd += time.Since(began)
		return bk.add(n.dw, n.db) // final now: averaged while the backward goes on
	}
	flush := func() error {
		for _, n := range later {
			if err := weightsNow(n); err != nil {
				return err
			}
		}
		later = later[:0]
		return nil
	}
	lastWait := r.lastGradientWait(wk)
	for i := len(r.nodes) - 1; i >= 0; i-- {
		n := r.nodes[i]
		if n.w != wk {
			continue
		}
		if n == r.logits {
			if err := d.SoftmaxCrossEntropyBackward(n.dy, r.prob, r.stepLabels, gpu.SoftmaxShape{N: N, Classes: r.net.Classes}); err != nil {
				return err
			}
		} else if len(n.contribs) == 0 {
			continue // nothing reads this layer
		}
		for k, c := range n.contribs {
			if c.edge != nil {
				if err := flush(); err != nil {
					return err
				}
				if err := recv(ctx, c.edge); err != nil {
					return err
				}
			}
			if len(n.contribs) == 1 {
				break // dy is the contribution itself
			}
			var err error
			if k == 0 {
				err = d.Copy(n.dy, c.buf)
			} else {
				err = d.Add(n.dy, c.buf, N*n.l.Out.Len())
			}
			if err != nil {
				return err
			}
		}
		// The weight gradient waits for the next wait on another
		// device (deferred); or, where nothing is deferred (replicas),
		// it follows the input gradient sent to another device (late),
		// which then overlaps it.
		deferred := i > lastWait && r.split(n)
		late := deferred || (!r.deviceTiming && r.sendsGrad(n))
		if n.wt != nil {
			ws, vs, dws = append(ws, n.wt, n.b), append(vs, n.vw, n.vb), append(dws, n.dw, n.db)
			upd.Sizes = append(upd.Sizes, n.wt.Len(), n.b.Len())
			upd.WeightDecays = append(upd.WeightDecays, r.opt.WeightDecay, 0) // the biases are not decayed
		}
		began := time.Now()
		if err := r.timed(d, &n.bmarks, func() error { return r.backwardNode(n, N, late) }); err != nil {
			return fmt.Errorf("parallel: %s backward on %s: %w", n.l.Name, d.Name(), err)
		}
		n.bwd += time.Since(began)
		for _, e := range n.backs {
			if e != nil {
				if err := r.send(e); err != nil {
					return err
				}
			}
		}
		switch {
		case deferred:
			later = append(later, n)
		case late:
			if err := weightsNow(n); err != nil {
				return err
			}
		case n.wt != nil:
			if err := bk.add(n.dw, n.db); err != nil { // final now: averaged while the backward goes on
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if len(ws) == 0 {
		return nil
	}
	if err := bk.finish(); err != nil {
		return err
	}
	if err := d.SGDMulti(ws, vs, dws, upd); err != nil {
		return fmt.Errorf("parallel: SGD update on %s: %w", d.Name(), err)
	}
	return nil
}

// lastGradientWait is the table index of the last node wk's backward
// pass waits at for another device's gradient (the lowest index): the
// layers above it may leave their weight gradients until that wait
// (backward). It is len(r.nodes), so that none does, when there is no
// such wait, and where a layer's backward must stay one span: with
// device timing on (one pair of marks per layer and pass) or replicas
// (whose buckets are handed over as soon as the gradients are final).
func (r *Runner) lastGradientWait(wk *worker) int {
	if r.deviceTiming || r.opt.reduce != nil {
		return len(r.nodes)
	}
	for i, n := range r.nodes {
		if n.w != wk {
			continue
		}
		for _, c := range n.contribs {
			if c.edge != nil {
				return i
			}
		}
	}
	return len(r.nodes)
}

// split reports whether n's backward pass is calls that can leave the
// weight gradient for later (backwardNode with late): a conv layer, or
// a linear layer without the fused ReLU.
func (r *Runner) split(n *node) bool {
	switch n.l.Kind {
	case model.Conv:
		return true
	case model.Linear:
		return !(n.l.ReLU && !r.reluInLRN(n))
	}
	return false
}

// sendsGrad reports whether n's weight gradient should follow its input
// gradient: it can (split), and another device waits for the input
// gradient.
func (r *Runner) sendsGrad(n *node) bool {
	for _, e := range n.backs {
		if e != nil {
			return r.split(n)
		}
	}
	return false
}

// backwardWeights computes the weight gradient a backwardNode with late
// left out: the same calls on the same buffers, so the same bits.
func (r *Runner) backwardWeights(n *node, N int) error {
	d, l := n.dev, n.l
	x := n.ins[0].buf
	if len(n.ins) > 1 {
		x = n.xcat
	}
	if l.Kind == model.Conv {
		return d.ConvBackwardFilter(n.dw, n.dy, x, convShape(l, N))
	}
	return d.LinearBackwardWeights(n.dw, n.db, n.dy, x, gpu.LinearShape{N: N, In: l.In.Len(), Out: l.Filters})
}

// backwardNode runs n's backward pass: the gradients of its inputs and
// of its parameters; with late, a conv or unfused linear layer's weight
// gradient is left to backwardWeights.
func (r *Runner) backwardNode(n *node, N int, late bool) error {
	d, l := n.dev, n.l
	cnt := N * l.Out.Len()
	// The ReLU's gradient is taken in the bias gradient's pass, or by the
	// LRN that applied the ReLU.
	if l.ReLU && l.Kind != model.Conv && l.Kind != model.Linear {
		if err := d.ReLUBackward(n.dy, n.dy, n.y, cnt); err != nil {
			return err
		}
	}
	if l.Tanh {
		if err := d.TanhBackward(n.dy, n.dy, n.y, cnt); err != nil {
			return err
		}
	}
	x, dx := n.ins[0].buf, n.dxSlots[0]
	if len(n.ins) > 1 {
		x, dx = n.xcat, n.dxcat
	}
	var err error
	switch l.Kind {
	case model.Conv:
		s, bs := convShape(l, N), gpu.BiasShape{N: N, C: l.Filters, Inner: l.Out.H * l.Out.W}
		if l.ReLU && !r.reluInLRN(n) {
			err = d.ReLUBiasBackward(n.dy, n.db, n.dy, n.y, bs)
		} else {
			err = d.BiasBackward(n.db, n.dy, bs)
		}
		if err == nil && !late {
			err = d.ConvBackwardFilter(n.dw, n.dy, x, s)
		}
		if err == nil && dx != nil {
			err = d.ConvBackwardData(dx, n.dy, n.wt, s)
		}
	case model.Linear:
		s := gpu.LinearShape{N: N, In: l.In.Len(), Out: l.Filters}
		if l.ReLU && !r.reluInLRN(n) {
			err = d.LinearReLUBackward(dx, n.dw, n.db, n.dy, x, n.wt, n.y, s)
			break
		}
		if !late {
			err = d.LinearBackwardWeights(n.dw, n.db, n.dy, x, s)
		}
		if err == nil && dx != nil {
			err = d.LinearBackwardData(dx, n.dy, n.wt, s)
		}
	case model.LRN:
		if len(n.ins) == 1 && r.reluInLRN(n.ins[0].src) {
			err = d.ReLULRNBackward(dx, n.dy, x, n.y, lrnShape(l, N))
		} else {
			err = d.LRNBackward(dx, n.dy, x, n.y, lrnShape(l, N))
		}
	case model.Pool:
		err = d.MaxPoolBackward(dx, n.dy, x, n.y, poolShape(l, N))
	case model.Dropout:
		err = d.DropoutBackward(dx, n.dy, n.mask, cnt)
	}
	if err == nil && len(n.ins) > 1 && dx != nil {
		err = d.Split(n.dxSlots, n.dxcat, n.concatShape(N))
	}
	return err
}

// reluInLRN reports whether p's ReLU is left to the LRN that reads it
// (gpu.Ops.ReLULRN): p is a conv or FC layer with a ReLU whose one reader
// is an LRN layer on its device, so p.y is stored before the ReLU.
func (r *Runner) reluInLRN(p *node) bool {
	if !p.l.ReLU || (p.l.Kind != model.Conv && p.l.Kind != model.Linear) || len(p.sends) > 0 ||
		len(p.contribs) != 1 || p.contribs[0].edge != nil {
		return false
	}
	for _, n := range r.nodes {
		if n.l.Kind == model.LRN && len(n.ins) == 1 && n.ins[0].src == p && n.ins[0].edge == nil {
			return true
		}
	}
	return false
}

func (n *node) inBufs() []gpu.Buffer {
	out := make([]gpu.Buffer, len(n.ins))
	for i, in := range n.ins {
		out[i] = in.buf
	}
	return out
}

func (n *node) concatShape(N int) gpu.ConcatShape {
	s := gpu.ConcatShape{N: N}
	for _, in := range n.ins {
		s.Sizes = append(s.Sizes, in.src.l.Out.Len())
	}
	return s
}

func convShape(l *model.Layer, N int) gpu.ConvShape {
	return gpu.ConvShape{N: N, C: l.In.C, H: l.In.H, W: l.In.W, K: l.Filters, R: l.Kernel, S: l.Kernel, Stride: l.Stride, Pad: l.Pad}
}

func lrnShape(l *model.Layer, N int) gpu.LRNShape {
	return gpu.LRNShape{N: N, C: l.In.C, H: l.In.H, W: l.In.W, Size: l.Kernel, Alpha: l.Alpha, Beta: l.Beta, K: l.K}
}

func poolShape(l *model.Layer, N int) gpu.PoolShape {
	return gpu.PoolShape{N: N, C: l.In.C, H: l.In.H, W: l.In.W, Size: l.Kernel, Stride: l.Stride}
}

func first(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// TrainFLOPs is the floating-point work of one training step on n images:
// for every convolution and linear layer the forward pass, the weight
// gradient and, where the input needs one, the input gradient.
func TrainFLOPs(net *model.Net, n int) int64 {
	var t int64
	for _, l := range net.Layers {
		var f int64
		switch l.Kind {
		case model.Conv:
			f = convShape(l, n).FLOPs()
		case model.Linear:
			f = gpu.LinearShape{N: n, In: l.In.Len(), Out: l.Filters}.FLOPs()
		default:
			continue
		}
		passes := int64(3)
		if len(l.Inputs) == 1 && net.Layer(l.Inputs[0]).Kind == model.Input {
			passes = 2
		}
		t += passes * f
	}
	return t
}
