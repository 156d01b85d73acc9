package cuda

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/alexnet-go/trainer/gpu"
)

// NCCLGroup averages gradients among the Devices that hold one tower
// across the replicas (parallel.GroupReducer): replica k's worker calls
// Reduce with its own Device, the same tensors in the same order as every
// other replica, and from then on the work enqueued on its Device sees the
// mean of every replica's tensors.
//
// It reduces with NCCL where NCCL takes the Devices: one rank per
// replica, each replica's worker calling ncclAllReduce (ncclAvg, in place)
// on its own communicator and its Device's stream, one ncclGroupStart/End
// per call, so that several tensors go as one launch. NCCL keeps a
// group's state per thread, so the call runs on one locked OS thread, and
// the ranks, one thread each, never share a group; NCCL matches their
// operations by order, so every replica must reduce the same tensors in
// the same order (the runner's fixed order does). ReduceAsync runs the
// collective on a stream of its own, for the backward pass to overlap it.
// NCCL refuses two
// ranks on one GPU ("--gpus 0,0,0,0") unless it is 2.30 or later and
// NCCL_MULTI_RANK_GPU_ENABLE=1 is set; where it refuses, and where NCCL is
// not installed but every Device is on one GPU, the group reduces with
// device copies instead: replica 0's stream waits for the others'
// gradients, adds them to its own in replica order, scales the sum by
// 1/R and copies the mean back into every replica's tensors. String says
// which, and why.
type NCCLGroup struct {
	devs  []*Device
	lib   *nccl     // nil: device copies
	comms []uintptr // one per Device, with lib
	side  []uintptr // per Device, the stream ReduceAsync's collectives run on; made on first use
	how   string

	mu     sync.Mutex
	broken error // the first failure: the group is not usable after it
	round  *copyRound
	mask   gpu.Buffer // on devs[0], holding 1/R: the scale (DropoutBackward)
	closed bool
}

// NewNCCLGroup makes the group of devs, one per replica in replica order,
// in this process. Its Reduce averages over all of them.
func NewNCCLGroup(devs []*Device) (*NCCLGroup, error) {
	lib, err := loadNCCL()
	return newNCCLGroup(devs, lib, err, os.Getenv)
}

// NewNCCLGroupRanks makes this process's part of an NCCL communicator of
// nranks ranks over several processes: devs are ranks first,
// first+1, …, and id is the communicator's (NewNCCLID in one process,
// sent to the others). Every process must call it with the same id and
// nranks. Reduce's replica is the index in devs; it averages over all
// nranks ranks.
func NewNCCLGroupRanks(devs []*Device, id NCCLID, nranks, first int) (*NCCLGroup, error) {
	lib, err := loadNCCL()
	if err != nil {
		return nil, err
	}
	return newNCCLGroupRanks(devs, lib, id, nranks, first)
}

// multiRankOK reports whether lib may put several ranks on one GPU: NCCL
// 2.30 or later with NCCL_MULTI_RANK_GPU_ENABLE=1, and why not.
func multiRankOK(lib *nccl, getenv func(string) string) (bool, string) {
	switch {
	case lib.version < ncclMultiRankVersion:
		return false, "NCCL " + ncclVersionString(lib.version) + " allows one rank per GPU (2.30 may allow several, with NCCL_MULTI_RANK_GPU_ENABLE=1)"
	case getenv("NCCL_MULTI_RANK_GPU_ENABLE") != "1":
		return false, "NCCL " + ncclVersionString(lib.version) + " puts several ranks on one GPU only with NCCL_MULTI_RANK_GPU_ENABLE=1"
	}
	return true, ""
}

func newNCCLGroup(devs []*Device, lib *nccl, libErr error, getenv func(string) string) (*NCCLGroup, error) {
	if len(devs) == 0 {
		return nil, errors.New("cuda: an NCCL group of no devices")
	}
	g := &NCCLGroup{devs: devs}
	oneGPU, shared := true, false
	seen := map[*gpuContext]bool{}
	for _, d := range devs {
		if d == nil || d.closed {
			return nil, errors.New("cuda: an NCCL group of a nil or closed device")
		}
		oneGPU = oneGPU && d.gc == devs[0].gc
		shared = shared || seen[d.gc]
		seen[d.gc] = true
	}
	names := g.names()
	why := ""
	switch {
	case libErr != nil:
		why = "NCCL is not loadable (" + libErr.Error() + ")"
	case shared:
		if ok, w := multiRankOK(lib, getenv); !ok {
			why = w
		}
	}
	if why == "" {
		err := g.initAll(lib)
		if err == nil {
			g.how = fmt.Sprintf("NCCL %s all-reduce (ncclAvg) over %s", ncclVersionString(lib.version), names)
			return g, nil
		}
		if !shared {
			return nil, err
		}
		why = "NCCL refused several ranks on one GPU (" + err.Error() + ")"
	}
	if !oneGPU {
		return nil, fmt.Errorf("cuda: replicas on %s span GPUs, and only NCCL reduces across GPUs: %s", names, why)
	}
	g.how = fmt.Sprintf("device copies over %s, on %s's stream: %s", names, devs[0].name, why)
	g.round = newCopyRound(len(devs))
	return g, nil
}

