package cuda

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// hostNCCL is a fake NCCL over the host GPU (hostgpu_test.go): it records
// every call with its arguments, per rank, checks them as nccl.h documents
// (a communicator of the clique, the float32 datatype, a stream of the
// host GPU, a count within the buffers), keeps the group state per OS
// thread as NCCL does, and computes the all-reduce on the host memory:
// ncclGroupEnd blocks, as NCCL may, until every rank of the clique has
// ended its group, checks that all enqueued the same operations in the
// same order, and then the last one sums in float64 and writes the
// result (divided by the ranks for ncclAvg) into every rank's buffer.
type hostNCCL struct {
	g       *hostGPU
	version int
	// refuse makes ncclCommInitAll return ncclInvalidUsage for a devlist
	// that repeats a GPU, as NCCL before 2.30 does (and after, without
	// NCCL_MULTI_RANK_GPU_ENABLE=1).
	refuse bool
	// failAllReduce, if not 0, is what every ncclAllReduce returns.
	failAllReduce Result
	// async is what ncclCommGetAsyncError reports.
	async Result

	mu       sync.Mutex
	comms    map[uintptr]*hostComm
	cliques  []*hostClique
	groups   map[int]*hostGroup // per OS thread
	calls    map[string][]string
	streamOf map[uintptr]string // stream → device name, for the record
	global   []string           // calls of no rank
}

type hostComm struct {
	name   string
	rank   int
	clique *hostClique
	dead   bool
}

type hostClique struct {
	ranks int
	// pending are each rank's groups ended but not yet computed.
	pending [][]hostOp
	turn    chan struct{} // closed when the pending groups are computed
	err     Result
}

type hostOp struct {
	comm         *hostComm
	send, recv   uint64
	count        uint64
	dtype, op    int32
	stream       uintptr
	sendF, recvF []float32
}

type hostGroup struct {
	depth int
	ops   []hostOp
	lines []string
	err   Result
}

var ncclErrorText = map[Result]string{
	ncclSuccess:         "no error",
	1:                   "unhandled cuda error (run with NCCL_DEBUG=INFO for details)",
	ncclInvalidArgument: "invalid argument (run with NCCL_DEBUG=WARN for details)",
	ncclInvalidUsage:    "invalid usage (run with NCCL_DEBUG=WARN for details)",
	ncclRemoteError:     "remote process exited or there was a network error",
}

func newHostNCCL(g *hostGPU, version int) *hostNCCL {
	return &hostNCCL{g: g, version: version, comms: map[uintptr]*hostComm{}, groups: map[int]*hostGroup{},
		calls: map[string][]string{}, streamOf: map[uintptr]string{}}
}

// name names the streams of devs in the record.
func (h *hostNCCL) name(devs ...*Device) {
	for _, d := range devs {
		h.streamOf[d.stream] = "stream of " + d.name
	}
}

// group returns the calling thread's group state.
func (h *hostNCCL) group() *hostGroup {
	tid := syscall.Gettid()
	gr, ok := h.groups[tid]
	if !ok {
		gr = &hostGroup{}
		h.groups[tid] = gr
	}
	return gr
}

// record files a call under the rank whose call it is, or, inside a
// group, with the group's calls.
func (h *hostNCCL) record(comm *hostComm, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if gr := h.group(); gr.depth > 0 {
		gr.lines = append(gr.lines, line)
		return
	}
	if comm == nil {
		h.global = append(h.global, line)
		return
	}
	h.calls[comm.name] = append(h.calls[comm.name], line)
}

// take returns the record so far, rank by rank, and clears it.
func (h *hostNCCL) take() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, l := range h.global {
		fmt.Fprintln(&b, l)
	}
	keys := make([]string, 0, len(h.calls))
	for k := range h.calls {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "-- %s\n", k)
		for _, l := range h.calls[k] {
			fmt.Fprintln(&b, l)
		}
	}
	h.global, h.calls = nil, map[string][]string{}
	return b.String()
}

