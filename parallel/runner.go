package parallel

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/model"
)

// Options are the training hyper-parameters the plan needs.
type Options struct {
	Batch       int    // the largest batch a step takes
	Seed        uint64 // dropout masks derive from it, the step and the layer
	Momentum    float32
	WeightDecay float32 // applied to weights, not biases (as cuda-convnet2)
	// ImageOffset is the place of this runner's first image in a larger
	// batch that several runners (replicas) split: a dropout mask is a
	// function of the image's place in that batch, so the replicas draw
	// the masks one runner of the whole batch would.
	ImageOffset int
	// BucketBytes is the size, in bytes of gradients, at which a worker
	// of a replica hands the gradients made final so far to its group's
	// reducer (a bucket: whole layers, in backward order), so that the
	// reduction overlaps the rest of the backward pass. 0: DefaultBucketBytes.
	BucketBytes int
	// Reducers makes NewReplicas' group reducers, one per worker index
	// (see GroupReducer); nil: the in-process reference, Reference.
	Reducers ReducerFactory
	// TotalReplicas and FirstReplica place NewReplicas' replicas among
	// those of other processes (the ranks of an MPI world): they are
	// replicas FirstReplica … FirstReplica+len(devs)−1 of TotalReplicas,
	// each on Batch/TotalReplicas images of every global batch, and they
	// reduce with the others (through Reducers) even when this process
	// holds one. 0, 0: these are all the replicas.
	TotalReplicas, FirstReplica int

	// reduce, set by NewReplicas, averages each worker's gradients with
	// the other replicas' before its update.
	reduce workerReducer
}

// Runner holds a net placed on devices, its buffers, and one worker per
// device. It is not safe for concurrent use; its methods run one step at a
// time.
type Runner struct {
	net      *model.Net
	devs     []gpu.Device // by tower
	opt      Options
	batch    int
	workers  []*worker
	workerOf map[gpu.Device]*worker

	nodes  []*node // table order, the image excluded
	inputs []*node // the image on each device that reads it
	logits *node
	edges  []*edge
	bufs   []gpu.Buffer

	labels, prob, loss gpu.Buffer // on the logits' device
	stepLabels         gpu.Buffer // the labels of the step in progress: labels, or a staged slot's

	aug *augmenter // raw batches' rendering (SetAugment); nil without

	// Each step's softmax and losses are copied here, to be read back
	// after the step (Pending).
	probOut, lossOut [Slots]gpu.Buffer
	pending          [Slots]*Pending
	outNext          int

	step  uint64
	moved atomic.Int64 // bytes moved between devices since the last reset

	deviceTiming bool // time layers on the devices' clocks where they can (SetDeviceTiming)

	wall time.Duration // the steps' wall time since the last ResetProfile (WorkerTimes)
}

// worker is the goroutine that owns one device: every call on the device
// happens on it, locked to one OS thread (as CUDA contexts want).
type worker struct {
	dev  gpu.Device
	jobs chan func()

	// Summed over steps since the last ResetProfile; only this worker
	// writes them, and they are read between steps.
	waitFwd, waitBwd time.Duration // blocked on another device's output, forward and backward
	job              time.Duration // running its share of the steps
	cpu              time.Duration // its thread's CPU time meanwhile
	backward         bool          // the step in progress is in its backward pass
}

func newWorker(d gpu.Device) *worker {
	w := &worker{dev: d, jobs: make(chan func())}
	release := reserveP() // see procs.go
	go func() {
		defer release()
		runtime.LockOSThread()
		for job := range w.jobs {
			job()
		}
	}()
	return w
}