// names lists the Devices, for messages.
func (g *NCCLGroup) names() string {
	s := make([]string, len(g.devs))
	for i, d := range g.devs {
		s[i] = d.name
	}
	return strings.Join(s, ", ")
}

// initAll creates one communicator per Device with ncclCommInitAll.
func (g *NCCLGroup) initAll(lib *nccl) error {
	ords := make([]int32, len(g.devs))
	s := make([]string, len(g.devs))
	for i, d := range g.devs {
		ords[i] = int32(d.gc.ordinal)
		s[i] = strconv.Itoa(d.gc.ordinal)
	}
	comms := make([]uintptr, len(g.devs))
	done, err := g.devs[0].bind()
	defer done()
	if err != nil {
		return err
	}
	if err := lib.check(lib.commInitAll(&comms[0], int32(len(comms)), &ords[0]),
		fmt.Sprintf("ncclCommInitAll(%d ranks on GPUs %s)", len(comms), strings.Join(s, ","))); err != nil {
		return err
	}
	g.lib, g.comms = lib, comms
	return nil
}

func newNCCLGroupRanks(devs []*Device, lib *nccl, id NCCLID, nranks, first int) (*NCCLGroup, error) {
	if len(devs) == 0 || first < 0 || first+len(devs) > nranks {
		return nil, fmt.Errorf("cuda: ranks %d to %d of an NCCL communicator of %d", first, first+len(devs)-1, nranks)
	}
	g := &NCCLGroup{devs: devs, lib: lib, comms: make([]uintptr, len(devs))}
	uid := ncclUniqueID{Internal: id}
	// ncclCommInitRank waits for the other ranks: this process's ranks
	// are created in one group, each with its Device's context current.
	done, err := devs[0].bind()
	defer done()
	if err != nil {
		return nil, err
	}
	if err := lib.check(lib.groupStart(), "ncclGroupStart"); err != nil {
		return nil, err
	}
	var initErr error
	for i, d := range devs {
		if err := d.drv.check(d.drv.cuCtxSetCurrent(d.gc.ctx), "cuCtxSetCurrent"); err != nil {
			initErr = err
			break
		}
		if err := lib.check(lib.commInitRank(&g.comms[i], int32(nranks), uid, int32(first+i)),
			fmt.Sprintf("ncclCommInitRank(rank %d of %d on %s)", first+i, nranks, d.name)); err != nil {
			initErr = err
			break
		}
	}
	if err := lib.check(lib.groupEnd(), fmt.Sprintf("ncclGroupEnd after ncclCommInitRank (ranks %d to %d of %d)", first, first+len(devs)-1, nranks)); initErr == nil {
		initErr = err
	}
	if initErr != nil {
		return nil, initErr
	}
	g.how = fmt.Sprintf("NCCL %s all-reduce (ncclAvg), ranks %d to %d of %d on %s", ncclVersionString(lib.version), first, first+len(devs)-1, nranks, g.names())
	return g, nil
}

// String says how the group reduces: NCCL, or device copies and why.
func (g *NCCLGroup) String() string { return g.how }

// UsesNCCL reports whether the group reduces with NCCL.
func (g *NCCLGroup) UsesNCCL() bool { return g.lib != nil }

// Reduce averages grads, replica's tensors on dev, with the other
// replicas' (parallel.GroupReducer). Every replica calls it from its own
// goroutine with the same tensor sizes in the same order; with device
// copies it returns when every replica has called it and the mean is
// enqueued, with NCCL as soon as the all-reduce is. After an error the
// group is unusable: every later call returns that error.
func (g *NCCLGroup) Reduce(ctx context.Context, replica int, dev gpu.Device, grads []gpu.Buffer) error {
	err := g.enter(ctx, "Reduce", replica, dev)
	if err != nil {
		return err
	}
	if g.lib != nil {
		err = g.allReduce(replica, grads)
	} else {
		var mean gpu.Event
		if mean, err = g.copyReduce(ctx, replica, grads); err == nil && mean != nil {
			err = dev.Wait(mean)
		}
	}
	if err != nil {
		g.fail(err)
	}
	return err
}

