// Package parallel runs a model.Net on a set of devices: it turns the
// layer table and a placement (one device per tower) into a plan of
// buffers, operations and cross-device transfers, and runs the plan with
// one worker goroutine per device.
//
// Activations cross devices only on the net's cross-tower edges (conv3,
// fc6, fc7, fc8 in AlexNet) and gradients only back along them. The
// producer of a crossing activation pushes it into a buffer on the
// consumer's device, records an event and hands the event to the consumer's
// worker over a channel; the consumer waits on the event before it reads.
// Backwards, the same happens with each consumer's gradient for its remote
// input. When both towers share one device the same plan runs with every
// edge local and nothing moves.
//
// The batch is N images; every buffer is (N, C, H, W) or (N, features) and
// is allocated once for the largest batch.
package parallel

import (
	"fmt"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/model"
)

// node is one layer placed on a device, with its buffers there.
type node struct {
	l   *model.Layer
	idx int // the layer's index in the table: dropout seeds derive from it
	dev gpu.Device
	w   *worker

	ins   []input    // where each input is read from on this device
	xcat  gpu.Buffer // (N, In) the joined input when there are several
	dxcat gpu.Buffer // its gradient
	y     gpu.Buffer // (N, Out)
	dy    gpu.Buffer // (N, Out): the gradient of y, summed over consumers
	mask  gpu.Buffer // dropout: the factor applied to each value

	// parameters, their gradients and their momentum
	wt, b, dw, db, vw, vb gpu.Buffer

	contribs []contrib    // the gradient of y from each consumer, in table order
	sends    []*edge      // forward: copies of y to other devices
	needGrad bool         // whether any consumer needs this node's gradient
	dxSlots  []gpu.Buffer // per input: where this node writes that input's gradient
	backs    []*edge      // per input: the copy back to the producer's device, or nil

	// time spent in this layer's forward and backward passes (the SGD
	// update included), summed over steps; only its worker writes them
	fwd, bwd time.Duration
	// marks are the device-clock marks around this node's calls, not yet
	// read (SetDeviceTiming): forward pairs, then backward pairs.
	fmarks, bmarks [][2]gpu.Mark
}

// input is one input of a node as seen on the node's device.
type input struct {
	src  *node
	buf  gpu.Buffer // the producer's y, or the copy of it on this device
	edge *edge      // non-nil when buf is a copy that arrives from another device
}

// contrib is one consumer's share of a node's output gradient.
type contrib struct {
	buf  gpu.Buffer // on the node's device
	edge *edge      // non-nil when it arrives from another device
}

// edge is one cross-device transfer, made once per step.
type edge struct {
	name     string // e.g. "pool2a→cuda:1" or "∂conv3b/∂pool2a"
	src, dst gpu.Buffer
	from, to *worker
	ready    chan gpu.Event
	spent    time.Duration // issuing the copies, summed over steps; only the producer's worker writes it
	// image marks the copy of the uploaded image to a device sharing the
	// uploader's memory: it replaces a second upload and is not one of the
	// net's cross-tower transfers, so it is not counted as moved.
	image bool
}

func (e *edge) bytes() int64 { return 4 * int64(min(e.src.Len(), e.dst.Len())) }