// New places net on devs, one device per tower (a single device takes every
// tower), allocates the plan's buffers and uploads the weights.
func New(net *model.Net, devs []gpu.Device, w model.Weights, o Options) (*Runner, error) {
	if len(devs) == 0 {
		return nil, errors.New("parallel: no devices")
	}
	if o.Batch < 1 {
		return nil, fmt.Errorf("parallel: batch must be at least 1, got %d", o.Batch)
	}
	if len(devs) == 1 {
		for len(devs) < net.Towers {
			devs = append(devs, devs[0])
		}
	}
	if len(devs) != net.Towers {
		return nil, fmt.Errorf("parallel: net %s has %d tower(s); give 1 or %d devices, not %d", net.Name, net.Towers, net.Towers, len(devs))
	}
	if err := w.Check(net); err != nil {
		return nil, err
	}
	r := &Runner{net: net, devs: devs, opt: o, batch: o.Batch, workerOf: map[gpu.Device]*worker{}}
	for _, d := range devs {
		if _, ok := r.workerOf[d]; !ok {
			wk := newWorker(d)
			r.workerOf[d] = wk
			r.workers = append(r.workers, wk)
		}
	}
	// Buffers are allocated from this goroutine, before any step runs;
	// a device must accept calls from any one goroutine at a time.
	err := r.build()
	if err != nil {
		r.Close()
		return nil, err
	}
	ld := r.logits.dev
	for _, b := range []*gpu.Buffer{&r.labels, &r.loss} {
		if *b, err = ld.Alloc(o.Batch); err != nil {
			r.Close()
			return nil, fmt.Errorf("parallel: %w", err)
		}
	}
	if r.prob, err = ld.Alloc(o.Batch * net.Classes); err != nil {
		r.Close()
		return nil, fmt.Errorf("parallel: %w", err)
	}
	r.bufs = append(r.bufs, r.labels, r.loss, r.prob)
	for k := range Slots {
		if r.probOut[k], err = ld.Alloc(o.Batch * net.Classes); err == nil {
			r.bufs = append(r.bufs, r.probOut[k])
			r.lossOut[k], err = ld.Alloc(o.Batch)
		}
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("parallel: %w", err)
		}
		r.bufs = append(r.bufs, r.lossOut[k])
	}
	if err := r.SetWeights(w); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// all runs f(wk) on every worker at once and returns the first error. If one
// fails, ctx is cancelled so that workers waiting on it give up.
func (r *Runner) all(f func(ctx context.Context, wk *worker) error) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	defer func() { r.wall += time.Since(began) }()
	errs := make(chan error, len(r.workers))
	for _, wk := range r.workers {
		wk.jobs <- func() {
			t0, c0 := time.Now(), threadCPU()
			wk.backward = false
			err := f(ctx, wk)
			wk.job += time.Since(t0)
			wk.cpu += threadCPU() - c0
			if err != nil {
				cancel()
			}
			errs <- err
		}
	}
	var first error
	for range r.workers {
		if err := <-errs; err != nil && (first == nil || errors.Is(first, context.Canceled)) {
			first = err
		}
	}
	// An abandoned step leaves events in the channels; drain them so the
	// next step starts clean.
	for _, e := range r.edges {
		select {
		case <-e.ready:
		default:
		}
	}
	return first
}

// Close stops the workers and frees the buffers.
func (r *Runner) Close() {
	for _, b := range r.bufs {
		b.Device().Free(b)
	}
	r.bufs = nil
	for _, wk := range r.workers {
		close(wk.jobs)
	}
	r.workers = nil
}

// Devices returns the device of each tower.
func (r *Runner) Devices() []gpu.Device { return r.devs }

// Net returns the net being run.
func (r *Runner) Net() *model.Net { return r.net }

// MovedBytes returns the bytes moved between devices since the last call,
// and starts counting afresh.
func (r *Runner) MovedBytes() int64 { return r.moved.Swap(0) }

// CrossingBytes is what one training step moves between devices at the
// full batch: every edge's copy, activations forward and gradients back.
func (r *Runner) CrossingBytes() int64 {
	var t int64
	for _, e := range r.edges {
		if !e.image {
			t += e.bytes()
		}
	}
	return t
}

// send pushes e's source into its destination, records an event and hands
// it to the consumer.
func (r *Runner) send(e *edge) error {
	began := time.Now()
	defer func() { e.spent += time.Since(began) }()
	if err := gpu.Transfer(e.dst, e.src); err != nil {
		return fmt.Errorf("parallel: %s: %w", e.name, err)
	}
	ev, err := e.from.dev.Record()
	if err != nil {
		return fmt.Errorf("parallel: %s: %w", e.name, err)
	}
	if !e.image {
		r.moved.Add(e.bytes())
	}
	e.ready <- ev
	return nil
}

