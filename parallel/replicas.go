package parallel

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
// batch, up to the order of floating-point sums. With one replica it is
// the Runner, and nothing is reduced.
//
// Replica r trains on images [r·n, (r+1)·n) of a global batch of R·n, and
// its dropout masks are those of those images' places in the global batch
// (Options.ImageOffset), so the sequence of images, augmentations and
// masks is the one a single runner would see. Each replica's loss
// gradient is its slice's mean; the groups average over the replicas, so
// the update follows the mean over the global batch.
//
// Each worker hands its gradients to its group's GroupReducer in buckets
// (Options.BucketBytes), as soon as a layer's are final, so a reducer that
// works in the background (NCCL on its stream; the reference on its own
// goroutine) overlaps the reduction with the rest of the backward pass.
type Replicas struct {
	runners []*Runner
	groups  []GroupReducer // one per worker index
	n       int            // images per replica at most
	// total is the number of replicas over every process, first the
	// index of runners[0] among them (Options.TotalReplicas).
	total, first int

	// step is cancelled when a replica's step fails, so that the others,
	// waiting for it in their groups, give up.
	step   context.Context
	cancel context.CancelFunc

	calls               atomic.Int64 // Reduce calls, over all members
	bytes               atomic.Int64 // bytes handed to Reduce, over all members
	blocked, collective atomic.Int64 // nanoseconds, over all members
}

// GroupReducer averages gradients among the members of one group: the
// replicas' devices that hold the same worker's parameters, one member per
// replica. Every member calls Reduce once per bucket, with its replica
// index, its device and its buffers: the same number of tensors of the
// same sizes, the buckets in the same order. When every member has called
// it for a bucket, each member's buffers hold the mean over the members in
// its device's stream order: the device's next work sees it, unless the
// reducer is a Flusher, whose Flush puts it there.
//
// Reduce is called on the member's worker goroutine, the one that owns
// dev; it must return when ctx is done. NCCL (gpu/cuda) and MPI
// (internal/mpi) plug in here; Reference is the in-process reference.
type GroupReducer interface {
	Reduce(ctx context.Context, replica int, dev gpu.Device, grads []gpu.Buffer) error
}

// Flusher is a GroupReducer that finishes on the worker: each member calls
// Flush once per step, after its last bucket and before its update, and
// on return its buffers hold the means of all its buckets.
type Flusher interface {
	Flush(ctx context.Context, replica int, dev gpu.Device) error
}

// AsyncReducer is a GroupReducer that can leave the mean to come, so that
// the rest of the backward pass overlaps the collective (NCCL on a stream
// of its own): ReduceAsync is Reduce without making dev's stream wait for
// the mean, and returns the event that marks it (nil: in place already).
// The replicas call it instead of Reduce, and make the member's device
// wait for every event of the step before its update.
type AsyncReducer interface {
	ReduceAsync(ctx context.Context, replica int, dev gpu.Device, grads []gpu.Buffer) (gpu.Event, error)
}

// CollectiveTimer is a GroupReducer that reports how long its collectives
// were in flight, summed over its members (for each member, the wall time
// during which at least one of its buckets was: from its Reduce call to
// the bucket's mean being ready), since the last call.
type CollectiveTimer interface {
	CollectiveTime() time.Duration
}

// ReducerFactory makes the GroupReducer of one group: worker is the
// worker's index in each replica, devs[k] the device replica k's worker
// owns. A GroupReducer that is an io.Closer is closed with the replicas.
type ReducerFactory func(worker int, devs []gpu.Device) (GroupReducer, error)

// Reference is the in-process reference reduction: each member's tensors
// are downloaded, summed in replica order in float64 on a goroutine of its
// own once the last member's have arrived, divided by the number of
// replicas, and uploaded by Flush. It is exact and deterministic on any
// devices, and the same bits however the gradients are bucketed.
func Reference(_ int, devs []gpu.Device) (GroupReducer, error) { return newReduceGroup(len(devs)), nil }

// DefaultBucketBytes is Options.BucketBytes' default: 1 MiB of gradients.
const DefaultBucketBytes = 1 << 20

