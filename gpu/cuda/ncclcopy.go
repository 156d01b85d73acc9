package cuda

import (
	"context"
	"fmt"

	"github.com/alexnet-go/trainer/gpu"
)

// The device-copy reduction of an NCCLGroup whose Devices share one GPU
// and NCCL will not take them: replica 0's stream does the whole
// reduction, reading the other replicas' tensors in place (one GPU, one
// address space) once their streams have produced them.
//
//	mean_i = ((g0_i + g1_i) + g2_i + …) · (1/R)
//
// summed in replica order in float32 (add_inplace), scaled by the
// float32 nearest 1/R (dropout_backward: dx = dy·mask, with a mask of
// 1/R), then copied into every other replica's tensor. Every replica gets
// the same bits.

// copyRound is one Reduce call of every replica: the rendezvous of the
// device-copy reduction.
type copyRound struct {
	arrived int
	ready   chan struct{} // closed when every replica has arrived
	final   []gpu.Event   // replica k's event after its gradients (k > 0)
	grads   [][]gpu.Buffer
	done    chan struct{} // closed when replica 0 has enqueued the mean
	mean    gpu.Event     // on replica 0's stream, after the copies back
	err     error
}

func newCopyRound(R int) *copyRound {
	return &copyRound{ready: make(chan struct{}), done: make(chan struct{}), final: make([]gpu.Event, R), grads: make([][]gpu.Buffer, R)}
}

// copyReduce is ReduceAsync with device copies: it returns the event
// after the mean on replica 0's stream (nil for replica 0 itself, whose
// stream computes it, and for a group of one).
func (g *NCCLGroup) copyReduce(ctx context.Context, k int, grads []gpu.Buffer) (gpu.Event, error) {
	R := len(g.devs)
	if R == 1 {
		return nil, nil
	}
	d := g.devs[k]
	var final gpu.Event
	if k > 0 {
		var err error
		if final, err = d.Record(); err != nil {
			return nil, err
		}
	}
	g.mu.Lock()
	r := g.round
	r.final[k], r.grads[k] = final, grads
	if r.arrived++; r.arrived == R {
		g.round = newCopyRound(R)
		close(r.ready)
	}
	g.mu.Unlock()
	if k == 0 {
		select {
		case <-r.ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("cuda: %s waiting for the other replicas' gradients: %w", d.name, ctx.Err())
		}
		r.mean, r.err = g.average(r)
		close(r.done)
		return nil, r.err
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("cuda: %s waiting for the mean of the gradients: %w", d.name, ctx.Err())
	}
	return r.mean, r.err
}

// average enqueues the reduction of r on replica 0's stream and returns
// the event after it.
func (g *NCCLGroup) average(r *copyRound) (gpu.Event, error) {
	d0, R := g.devs[0], len(g.devs)
	n0 := r.grads[0]
	most := 0
	for k, gs := range r.grads {
		if len(gs) != len(n0) {
			return nil, fmt.Errorf("cuda: replica %d reduces %d tensors, replica 0 %d", k, len(gs), len(n0))
		}
		for i, b := range gs {
			if b.Len() != n0[i].Len() {
				return nil, fmt.Errorf("cuda: replica %d's tensor %d holds %d values, replica 0's %d", k, i, b.Len(), n0[i].Len())
			}
			most = max(most, b.Len())
		}
	}
	if err := g.scale(most, float32(1/float64(R))); err != nil {
		return nil, err
	}
	for k := 1; k < R; k++ {
		if err := d0.Wait(r.final[k]); err != nil {
			return nil, err
		}
	}
	for i, y := range n0 {
		n := y.Len()
		if n == 0 {
			continue
		}
		for k := 1; k < R; k++ {
			if err := d0.Add(y, r.grads[k][i], n); err != nil {
				return nil, err
			}
		}
		if err := d0.DropoutBackward(y, y, g.mask, n); err != nil {
			return nil, err
		}
		for k := 1; k < R; k++ {
			if err := d0.CopyPeer(r.grads[k][i], y); err != nil {
				return nil, err
			}
		}
	}
	return d0.Record()
}

// scale makes g.mask hold at least n copies of s on replica 0's Device.
func (g *NCCLGroup) scale(n int, s float32) error {
	if g.mask != nil && g.mask.Len() >= n {
		return nil
	}
	d0 := g.devs[0]
	if g.mask != nil {
		d0.Free(g.mask)
		g.mask = nil
	}
	m, err := d0.Alloc(n)
	if err != nil {
		return err
	}
	if err := d0.Fill(m, s); err != nil {
		d0.Free(m)
		return err
	}
	g.mask = m
	return nil
}