func (h *hostNCCL) lib() *nccl {
	return &nccl{
		path:    "host",
		version: h.version,
		getVersion: func(v *int32) Result {
			*v = int32(h.version)
			return ncclSuccess
		},
		getErrorString: func(r Result) uintptr {
			s, ok := ncclErrorText[r]
			if !ok {
				s = "unknown result code"
			}
			return hostCString(s)
		},
		getUniqueID: func(id *ncclUniqueID) Result {
			for i := range id.Internal {
				id.Internal[i] = byte(i)
			}
			h.mu.Lock()
			h.record(nil, "ncclGetUniqueId()")
			h.mu.Unlock()
			return ncclSuccess
		},
		commInitAll: func(comms *uintptr, ndev int32, devlist *int32) Result {
			h.mu.Lock()
			defer h.mu.Unlock()
			if ndev < 1 || comms == nil || devlist == nil {
				h.record(nil, "ncclCommInitAll(%d)", ndev)
				return ncclInvalidArgument
			}
			ords := unsafe.Slice(devlist, int(ndev))
			out := unsafe.Slice(comms, int(ndev))
			c := &hostClique{ranks: int(ndev), turn: make(chan struct{})}
			h.cliques = append(h.cliques, c)
			var names []string
			for i := range out {
				hc := &hostComm{name: fmt.Sprintf("comm%d.%d", len(h.cliques), i), rank: i, clique: c}
				out[i] = h.g.handle()
				h.comms[out[i]] = hc
				names = append(names, hc.name)
			}
			h.record(nil, "ncclCommInitAll(%d, devlist=%v) = %s", ndev, ords, strings.Join(names, ", "))
			for i := range ords {
				if ords[i] != 0 {
					return h.g.fail(ncclInvalidUsage, "ncclCommInitAll", "the host GPU is device 0, not %d", ords[i])
				}
				if h.refuse && i > 0 {
					h.g.t.Logf("host NCCL: ncclCommInitAll: Multiple Ranks are using the same GPU/Partition")
					for j := range out {
						delete(h.comms, out[j])
						out[j] = 0
					}
					return ncclInvalidUsage
				}
			}
			return ncclSuccess
		},
		commInitRank: func(comm *uintptr, nranks int32, id ncclUniqueID, rank int32) Result {
			h.mu.Lock()
			defer h.mu.Unlock()
			*comm = h.g.handle()
			h.comms[*comm] = &hostComm{name: fmt.Sprintf("rank%d", rank), rank: int(rank)}
			h.record(nil, "ncclCommInitRank(nranks=%d, id=%x…, rank=%d)", nranks, id.Internal[:4], rank)
			return ncclSuccess
		},
		groupStart: func() Result {
			h.mu.Lock()
			defer h.mu.Unlock()
			gr := h.group()
			gr.depth++
			if gr.depth == 1 {
				gr.lines = append(gr.lines[:0], "ncclGroupStart()")
			}
			return ncclSuccess
		},
		allReduce: func(send, recv uint64, count uint64, dtype, op int32, comm, stream uintptr) Result {
			h.mu.Lock()
			o, r := h.allReduce(send, recv, count, dtype, op, comm, stream)
			if r != ncclSuccess || h.group().depth > 0 {
				h.mu.Unlock()
				return r
			}
			return h.submit(o.comm.clique, o.comm.rank, []hostOp{o}) // a group of one
		},
		groupEnd: h.groupEnd,
		commGetAsyncError: func(comm uintptr, async *Result) Result {
			h.mu.Lock()
			defer h.mu.Unlock()
			c, ok := h.comms[comm]
			if !ok || c.dead {
				return ncclInvalidArgument
			}
			*async = h.async
			return ncclSuccess
		},
		commDestroy: func(comm uintptr) Result { return h.end("ncclCommDestroy", comm) },
		commAbort:   func(comm uintptr) Result { return h.end("ncclCommAbort", comm) },
	}
}

func (h *hostNCCL) end(call string, comm uintptr) Result {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.comms[comm]
	if !ok || c.dead {
		h.record(nil, "%s(not a communicator)", call)
		return ncclInvalidArgument
	}
	h.record(c, "%s(%s)", call, c.name)
	c.dead = true
	return ncclSuccess
}

var (
	dtypeNames = map[int32]string{0: "ncclInt8", 2: "ncclInt32", 6: "ncclFloat16", ncclFloat32: "ncclFloat32", 8: "ncclFloat64"}
	opNames    = map[int32]string{ncclSum: "ncclSum", 1: "ncclProd", 2: "ncclMax", 3: "ncclMin", ncclAvg: "ncclAvg"}
)

// allReduce checks and records one ncclAllReduce, and files it with the
// thread's group. The caller holds h.mu.
func (h *hostNCCL) allReduce(send, recv uint64, count uint64, dtype, op int32, comm, stream uintptr) (hostOp, Result) {
	const call = "ncclAllReduce"
	c, ok := h.comms[comm]
	gr := h.group()
	if !ok || c.dead {
		h.record(nil, "%s(…, not a communicator)", call)
		return hostOp{}, ncclInvalidArgument
	}
	sname, ok := h.streamOf[stream]
	if !ok && h.g.hasStream(stream) {
		// A stream the group made, named for the communicator it is
		// first used with: one shared by two ranks would show.
		sname = "the group's stream for " + c.name
		h.streamOf[stream] = sname
	}
	h.record(c, "%s(send=%s, recv=%s, count=%d, %s, %s, %s, %s)", call, h.g.name(send), h.g.name(recv), count,
		dtypeNames[dtype], opNames[op], c.name, sname)
	fail := func(r Result, format string, args ...any) (hostOp, Result) {
		h.g.t.Logf("host NCCL: %s: %s", call, fmt.Sprintf(format, args...))
		if gr.depth > 0 {
			gr.err = r
		}
		return hostOp{}, r
	}
	switch {
	case h.failAllReduce != 0:
		return fail(h.failAllReduce, "made to fail")
	case dtype != ncclFloat32:
		return fail(ncclInvalidArgument, "the host NCCL reduces ncclFloat32 only, not %d", dtype)
	case opNames[op] == "":
		return fail(ncclInvalidArgument, "op %d", op)
	case !h.g.hasStream(stream):
		return fail(ncclInvalidArgument, "not a stream of the host GPU")
	}
	h.g.mu.Lock() // the driver's allocations change g.mem under it
	s, r := h.g.floats(send, int(count)), h.g.floats(recv, int(count))
	h.g.mu.Unlock()
	if s == nil || r == nil {
		return fail(ncclInvalidArgument, "%d floats at send or recv reach past their allocations", count)
	}
	o := hostOp{comm: c, send: send, recv: recv, count: count, dtype: dtype, op: op, stream: stream, sendF: s, recvF: r}
	if gr.depth > 0 {
		gr.ops = append(gr.ops, o)
	}
	return o, ncclSuccess
}