// NewReplicas places net on each device list of devs (one replica each,
// every list alike) for global batches of up to o.Batch images, which must
// split evenly over the replicas (over o.TotalReplicas, where other
// processes hold some).
func NewReplicas(net *model.Net, devs [][]gpu.Device, w model.Weights, o Options) (*Replicas, error) {
	R := len(devs)
	if R < 1 {
		return nil, errors.New("parallel: no replicas")
	}
	T := o.TotalReplicas
	if T == 0 && o.FirstReplica == 0 {
		T = R
	}
	if o.FirstReplica < 0 || o.FirstReplica+R > T {
		return nil, fmt.Errorf("parallel: replicas %d to %d of %d", o.FirstReplica, o.FirstReplica+R-1, T)
	}
	if o.Batch%T != 0 {
		return nil, fmt.Errorf("parallel: a batch of %d images does not split evenly over %d replicas", o.Batch, T)
	}
	rs := &Replicas{n: o.Batch / T, total: T, first: o.FirstReplica}
	rs.step, rs.cancel = context.WithCancel(context.Background())
	workers := -1
	for k, d := range devs {
		ro := o
		ro.Batch = rs.n
		ro.ImageOffset = (rs.first + k) * rs.n
		if T > 1 {
			ro.reduce = &replicaReducer{rs: rs, k: k}
		}
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
	if T == 1 {
		return rs, nil
	}
	f := o.Reducers
	if f == nil {
		f = Reference
	}
	for i := range workers {
		gd := make([]gpu.Device, R)
		for k, r := range rs.runners {
			gd[k] = r.workers[i].dev
		}
		g, err := f(i, gd)
		if err != nil {
			rs.Close()
			return nil, fmt.Errorf("parallel: the reducer of worker %d: %w", i, err)
		}
		rs.groups = append(rs.groups, g)
	}
	return rs, nil
}

// R is the number of replicas in this process.
func (rs *Replicas) R() int { return len(rs.runners) }

// Total is the number of replicas over every process (Options.TotalReplicas).
func (rs *Replicas) Total() int { return rs.total }

// Runners returns the replicas' runners, replica 0 first.
func (rs *Replicas) Runners() []*Runner { return rs.runners }

// Net returns the net being run.
func (rs *Replicas) Net() *model.Net { return rs.runners[0].net }

// Close frees every replica's buffers, stops its workers and closes the
// group reducers that can be.
func (rs *Replicas) Close() {
	for _, r := range rs.runners {
		r.Close()
	}
	for _, g := range rs.groups {
		if c, ok := g.(interface{ Close() error }); ok {
			c.Close()
		}
	}
	rs.groups = nil
	if rs.cancel != nil {
		rs.cancel()
	}
}

// each runs f on every replica at once and joins the errors. A replica
// that fails cancels the step, so that the others stop waiting for it in
// their groups; the groups are then reset for the next step.
func (rs *Replicas) each(f func(k int, r *Runner) error) error {
	if len(rs.runners) == 1 {
		return f(0, rs.runners[0])
	}
	errs := make([]error, len(rs.runners))
	var wg sync.WaitGroup
	for k, r := range rs.runners {
		wg.Go(func() {
			if errs[k] = f(k, r); errs[k] != nil {
				rs.cancel()
			}
		})
	}
	wg.Wait()
	err := errors.Join(errs...)
	if rs.step.Err() != nil {
		for _, g := range rs.groups {
			if rg, ok := g.(*reduceGroup); ok {
				rg.reset()
			}
		}
		rs.step, rs.cancel = context.WithCancel(context.Background())
	}
	return err
}

// split is local replica k's part of a global batch of N images: up to n
// images each, in order, the last replicas' parts empty when N is short.
func (rs *Replicas) split(N, k int) (lo, hi int) {
	k += rs.first
	return min(k*rs.n, N), min((k+1)*rs.n, N)
}

// Train runs one training step on the global batch b: each replica its
// slice, concurrently, the gradients averaged, the same update everywhere.
// The result is the global batch's: the mean loss over all its images,
// the errors counted over all of them, the softmax rows in batch order.
func (rs *Replicas) Train(b Batch, lr float32) (Result, error) {
	p, err := rs.Start(b, lr)
	if err != nil {
		return Result{}, err
	}
	return p.Result()
}

// ReplicaStep is a training step of the replicas whose scores have not
// been read back yet (see Pending).
type ReplicaStep struct {
	parts []*Pending
	n     int
}

// Start enqueues one training step on the global batch b, as Runner.Start
// does: b.N must split evenly over the replicas (of every process: each
// trains its replicas' slices).
func (rs *Replicas) Start(b Batch, lr float32) (*ReplicaStep, error) {
	R, T := len(rs.runners), rs.total
	if b.N < 1 || b.N > rs.n*T || b.N%T != 0 {
		return nil, fmt.Errorf("parallel: a training step of %d replicas takes a multiple of %d images up to %d, not %d", T, T, rs.n*T, b.N)
	}
	n := b.N / T
	parts := make([]*Pending, R)
	err := rs.each(func(k int, r *Runner) error {
		g := rs.first + k
		s, err := rs.slice(r, b, g*n, (g+1)*n)
		if err == nil {
			parts[k], err = r.Start(s, lr)
		}
		if err != nil && T > 1 {
			return fmt.Errorf("replica %d: %w", g, err)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &ReplicaStep{parts: parts, n: R * n}, nil
}

// Result reads the step's softmax and losses back from every replica and
// scores the global batch: the part of it this process's replicas trained
// on, where other processes hold replicas (Options.TotalReplicas).
func (p *ReplicaStep) Result() (Result, error) {
	res := make([]Result, len(p.parts))
	for k, q := range p.parts {
		var err error
		if res[k], err = q.Result(); err != nil {
			return Result{}, err
		}
	}
	return merge(res, p.n), nil
}

// merge joins the replicas' results of one batch of n images.
func merge(res []Result, n int) Result {
	if len(res) == 1 {
		return res[0]
	}
	out := Result{N: n}
	for _, x := range res {
		out.Loss += x.Loss * float64(x.N) / float64(n)
		out.Top1 += x.Top1
		out.Top5 += x.Top5
		out.Prob = append(out.Prob, x.Prob...)
	}
	return out
}

// Eval runs the forward pass without dropout on b, each replica on its
// part (the batch need not split evenly), and scores b as Runner.Eval:
// where other processes hold replicas (Options.TotalReplicas), the part of
// b this process's replicas scored (N 0 when b is too short to reach them).
func (rs *Replicas) Eval(b Batch) (Result, error) {
	if b.N < 1 || b.N > rs.n*rs.total {
		return Result{}, fmt.Errorf("parallel: batch of %d images; these replicas take 1 to %d", b.N, rs.n*rs.total)
	}
	res := make([]Result, len(rs.runners))
	err := rs.each(func(k int, r *Runner) error {
		lo, hi := rs.split(b.N, k)
		if lo == hi {
			return nil
		}
		s, err := rs.slice(r, b, lo, hi)
		if err == nil {
			res[k], err = r.Eval(s)
		}
		return err
	})
	if err != nil {
		return Result{}, err
	}
	var used []Result
	n := 0
	for _, x := range res {
		if x.N > 0 {
			used = append(used, x)
			n += x.N
		}
	}
	if len(used) == 0 {
		return Result{}, nil
	}
	return merge(used, n), nil
}

// slice is images [lo, hi) of b, for r.
func (rs *Replicas) slice(r *Runner, b Batch, lo, hi int) (Batch, error) {
	if rs.total == 1 {
		return b, nil
	}
	s := Batch{N: hi - lo}
	if b.Labels != nil {
		if len(b.Labels) < hi {
			return s, fmt.Errorf("parallel: %d labels for %d images", len(b.Labels), b.N)
		}
		s.Labels = b.Labels[lo:hi]
	}
	if b.Raw == nil {
		per := r.net.Input.Len()
		if len(b.Images) != b.N*per {
			return s, fmt.Errorf("parallel: %d image values for %d images of %v", len(b.Images), b.N, r.net.Input)
		}
		s.Images = b.Images[lo*per : hi*per]
		return s, nil
	}
	if r.aug == nil {
		return s, errors.New("parallel: a raw batch before SetAugment")
	}
	a := r.aug.a
	whole := gpu.AugmentShape{N: b.N, C: a.C, Size: a.Size, Crop: r.net.Input.H}
	if len(b.Raw) != whole.SrcLen() || len(b.Params) != whole.ParamsLen() {
		return s, fmt.Errorf("parallel: raw batch of %d images: %d words, %d parameters; want %d and %d", b.N, len(b.Raw), len(b.Params), whole.SrcLen(), whole.ParamsLen())
	}
	s.Raw = sliceBytes(b.Raw, lo*whole.MeanLen(), hi*whole.MeanLen())
	s.Params = b.Params[lo*(3+a.C) : hi*(3+a.C)]
	return s, nil
}

// sliceBytes is bytes [lo, hi) of packed (gpu.PackBytes), packed: a
// subslice when they start and end on words, else repacked.
func sliceBytes(packed []float32, lo, hi int) []float32 {
	if lo%4 == 0 && hi%4 == 0 {
		return packed[lo/4 : hi/4]
	}
	b := make([]uint8, hi-lo)
	for i := range b {
		j := lo + i
		b[i] = uint8(math.Float32bits(packed[j/4]) >> (8 * (j % 4)))
	}
	return gpu.PackBytes(b)
}

// SetAugment prepares every replica to render raw batches (see
// Runner.SetAugment); each renders its own slice.
func (rs *Replicas) SetAugment(a Augment) error {
	for _, r := range rs.runners {
		if err := r.SetAugment(a); err != nil {
			return err
		}
	}
	return nil
}

// Stage stages each replica's slice of the raw global batch b (see
// Runner.Stage).
func (rs *Replicas) Stage(b Batch) error {
	T := rs.total
	if b.N%T != 0 {
		return fmt.Errorf("parallel: a raw batch of %d images does not split evenly over %d replicas", b.N, T)
	}
	n := b.N / T
	for k, r := range rs.runners {
		g := rs.first + k
		s, err := rs.slice(r, b, g*n, (g+1)*n)
		if err == nil {
			err = r.Stage(s)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Staged is the number of batches staged and not yet trained on.
func (rs *Replicas) Staged() int { return rs.runners[0].Staged() }

// Unstage drops the staged batches of every replica.
func (rs *Replicas) Unstage() {
	for _, r := range rs.runners {
		r.Unstage()
	}
}

// Outputs downloads each named layer's output of the last step for the
// first n images of the global batch, from the replicas that computed
// them, in batch order (this process's replicas' images only, where other
// processes hold replicas).
func (rs *Replicas) Outputs(n int, names []string) (map[string][]float32, error) {
	out := map[string][]float32{}
	for k, r := range rs.runners {
		lo, hi := rs.split(n, k)
		if lo == hi {
			continue
		}
		o, err := r.Outputs(hi-lo, names)
		if err != nil {
			return nil, err
		}
		for name, v := range o {
			out[name] = append(out[name], v...)
		}
	}
	return out, nil
}

// Weights downloads replica 0's weights: every replica holds the same.
func (rs *Replicas) Weights() (model.Weights, error) { return rs.runners[0].Weights() }

// Momentum downloads replica 0's momentum: every replica holds the same.
func (rs *Replicas) Momentum() (model.Weights, error) { return rs.runners[0].Momentum() }

// SetWeights uploads w to every replica.
func (rs *Replicas) SetWeights(w model.Weights) error {
	return rs.each(func(_ int, r *Runner) error { return r.SetWeights(w) })
}

// SetMomentum uploads the momentum v to every replica.
func (rs *Replicas) SetMomentum(v model.Weights) error {
	return rs.each(func(_ int, r *Runner) error { return r.SetMomentum(v) })
}

// Step is the number of training steps taken.
func (rs *Replicas) Step() uint64 { return rs.runners[0].Step() }

// SetStep sets every replica's step counter, as a resumed run continues it.
func (rs *Replicas) SetStep(s uint64) {
	for _, r := range rs.runners {
		r.SetStep(s)
	}
}

// MovedBytes returns the bytes moved between the towers' devices of every
// replica since the last call (the reductions not included; see
// ReduceStats), and starts counting afresh.
func (rs *Replicas) MovedBytes() int64 {
	var t int64
	for _, r := range rs.runners {
		t += r.MovedBytes()
	}
	return t
}

// GradientBytes is what each replica hands its groups to reduce in one
// step: every weight and bias gradient, 4 bytes a value.
func (rs *Replicas) GradientBytes() int64 { return 4 * int64(rs.runners[0].net.Params()) }

// ReduceStats is where the reduction's time went, summed over the members
// of every group (R × the workers of a replica) since the last call.
type ReduceStats struct {
	Members int
	Calls   int64 // Reduce calls (buckets)
	Bytes   int64 // gradient bytes handed to Reduce
	// Blocked is the time the workers spent in Reduce and Flush calls:
	// the part of the reduction the backward pass did not hide, waits for
	// slower replicas included.
	Blocked time.Duration
	// Collective is the time the collectives were in flight (for each
	// member, the wall time during which at least one of its buckets was,
	// from its Reduce call to its mean being ready), where the reducers
	// report it (CollectiveTimer); −1 where they do not.
	Collective time.Duration
}

// ReduceStats returns the reduction's statistics since the last call and
// starts counting afresh.
func (rs *Replicas) ReduceStats() ReduceStats {
	st := ReduceStats{Calls: rs.calls.Swap(0), Bytes: rs.bytes.Swap(0), Blocked: time.Duration(rs.blocked.Swap(0))}
	if rs.total > 1 {
		st.Members = len(rs.runners) * len(rs.groups)
	}
	for _, g := range rs.groups {
		t, ok := g.(CollectiveTimer)
		if !ok {
			st.Collective = -1
			break
		}
		st.Collective += t.CollectiveTime()
	}
	return st
}

// workerReducer is what a runner's workers call (Options.reduce).
type workerReducer interface {
	// reduce returns the event that marks the mean, nil when it is in
	// place for the device's next work (see AsyncReducer).
	reduce(ctx context.Context, worker int, dev gpu.Device, grads []gpu.Buffer) (gpu.Event, error)
	flush(ctx context.Context, worker int, dev gpu.Device) error
}

// replicaReducer is replica k's workerReducer: it hands each worker's
// buckets to the worker's group.
type replicaReducer struct {
	rs *Replicas
	k  int
}

// within is ctx, also cancelled when the replicas' step is.
func (rr *replicaReducer) within(ctx context.Context) (context.Context, func()) {
	c, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(rr.rs.step, cancel)
	return c, func() { stop(); cancel() }
}

func (rr *replicaReducer) reduce(ctx context.Context, worker int, dev gpu.Device, grads []gpu.Buffer) (gpu.Event, error) {
	began := time.Now()
	ctx, done := rr.within(ctx)
	defer done()
	var bytes int64
	for _, g := range grads {
		bytes += 4 * int64(g.Len())
	}
	var mean gpu.Event
	var err error
	if a, ok := rr.rs.groups[worker].(AsyncReducer); ok {
		mean, err = a.ReduceAsync(ctx, rr.k, dev, grads)
	} else {
		err = rr.rs.groups[worker].Reduce(ctx, rr.k, dev, grads)
	}
	rr.rs.calls.Add(1)
	rr.rs.bytes.Add(bytes)
	rr.rs.blocked.Add(int64(time.Since(began)))
	return mean, err
}

func (rr *replicaReducer) flush(ctx context.Context, worker int, dev gpu.Device) error {
	f, ok := rr.rs.groups[worker].(Flusher)
	if !ok {
		return nil
	}
	began := time.Now()
	ctx, done := rr.within(ctx)
	defer done()
	err := f.Flush(ctx, rr.k, dev)
	rr.rs.blocked.Add(int64(time.Since(began)))
	return err
}

// bucketer gathers one worker's gradients, in backward order, into
// buckets of about Options.BucketBytes and hands each to the reducer when
// it is full. A nil bucketer (no replicas) does nothing.
type bucketer struct {
	ctx    context.Context
	red    workerReducer
	worker int
	dev    gpu.Device
	bufs   []gpu.Buffer
	bytes  int
	limit  int
	means  []gpu.Event // of the buckets handed over, where the reducer is an AsyncReducer
}

// buckets is wk's bucketer for one step, nil without replicas.
func (r *Runner) buckets(ctx context.Context, wk *worker) *bucketer {
	if r.opt.reduce == nil {
		return nil
	}
	limit := r.opt.BucketBytes
	if limit <= 0 {
		limit = DefaultBucketBytes
	}
	return &bucketer{ctx: ctx, red: r.opt.reduce, worker: slices.Index(r.workers, wk), dev: wk.dev, limit: limit}
}

// add puts gradients that are final into the bucket, and hands the bucket
// over when it is full.
func (b *bucketer) add(grads ...gpu.Buffer) error {
	if b == nil {
		return nil
	}
	for _, g := range grads {
		b.bufs = append(b.bufs, g)
		b.bytes += 4 * g.Len()
	}
	if b.bytes < b.limit {
		return nil
	}
	return b.send()
}

func (b *bucketer) send() error {
	if len(b.bufs) == 0 {
		return nil
	}
	mean, err := b.red.reduce(b.ctx, b.worker, b.dev, b.bufs)
	b.bufs, b.bytes = nil, 0
	if mean != nil {
		b.means = append(b.means, mean)
	}
	if err != nil {
		return fmt.Errorf("parallel: reducing the gradients of %s: %w", b.dev.Name(), err)
	}
	return nil
}

// finish hands the last bucket over and waits until every bucket's mean
// is in place: what the update needs.
func (b *bucketer) finish() error {
	if b == nil {
		return nil
	}
	if err := b.send(); err != nil {
		return err
	}
	if err := b.red.flush(b.ctx, b.worker, b.dev); err != nil {
		return fmt.Errorf("parallel: reducing the gradients of %s: %w", b.dev.Name(), err)
	}
	for _, e := range b.means {
		if err := b.dev.Wait(e); err != nil {
			return fmt.Errorf("parallel: waiting for the gradients' mean on %s: %w", b.dev.Name(), err)
		}
	}
	b.means = nil
	return nil
}

// reduceGroup is the reference GroupReducer (Reference). Each member's
// Reduce downloads its bucket and registers it; the last member of a
// bucket starts its average on a goroutine; Flush waits for the member's
// buckets and uploads their means. The last member to flush readies the
// group for the next step.
type reduceGroup struct {
	mu         sync.Mutex
	buckets    []*groupBucket // this step's, in call order
	next       []int          // per member: the index of its next bucket
	flushed    int
	collective time.Duration
}

// groupBucket is one bucket of one step, every member's.
type groupBucket struct {
	members []member
	arrived int
	mean    [][]float32 // per tensor, the mean, once done is closed
	err     error
	ready   time.Time // when the mean was done
	done    chan struct{}
}

type member struct {
	grads []gpu.Buffer
	host  [][]float32 // the member's gradients, downloaded
	t0    time.Time   // when the member called Reduce
}

func newReduceGroup(R int) *reduceGroup {
	return &reduceGroup{next: make([]int, R)}
}

// reset readies the group for the next step after a failed one.
func (g *reduceGroup) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.buckets, g.flushed = nil, 0
	clear(g.next)
}

// Reduce runs on replica k's worker goroutine, which owns dev.
func (g *reduceGroup) Reduce(ctx context.Context, k int, dev gpu.Device, grads []gpu.Buffer) error {
	t0 := time.Now()
	host := make([][]float32, len(grads))
	for i, b := range grads {
		host[i] = make([]float32, b.Len())
		if err := dev.Download(host[i], b); err != nil {
			return err
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	R := len(g.next)
	i := g.next[k]
	g.next[k]++
	if i == len(g.buckets) {
		g.buckets = append(g.buckets, &groupBucket{members: make([]member, R), done: make(chan struct{})})
	}
	b := g.buckets[i]
	b.members[k] = member{grads: grads, host: host, t0: t0}
	if b.arrived++; b.arrived == R {
		go func() {
			b.mean, b.err = average(b.members)
			b.ready = time.Now()
			close(b.done)
		}()
	}
	return nil
}

// Flush waits for replica k's buckets of this step and uploads their
// means into its buffers.
func (g *reduceGroup) Flush(ctx context.Context, k int, dev gpu.Device) error {
	g.mu.Lock()
	bs := g.buckets[:g.next[k]]
	g.mu.Unlock()
	// inFlight is the wall time at least one of the member's buckets was
	// in flight: the union of the spans from its call to its mean.
	var inFlight time.Duration
	var end time.Time
	for _, b := range bs {
		select {
		case <-b.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if b.err != nil {
			return b.err
		}
		m := b.members[k]
		for i, buf := range m.grads {
			if err := dev.Upload(buf, b.mean[i]); err != nil {
				return err
			}
		}
		if from := m.t0; b.ready.After(end) {
			if from.Before(end) {
				from = end
			}
			inFlight += b.ready.Sub(from)
			end = b.ready
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.collective += inFlight
	if g.flushed++; g.flushed == len(g.next) {
		g.buckets, g.flushed = nil, 0
		clear(g.next)
	}
	return nil
}

// CollectiveTime is the time the group's buckets were in flight, summed
// over members, since the last call.
func (g *reduceGroup) CollectiveTime() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.collective
	g.collective = 0
	return t
}

// average sums every member's tensors in replica order in float64 and
// divides by the number of replicas.
func average(members []member) ([][]float32, error) {
	first := members[0].host
	mean := make([][]float32, len(first))
	R := float64(len(members))
	for i := range first {
		for _, m := range members[1:] {
			if len(m.host) != len(first) || len(m.host[i]) != len(first[i]) {
				return nil, errors.New("parallel: replicas reduce gradients of different shapes")
			}
		}
		mean[i] = make([]float32, len(first[i]))
		for j := range first[i] {
			var s float64
			for _, m := range members {
				s += float64(m.host[i][j])
			}
			mean[i][j] = float32(s / R)
		}
	}
	return mean, nil
}
