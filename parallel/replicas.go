package parallel

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/model"
)

// Replicas is data parallelism over model-parallel replicas: R copies of
// the net, each placed on its own devices as a Runner places one (a
// two-tower net on a pair), each training on its slice of every global
// batch. Before the update, the gradients of each tower are averaged among
// the replicas' devices that hold that tower (independent groups, one per
// worker of a replica), so every replica applies the same update and the
// weights stay equal: the step a single runner would take on the whole
// batch, up to the order of floating-point sums.
//
// Replica r trains on images [r·n, (r+1)·n) of a global batch of R·n, and
// its dropout masks are those of those images' places in the global batch
// (Options.ImageOffset), so the sequence of images, augmentations and
// masks is the one a single runner would see.
//
// The reduction here is the in-process reference: each tensor is
// downloaded from every replica, summed in replica order in float64,
// divided by R and uploaded to every replica. It is exact and
// deterministic on any devices; GPU collectives (NCCL) replace it where
// they are available.
type Replicas struct {
	runners []*Runner
	groups  []*reduceGroup // one per worker index
	n       int            // images per replica at most
}

// NewReplicas places net on each device list of devs (one replica each,
// every list alike) for global batches of up to o.Batch images, which must
// split evenly over the replicas.
func NewReplicas(net *model.Net, devs [][]gpu.Device, w model.Weights, o Options) (*Replicas, error) {
	R := len(devs)
	if R < 1 {
		return nil, errors.New("parallel: no replicas")
	}
	if o.Batch%R != 0 {
		return nil, fmt.Errorf("parallel: a batch of %d images does not split evenly over %d replicas", o.Batch, R)
	}
	rs := &Replicas{n: o.Batch / R}
	workers := -1
	for k, d := range devs {
		ro := o
		ro.Batch = rs.n
		ro.ImageOffset = k * rs.n
		ro.Reduce = rs.reduce(k)
		r, err := New(net, d, w, ro)
		if err != nil {
			rs.Close()
			return nil, err
		}
		rs.runners = append(rs.runners, r)
		if workers >= 0 && len(r.workers) != workers {
			rs.Close()
			return nil, fmt.Errorf("parallel: replica %d has %d workers, replica 0 %d: give every replica the same placement", k, len(r.workers), workers)
		}
		workers = len(r.workers)
	}
	for range workers {
		rs.groups = append(rs.groups, newReduceGroup(R))
	}
	return rs, nil
}

// Runners returns the replicas' runners, replica 0 first.
func (rs *Replicas) Runners() []*Runner { return rs.runners }

// Close frees every replica's buffers and stops its workers.
func (rs *Replicas) Close() {
	for _, r := range rs.runners {
		r.Close()
	}
}

// Train runs one training step on the global batch b: each replica its
// slice, concurrently, the gradients averaged, the same update everywhere.
// The result is the global batch's: the mean loss over all its images,
// the errors counted over all of them, the softmax rows in batch order.
func (rs *Replicas) Train(b Batch, lr float32) (Result, error) {
	R := len(rs.runners)
	if b.N != rs.n*R {
		return Result{}, fmt.Errorf("parallel: a step of %d replicas takes %d images, not %d", R, rs.n*R, b.N)
	}
	per := len(b.Images) / b.N
	res := make([]Result, R)
	errs := make([]error, R)
	var wg sync.WaitGroup
	for k, r := range rs.runners {
		lo, hi := k*rs.n, (k+1)*rs.n
		slice := Batch{N: rs.n, Images: b.Images[lo*per : hi*per]}
		if b.Labels != nil {
			slice.Labels = b.Labels[lo:hi]
		}
		wg.Go(func() { res[k], errs[k] = r.Train(slice, lr) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, g := range rs.groups {
			g.reset()
		}
		return Result{}, err
	}
	out := Result{N: b.N}
	for _, x := range res {
		out.Loss += x.Loss * float64(x.N) / float64(b.N)
		out.Top1 += x.Top1
		out.Top5 += x.Top5
		out.Prob = append(out.Prob, x.Prob...)
	}
	return out, nil
}

// reduce is replica k's Options.Reduce.
func (rs *Replicas) reduce(k int) func(ctx context.Context, worker int, dev gpu.Device, grads []gpu.Buffer) error {
	return func(ctx context.Context, worker int, dev gpu.Device, grads []gpu.Buffer) error {
		return rs.groups[worker].reduce(ctx, k, dev, grads)
	}
}

// reduceGroup averages the gradients of one worker index across the
// replicas: each member brings its device and buffers and waits; the last
// to arrive sums, and every member uploads the mean into its own buffers.
type reduceGroup struct {
	mu      sync.Mutex
	members []member
	arrived int
	mean    [][]float32 // per tensor, the mean, once all have arrived
	done    chan struct{}
	err     error
}

type member struct {
	dev   gpu.Device
	grads []gpu.Buffer
	host  [][]float32 // the member's gradients, downloaded
}

func newReduceGroup(R int) *reduceGroup {
	return &reduceGroup{members: make([]member, R), done: make(chan struct{})}
}

// reset readies the group for the next step after a failed one.
func (g *reduceGroup) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.arrived, g.mean, g.err = 0, nil, nil
	g.done = make(chan struct{})
}

// reduce runs on replica k's worker goroutine, which owns dev.
func (g *reduceGroup) reduce(ctx context.Context, k int, dev gpu.Device, grads []gpu.Buffer) error {
	host := make([][]float32, len(grads))
	for i, b := range grads {
		host[i] = make([]float32, b.Len())
		if err := dev.Download(host[i], b); err != nil {
			return err
		}
	}
	g.mu.Lock()
	g.members[k] = member{dev: dev, grads: grads, host: host}
	g.arrived++
	done := g.done
	if g.arrived == len(g.members) {
		g.mean, g.err = g.average()
		close(done)
	}
	g.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	mean, err := g.mean, g.err
	g.mu.Unlock()
	if err != nil {
		return err
	}
	for i, b := range grads {
		if err := dev.Upload(b, mean[i]); err != nil {
			return err
		}
	}
	// The last member to take the mean readies the group for the next step.
	g.mu.Lock()
	if g.arrived--; g.arrived == 0 {
		g.mean = nil
		g.done = make(chan struct{})
	}
	g.mu.Unlock()
	return nil
}

// average sums every member's tensors in replica order in float64 and
// divides by the number of replicas.
func (g *reduceGroup) average() ([][]float32, error) {
	first := g.members[0].host
	mean := make([][]float32, len(first))
	R := float64(len(g.members))
	for i := range first {
		for _, m := range g.members[1:] {
			if len(m.host) != len(first) || len(m.host[i]) != len(first[i]) {
				return nil, errors.New("parallel: replicas reduce gradients of different shapes")
			}
		}
		mean[i] = make([]float32, len(first[i]))
		for j := range first[i] {
			var s float64
			for _, m := range g.members {
				s += float64(m.host[i][j])
			}
			mean[i][j] = float32(s / R)
		}
	}
	return mean, nil
}