// ReduceAsync is Reduce without making dev's stream wait for the mean, so
// that the rest of the backward pass overlaps the collective: the
// returned event marks the mean in grads, and work on dev that reads them
// (the update) must Wait for it first; work that writes them must too.
// With NCCL the all-reduce runs on a stream of the group's beside dev's,
// after the work enqueued on dev so far; with device copies the mean is
// computed on replica 0's stream, so replica 0 gets no overlap.
func (g *NCCLGroup) ReduceAsync(ctx context.Context, replica int, dev gpu.Device, grads []gpu.Buffer) (gpu.Event, error) {
	err := g.enter(ctx, "ReduceAsync", replica, dev)
	if err != nil {
		return nil, err
	}
	var mean gpu.Event
	if g.lib != nil {
		var e *event
		if e, err = g.allReduceAsync(replica, grads); e != nil {
			mean = e
		}
	} else {
		mean, err = g.copyReduce(ctx, replica, grads)
	}
	if err != nil {
		g.fail(err)
		return nil, err
	}
	return mean, nil
}

// enter is what Reduce and ReduceAsync (call) check first: that replica's
// device is dev (a programmer's mistake otherwise), that the group is
// neither broken nor closed, and that ctx is live.
func (g *NCCLGroup) enter(ctx context.Context, call string, replica int, dev gpu.Device) error {
	if c, _ := asDevice(dev); replica < 0 || replica >= len(g.devs) || c != g.devs[replica] {
		panic(fmt.Sprintf("cuda: NCCL group of %s: replica %d's %s on %v", g.names(), replica, call, dev))
	}
	g.mu.Lock()
	err := g.broken
	if g.closed {
		err = errors.New("cuda: NCCL group of " + g.names() + " used after Close")
	}
	g.mu.Unlock()
	if err != nil {
		return err
	}
	return ctx.Err()
}

// allReduceAsync runs allReduce on replica's side stream, after the work
// of its Device's stream so far, and returns the event after it.
func (g *NCCLGroup) allReduceAsync(replica int, grads []gpu.Buffer) (*event, error) {
	d := g.devs[replica]
	done, err := d.bind()
	defer done()
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	if g.side == nil {
		g.side = make([]uintptr, len(g.devs))
	}
	side := g.side[replica]
	if side == 0 {
		err = d.drv.check(d.drv.cuStreamCreate(&side, streamNonBlocking), "cuStreamCreate (NCCL) on "+d.name)
		g.side[replica] = side
	}
	g.mu.Unlock()
	if err != nil {
		return nil, err
	}
	final, err := d.recordOn(d.stream, eventDisableTiming)
	if err != nil {
		return nil, err
	}
	if err := d.drv.check(d.drv.cuStreamWaitEvent(side, final.ev, 0), "cuStreamWaitEvent (NCCL) on "+d.name); err != nil {
		return nil, err
	}
	if err := g.enqueue(replica, grads, side); err != nil {
		return nil, err
	}
	return d.recordOn(side, eventDisableTiming)
}

// fail marks the group broken by err, the first failure.
func (g *NCCLGroup) fail(err error) {
	g.mu.Lock()
	if g.broken == nil {
		g.broken = err
	}
	g.mu.Unlock()
}

// allReduce enqueues the in-place average of grads on replica's stream.
func (g *NCCLGroup) allReduce(replica int, grads []gpu.Buffer) error {
	d := g.devs[replica]
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	return g.enqueue(replica, grads, d.stream)
}

// enqueue enqueues the in-place average of grads on stream: one
// ncclAllReduce per tensor, in one group, on the calling thread, which
// is locked with replica's context current.
func (g *NCCLGroup) enqueue(replica int, grads []gpu.Buffer, stream uintptr) error {
	d, lib, comm := g.devs[replica], g.lib, g.comms[replica]
	ptrs := make([]uint64, len(grads))
	for i, b := range grads {
		ptrs[i] = d.ptr(fmt.Sprintf("grads[%d]", i), b, b.Len())
	}
	if err := lib.check(lib.groupStart(), "ncclGroupStart on "+d.name); err != nil {
		return err
	}
	var first error
	for i, p := range ptrs {
		n := grads[i].Len()
		if n == 0 {
			continue
		}
		if err := lib.check(lib.allReduce(p, p, uint64(n), ncclFloat32, ncclAvg, comm, stream),
			fmt.Sprintf("ncclAllReduce(%d floats, ncclAvg) on %s", n, d.name)); err != nil {
			first = err
			break
		}
	}
	if err := lib.check(lib.groupEnd(), "ncclGroupEnd on "+d.name); first == nil {
		first = err
	}
	if first != nil {
		return first
	}
	var async Result
	if err := lib.check(lib.commGetAsyncError(comm, &async), "ncclCommGetAsyncError on "+d.name); err != nil {
		return err
	}
	if async != ncclSuccess && async != ncclInProgress {
		return lib.check(async, "NCCL communicator of "+d.name+" (asynchronous error)")
	}
	return nil
}