// recv waits until e has arrived on this worker's device.
func recv(ctx context.Context, e *edge) error {
	began := time.Now()
	defer func() {
		if w := e.to; w.backward {
			w.waitBwd += time.Since(began)
		} else {
			w.waitFwd += time.Since(began)
		}
	}()
	select {
	case ev := <-e.ready:
		if err := e.to.dev.Wait(ev); err != nil {
			return fmt.Errorf("parallel: %s: %w", e.name, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// which names the parameter buffers params and setParams move.
type which int

const (
	weights which = iota
	grads
	momentum
)

func (n *node) bufs(k which) (w, b gpu.Buffer) {
	switch k {
	case grads:
		return n.dw, n.db
	case momentum:
		return n.vw, n.vb
	}
	return n.wt, n.b
}

// SetWeights uploads w to the devices. The momentum is left as it is.
func (r *Runner) SetWeights(w model.Weights) error { return r.setParams(weights, w) }

// SetMomentum uploads the momentum buffers v, named as the weights they
// belong to: what a checkpoint restores.
func (r *Runner) SetMomentum(v model.Weights) error { return r.setParams(momentum, v) }

// Weights downloads the current weights.
func (r *Runner) Weights() (model.Weights, error) { return r.params(weights) }

// Grads downloads the gradients of the last training step, named as the
// weights they belong to.
func (r *Runner) Grads() (model.Weights, error) { return r.params(grads) }

// Momentum downloads the momentum buffers, named as the weights they
// belong to.
func (r *Runner) Momentum() (model.Weights, error) { return r.params(momentum) }

// Step is the number of training steps taken; dropout masks derive from it.
func (r *Runner) Step() uint64 { return r.step }

// SetStep sets the step counter, as a resumed run continues it.
func (r *Runner) SetStep(s uint64) { r.step = s }

func (r *Runner) setParams(k which, w model.Weights) error {
	if err := w.Check(r.net); err != nil {
		return err
	}
	return r.all(func(_ context.Context, wk *worker) error {
		for _, n := range r.nodes {
			if n.w != wk || n.wt == nil {
				continue
			}
			wb, bb := n.bufs(k)
			if err := n.dev.Upload(wb, w[n.l.Name+".weight"].Data); err != nil {
				return err
			}
			if err := n.dev.Upload(bb, w[n.l.Name+".bias"].Data); err != nil {
				return err
			}
		}
		return nil
	})
}

func (r *Runner) params(k which) (model.Weights, error) {
	out := model.Weights{}
	var mu sync.Mutex
	err := r.all(func(_ context.Context, wk *worker) error {
		for _, n := range r.nodes {
			if n.w != wk || n.wt == nil {
				continue
			}
			w, b := n.bufs(k)
			wt := model.Tensor{Shape: n.l.WeightShape(), Data: make([]float32, w.Len())}
			bt := model.Tensor{Shape: []int{n.l.Filters}, Data: make([]float32, b.Len())}
			if err := n.dev.Download(wt.Data, w); err != nil {
				return err
			}
			if err := n.dev.Download(bt.Data, b); err != nil {
				return err
			}
			mu.Lock()
			out[n.l.Name+".weight"], out[n.l.Name+".bias"] = wt, bt
			mu.Unlock()
		}
		return nil
	})
	return out, err
}

// LayerTime is where a layer's time went, summed over the steps since the
// last ResetProfile. The times are measured on the host around each call
// (Clock "host"): on a device that runs work asynchronously they are the
// time to enqueue it. With SetDeviceTiming(true), a device that is a
// gpu.Timer times its layers on its own clock (Clock "device"): the time
// between marks recorded on its stream before and after the layer's work,
// which includes any wait for the other device's inputs.
type LayerTime struct {
	Layer         string
	Device        string
	Clock         string // "host" or "device"
	Forward       time.Duration
	Backward      time.Duration // the SGD update not included: one SGDMulti per device ends the step
	MovedBytes    int64         // copies of its output to other devices
	Transfer      time.Duration // issuing those copies
	GradientBytes int64         // its gradients sent back to other devices
}

// SetDeviceTiming turns timing on the devices' own clocks on or off for
// the steps that follow (see LayerTime). The marks cost a little: time
// whole steps with it off.
func (r *Runner) SetDeviceTiming(on bool) { r.deviceTiming = on }

// mark records a mark on d if device timing is on and d can; else nil.
func (r *Runner) mark(d gpu.Device) (gpu.Mark, error) {
	t, ok := d.(gpu.Timer)
	if !r.deviceTiming || !ok {
		return nil, nil
	}
	m, err := t.Mark()
	if err != nil {
		return nil, fmt.Errorf("parallel: timing mark on %s: %w", d.Name(), err)
	}
	return m, nil
}

// timed runs f, between two marks on d's clock appended to marks when
// device timing is on and d can.
func (r *Runner) timed(d gpu.Device, marks *[][2]gpu.Mark, f func() error) error {
	m0, err := r.mark(d)
	if err != nil {
		return err
	}
	if err := f(); err != nil {
		return err
	}
	if m0 == nil {
		return nil
	}
	m1, err := r.mark(d)
	if err != nil {
		return err
	}
	*marks = append(*marks, [2]gpu.Mark{m0, m1})
	return nil
}

// deviceTime sums the device time between each pair of marks of d.
func deviceTime(d gpu.Device, marks [][2]gpu.Mark) (time.Duration, error) {
	var sum time.Duration
	for _, m := range marks {
		e, err := d.(gpu.Timer).Elapsed(m[0], m[1])
		if err != nil {
			return 0, fmt.Errorf("parallel: timing on %s: %w", d.Name(), err)
		}
		sum += e
	}
	return sum, nil
}

// Profile returns each layer's time, in table order. Device-clock marks
// are read here, waiting for the work they mark.
func (r *Runner) Profile() []LayerTime {
	var out []LayerTime
	for _, n := range r.nodes {
		t := LayerTime{Layer: n.l.Name, Device: n.dev.Name(), Clock: "host", Forward: n.fwd, Backward: n.bwd}
		if len(n.fmarks)+len(n.bmarks) > 0 {
			f, errF := deviceTime(n.dev, n.fmarks)
			b, errB := deviceTime(n.dev, n.bmarks)
			if errF == nil && errB == nil {
				t.Clock, t.Forward, t.Backward = "device", f, b
			}
		}
		for _, e := range n.sends {
			t.MovedBytes += e.bytes()
			t.Transfer += e.spent
		}
		for _, e := range n.backs {
			if e != nil {
				t.GradientBytes += e.bytes()
				t.Transfer += e.spent
			}
		}
		out = append(out, t)
	}
	return out
}

// WorkerTime is where one device's worker spent the wall time of the
// steps since the last ResetProfile (of every call that runs on all the
// workers at once: Eval, and reading or setting the weights, count as
// steps too): the whole, Wall, is Work (computing and issuing work),
// WaitForward and WaitBackward (blocked until another device's
// activations or gradients arrive) and Done (finished its share of a
// step while another worker had not). On a
// device that runs work asynchronously the waits include none of the
// device's own idle time. CPU is the CPU time the worker's thread used
// (Linux; 0 elsewhere): on the CPU device, Work less CPU is time the
// thread was ready but another thread had its core.
type WorkerTime struct {
	Device                                string
	Wall, Work, WaitForward, WaitBackward time.Duration
	Done, CPU                             time.Duration
}

// WorkerTimes returns each worker's WorkerTime, one per device, in the
// order of the towers.
func (r *Runner) WorkerTimes() []WorkerTime {
	var out []WorkerTime
	for _, w := range r.workers {
		out = append(out, WorkerTime{Device: w.dev.Name(), Wall: r.wall, Work: w.job - w.waitFwd - w.waitBwd,
			WaitForward: w.waitFwd, WaitBackward: w.waitBwd, Done: r.wall - w.job, CPU: w.cpu})
	}
	return out
}

// ResetProfile zeroes the times Profile and WorkerTimes report.
func (r *Runner) ResetProfile() {
	r.wall = 0
	for _, w := range r.workers {
		w.waitFwd, w.waitBwd, w.job, w.cpu = 0, 0, 0, 0
	}
	for _, n := range r.nodes {
		n.fwd, n.bwd = 0, 0
		n.fmarks, n.bmarks = nil, nil
	}
	for _, e := range r.edges {
		e.spent = 0
	}
}

// MemoryBytes is what the plan allocated on each device, by device name:
// activations, their gradients, parameters, momentum and transfer buffers,
// all sized for the largest batch, plus the scratch memory a device
// reports (gpu.ScratchReporter: cuDNN's workspace, as large as the steps so
// far needed). The CPU device's transient im2col buffers and the
// libraries' own allocations (cuBLAS, cuDNN handles) are not included.
func (r *Runner) MemoryBytes() map[string]int64 {
	out := map[string]int64{}
	for _, b := range r.bufs {
		out[b.Device().Name()] += 4 * int64(b.Len())
	}
	for _, w := range r.workers { // one per device
		if s, ok := w.dev.(gpu.ScratchReporter); ok {
			out[w.dev.Name()] += s.ScratchBytes()
		}
	}
	return out
}