// build allocates every buffer of the plan and wires the edges.
func (r *Runner) build() error {
	alloc := func(d gpu.Device, n int) (gpu.Buffer, error) {
		b, err := d.Alloc(n)
		if err != nil {
			return nil, fmt.Errorf("parallel: allocating %d values on %s: %w", n, d.Name(), err)
		}
		r.bufs = append(r.bufs, b)
		return b, nil
	}
	N := r.batch
	byName := map[string]*node{}
	// The image goes to every device that has a layer reading it.
	inputs := map[gpu.Device]*node{}
	imageCopies := map[gpu.Device]input{} // the image copied from a device sharing d's memory
	for i, l := range r.net.Layers {
		if l.Kind == model.Input {
			continue
		}
		d := r.devs[l.Tower]
		n := &node{l: l, idx: i, dev: d, w: r.workerOf[d]}
		var err error
		if n.y, err = alloc(d, N*l.Out.Len()); err != nil {
			return err
		}
		for _, name := range l.Inputs {
			src := r.net.Layer(name)
			if src.Kind == model.Input {
				if cp, ok := imageCopies[d]; ok {
					n.ins = append(n.ins, cp)
					continue
				}
				if first := sharedInput(d, inputs); first != nil {
					// Another stream of the same GPU uploads the image;
					// this one gets a copy made on the GPU.
					buf, err := alloc(d, N*src.Out.Len())
					if err != nil {
						return err
					}
					e := &edge{name: fmt.Sprintf("image→%s", d.Name()), src: first.y, dst: buf, from: first.w, to: n.w,
						ready: make(chan gpu.Event, 1), image: true}
					first.sends = append(first.sends, e)
					r.edges = append(r.edges, e)
					cp := input{src: first, buf: buf, edge: e}
					imageCopies[d] = cp
					n.ins = append(n.ins, cp)
					continue
				}
				in, ok := inputs[d]
				if !ok {
					in = &node{l: src, idx: 0, dev: d, w: n.w}
					if in.y, err = alloc(d, N*src.Out.Len()); err != nil {
						return err
					}
					inputs[d] = in
					r.inputs = append(r.inputs, in)
				}
				n.ins = append(n.ins, input{src: in, buf: in.y})
				continue
			}
			p := byName[name]
			if p.dev == d {
				n.ins = append(n.ins, input{src: p, buf: p.y})
				continue
			}
			var e *edge
			for _, s := range p.sends {
				if s.to == n.w {
					e = s
				}
			}
			if e == nil {
				buf, err := alloc(d, N*src.Out.Len())
				if err != nil {
					return err
				}
				e = &edge{name: fmt.Sprintf("%s→%s", p.l.Name, d.Name()), src: p.y, dst: buf, from: p.w, to: n.w, ready: make(chan gpu.Event, 1)}
				p.sends = append(p.sends, e)
				r.edges = append(r.edges, e)
			}
			n.ins = append(n.ins, input{src: p, buf: e.dst, edge: e})
		}
		if len(n.ins) > 1 {
			if n.xcat, err = alloc(d, N*l.In.Len()); err != nil {
				return err
			}
		}
		switch l.Kind {
		case model.Conv, model.Linear:
			for _, b := range []*gpu.Buffer{&n.wt, &n.dw, &n.vw} {
				if *b, err = alloc(d, l.Params()-l.Filters); err != nil {
					return err
				}
			}
			for _, b := range []*gpu.Buffer{&n.b, &n.db, &n.vb} {
				if *b, err = alloc(d, l.Filters); err != nil {
					return err
				}
			}
			if err := d.Fill(n.vw, 0); err != nil {
				return err
			}
			if err := d.Fill(n.vb, 0); err != nil {
				return err
			}
		case model.Dropout:
			if n.mask, err = alloc(d, N*l.Out.Len()); err != nil {
				return err
			}
		}
		byName[l.Name] = n
		r.nodes = append(r.nodes, n)
	}

	r.logits = r.nodes[len(r.nodes)-1]

	// Backward wiring: each input that is not the image gets a gradient slot
	// on the consumer's device; a remote one is copied back to its producer.
	for _, n := range r.nodes {
		n.dxSlots = make([]gpu.Buffer, len(n.ins))
		n.backs = make([]*edge, len(n.ins))
		for j, in := range n.ins {
			if in.src.l.Kind == model.Input {
				continue
			}
			slot, err := alloc(n.dev, N*in.src.l.Out.Len())
			if err != nil {
				return err
			}
			n.dxSlots[j] = slot
			p := in.src
			p.needGrad = true
			if p.dev == n.dev {
				p.contribs = append(p.contribs, contrib{buf: slot})
				continue
			}
			back, err := alloc(p.dev, N*p.l.Out.Len())
			if err != nil {
				return err
			}
			e := &edge{name: fmt.Sprintf("∂%s/∂%s→%s", n.l.Name, p.l.Name, p.dev.Name()), src: slot, dst: back, from: n.w, to: p.w, ready: make(chan gpu.Event, 1)}
			n.backs[j] = e
			r.edges = append(r.edges, e)
			p.contribs = append(p.contribs, contrib{buf: back, edge: e})
		}
		if len(n.ins) > 1 && n.needsInputGrad() {
			var err error
			if n.dxcat, err = alloc(n.dev, N*n.l.In.Len()); err != nil {
				return err
			}
		}
	}
	for _, n := range r.nodes {
		switch {
		case len(n.contribs) == 1:
			n.dy = n.contribs[0].buf
		case n == r.logits || len(n.contribs) > 1:
			var err error
			if n.dy, err = alloc(n.dev, N*n.l.Out.Len()); err != nil {
				return err
			}
		}
	}
	return nil
}

// sharedInput returns the image's input node on a device that shares d's
// memory (two streams of one GPU), if there is one.
func sharedInput(d gpu.Device, inputs map[gpu.Device]*node) *node {
	s, ok := d.(gpu.MemorySharer)
	if !ok {
		return nil
	}
	for other, in := range inputs {
		if s.SharesMemory(other) {
			return in
		}
	}
	return nil
}

func (n *node) needsInputGrad() bool {
	for _, s := range n.dxSlots {
		if s != nil {
			return true
		}
	}
	return false
}