// Abort aborts every communicator of the group (ncclCommAbort), ending
// collectives in flight, for a rank that must stop waiting for one that
// died; the group is unusable after it. Close still frees the rest.
func (g *NCCLGroup) Abort() error {
	g.fail(errors.New("cuda: NCCL group of " + g.names() + " aborted"))
	return g.release(true)
}

// Close destroys the communicators and frees the group's buffers. The
// Devices must still be open; closing again is a no-op.
func (g *NCCLGroup) Close() error {
	return g.release(false)
}

func (g *NCCLGroup) release(abort bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	var errs []error
	for i, s := range g.side {
		if s == 0 {
			continue
		}
		d := g.devs[i]
		done, err := d.bind()
		if err == nil {
			if !abort {
				err = d.drv.check(d.drv.cuStreamSynchronize(s), "cuStreamSynchronize (NCCL) on "+d.name)
			}
			_ = d.drv.cuStreamDestroy(s)
		}
		done()
		errs = append(errs, err)
		g.side[i] = 0
	}
	for i, c := range g.comms {
		if c == 0 {
			continue
		}
		d := g.devs[i]
		done, err := d.bind()
		if err == nil {
			if abort {
				err = g.lib.check(g.lib.commAbort(c), "ncclCommAbort on "+d.name)
			} else {
				err = g.lib.check(g.lib.commDestroy(c), "ncclCommDestroy on "+d.name)
			}
		}
		done()
		errs = append(errs, err)
		g.comms[i] = 0
	}
	if g.mask != nil {
		g.devs[0].Free(g.mask)
		g.mask = nil
	}
	return errors.Join(errs...)
}

// asDevice is d's CUDA device: d itself, or the device a wrapper (package
// gpu/bf16's rounding device) wraps, whose buffers are the CUDA device's own.
func asDevice(d gpu.Device) (*Device, bool) {
	for {
		if c, ok := d.(*Device); ok {
			return c, true
		}
		u, ok := d.(interface{ Unwrap() gpu.Device })
		if !ok {
			return nil, false
		}
		d = u.Unwrap()
	}
}

// NewNCCLGroups makes the gradient groups of replicas in this process,
// replicas[k] being replica k's devices as parallel.NewReplicas takes
// them: one group per worker, the w-th distinct device of every replica
// (a parallel.Runner has one worker per distinct device, in order). It
// returns nil, nil when a device is not a CUDA Device, for the caller to
// reduce another way, and closes what it made on an error.
func NewNCCLGroups(replicas [][]gpu.Device) ([]*NCCLGroup, error) {
	return newNCCLGroups(replicas, NewNCCLGroup)
}

func newNCCLGroups(replicas [][]gpu.Device, group func([]*Device) (*NCCLGroup, error)) ([]*NCCLGroup, error) {
	var workers [][]*Device // [replica][worker]
	for k, devs := range replicas {
		var ws []*Device
		for _, d := range devs {
			c, ok := asDevice(d)
			if !ok {
				return nil, nil
			}
			if !slices.Contains(ws, c) {
				ws = append(ws, c)
			}
		}
		if k > 0 && len(ws) != len(workers[0]) {
			return nil, fmt.Errorf("cuda: replica %d has %d devices, replica 0 %d: give every replica the same placement", k, len(ws), len(workers[0]))
		}
		workers = append(workers, ws)
	}
	if len(workers) == 0 {
		return nil, errors.New("cuda: no replicas")
	}
	var groups []*NCCLGroup
	for w := range workers[0] {
		devs := make([]*Device, len(workers))
		for k := range workers {
			devs[k] = workers[k][w]
		}
		g, err := group(devs)
		if err != nil {
			for _, g := range groups {
				_ = g.Close()
			}
			return nil, err
		}
		groups = append(groups, g)
	}
	return groups, nil
}