func (h *hostNCCL) groupEnd() Result {
	h.mu.Lock()
	gr := h.group()
	if gr.depth == 0 {
		h.mu.Unlock()
		return ncclInvalidUsage
	}
	if gr.depth--; gr.depth > 0 {
		h.mu.Unlock()
		return ncclSuccess
	}
	ops, lines, err := gr.ops, append(gr.lines, "ncclGroupEnd()"), gr.err
	gr.ops, gr.lines, gr.err = nil, nil, 0
	if len(ops) == 0 {
		h.global = append(h.global, lines...)
		h.mu.Unlock()
		return err
	}
	c := ops[0].comm
	h.calls[c.name] = append(h.calls[c.name], lines...)
	if err != 0 {
		h.mu.Unlock()
		return err
	}
	for _, o := range ops {
		if o.comm.clique != c.clique || o.comm.rank != c.rank {
			h.mu.Unlock()
			h.g.t.Logf("host NCCL: the group mixes ranks: the fake runs one rank per thread")
			return ncclInvalidUsage
		}
	}
	return h.submit(c.clique, c.rank, ops)
}

// submit hands rank's operations to its clique and waits until every
// rank's are there and computed. The caller holds h.mu; submit unlocks it.
func (h *hostNCCL) submit(c *hostClique, rank int, ops []hostOp) Result {
	if c.pending == nil {
		c.pending = make([][]hostOp, c.ranks)
	}
	if c.pending[rank] != nil {
		h.mu.Unlock()
		return h.g.fail(ncclInvalidUsage, "ncclGroupEnd", "rank %d ended a second group before the clique's first was complete", rank)
	}
	c.pending[rank] = ops
	turn := c.turn
	all := true
	for _, p := range c.pending {
		all = all && p != nil
	}
	if all {
		c.err = h.compute(c)
		c.pending = nil
		c.turn = make(chan struct{})
		close(turn)
	}
	err := c.err
	h.mu.Unlock()
	if all {
		return err
	}
	select {
	case <-turn:
	case <-time.After(10 * time.Second):
		h.g.t.Errorf("host NCCL: rank %d waited 10 s for the other ranks of its clique", rank)
		return ncclRemoteError
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return c.err
}

// compute runs the clique's pending all-reduces: each rank's j-th
// operation with every other rank's j-th.
func (h *hostNCCL) compute(c *hostClique) Result {
	first := c.pending[0]
	for r, ops := range c.pending {
		if len(ops) != len(first) {
			h.g.t.Logf("host NCCL: rank %d enqueued %d operations, rank 0 %d", r, len(ops), len(first))
			return ncclInvalidUsage
		}
		for j, o := range ops {
			if o.count != first[j].count || o.dtype != first[j].dtype || o.op != first[j].op {
				h.g.t.Logf("host NCCL: rank %d's operation %d (%d, op %d) differs from rank 0's (%d, op %d)", r, j, o.count, o.op, first[j].count, first[j].op)
				return ncclInvalidUsage
			}
		}
	}
	h.g.mu.Lock()
	defer h.g.mu.Unlock()
	for j := range first {
		n := int(first[j].count)
		sum := make([]float64, n)
		for _, ops := range c.pending {
			for i, v := range ops[j].sendF {
				sum[i] += float64(v)
			}
		}
		for i := range sum {
			switch first[j].op {
			case ncclAvg:
				sum[i] /= float64(c.ranks)
			case ncclSum:
			default:
				h.g.t.Logf("host NCCL: computes ncclSum and ncclAvg only")
				return ncclInvalidArgument
			}
		}
		for _, ops := range c.pending {
			for i := range ops[j].recvF {
				ops[j].recvF[i] = float32(sum[i])
			}
		}
	}
	return ncclSuccess
}
