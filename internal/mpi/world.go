// Package mpi runs the trainer as one of several processes started by
// Open MPI's mpirun or by Slurm's srun: it gives the process its rank and
// the world's size, broadcasts bytes (the NCCL unique id), sums host
// vectors, and averages CPU devices' gradients across the processes
// (Group). libmpi.so.40 is bound at run time with purego; a process not
// started by a launcher never loads it (Init returns a nil *World, which
// behaves as a world of one).
//
// Every collective has a deadline (Options.Timeout, a minute by default):
// a rank that dies, is stopped or hangs makes the others' calls return,
// within the bound, a *RankError whose one line names it. MPI's blocking
// calls cannot be interrupted, so every collective is non-blocking
// (MPI_Iallgather, MPI_Ibcast, MPI_Ibarrier) and polled with MPI_Test; a
// heartbeat exchanged between all ranks in the background says which rank
// is missing: one that stopped answering (died or stopped), or one that
// answers but has not reached the collective (hangs in its own work).
//
// All MPI calls run on one goroutine locked to its OS thread, the thread
// that called MPI_Init_thread, so MPI_THREAD_FUNNELED suffices (Open MPI
// supports it in every build). World's collectives run on MPI_COMM_WORLD
// and must be called in the same order on every rank, from one goroutine
// at a time; each Group has a communicator of its own, so different groups
// may reduce concurrently (the towers' workers do).
package mpi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// DefaultTimeout is the deadline of a collective when Options leaves it 0.
const DefaultTimeout = time.Minute

// Options configures Init.
type Options struct {
	// Timeout bounds every collective: how long a rank waits for the
	// others before it gives up with a *RankError. 0 means DefaultTimeout.
	Timeout time.Duration
	// Flag is the command-line flag that sets Timeout, named in errors;
	// "--rank-timeout" when empty.
	Flag string
}

// World is the set of processes started together, one rank each.
//
// A nil *World is a world of one, as Init returns it in a process that no
// launcher started: Rank is 0, Size 1, the collectives leave their
// arguments as they are, and Close does nothing.
type World struct {
	l          *lib
	rank, size int
	hosts      []string // per rank, the processor name
	pids       []int64  // per rank
	timeout    time.Duration
	flag       string
	interval   time.Duration // between heartbeats

	calls     chan func()
	done      chan struct{} // closed when the MPI goroutine stops serving calls
	finalized chan error    // MPI_Finalize's result, once Close asked for it
	closeOnce sync.Once
	closeErr  error

	mu     sync.Mutex
	broken error // the first failure; every later call returns it

	// Owned by the MPI goroutine.
	comms     []uintptr // 0: MPI_COMM_WORLD; then one per Group
	entered   []int64   // per comm, the collectives this rank has entered
	hbComm    uintptr   // a duplicate of MPI_COMM_WORLD for the heartbeat
	peers     []*peer   // per rank; nil for this one
	pending   []*op
	abandoned []*op // timed out: MPI still holds their buffers
	stop      bool
	finalize  bool // call MPI_Finalize once the loop stops
}

// op is a collective in flight.
type op struct {
	what     string // "all-gather", "broadcast", …, for messages
	comm     int
	seq      int64 // this rank's entered[comm] once it entered the op
	req      uintptr
	deadline time.Time
	done     chan error
	keep     []any // buffers MPI reads or writes until the op completes
}

// Heartbeat message: [flags, n, entered[0..n)], int64s.
const (
	hbTag     = 1
	hbMax     = 64 // int64s in a heartbeat: at most hbMax-2 communicators
	hbBye     = 1  // flags: the last heartbeat, sent by Close
	pollMin   = 20 * time.Microsecond
	pollMax   = time.Millisecond
	staleBeat = 3 // heartbeats missed before a rank counts as not answering
)

// peer is what this rank knows of another through the heartbeat.
type peer struct {
	sendReq, recvReq uintptr
	sendBuf, recvBuf [hbMax]int64
	lastHeard        time.Time
	entered          []int64 // per comm, as last heard
	bye, byeSent     bool
}

var initialized atomic.Bool

// Init starts MPI when a launcher (mpirun, srun --mpi=pmix) started the
// process, and returns (nil, nil) when none did: a single-process run never
// loads libmpi. It fails when a launcher started the process but libmpi.so.40
// does not load (set ALEXNET_LIBMPI to its path), or when the launcher is one
// MPI cannot join (srun without PMIx, MPICH's). Call it once per process, and
// Close the World before the process ends.
func Init(o Options) (*World, error) {
	ln, err := detect(os.Getenv)
	if err != nil || ln.by == "" {
		return nil, err
	}
	l, err := openLib(os.Getenv(LibEnv))
	if err != nil {
		return nil, fmt.Errorf("mpi: started by %s (%s) but %v: apt-get install libopenmpi3 (the Open MPI of the mpirun that starts the trainer), or point %s at libmpi.so.40", ln.by, ln.env, err, LibEnv)
	}
	if !initialized.CompareAndSwap(false, true) {
		return nil, errors.New("mpi: Init called twice (MPI starts once per process)")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Flag == "" {
		o.Flag = "--rank-timeout"
	}
	w := &World{
		l: l, timeout: o.Timeout, flag: o.Flag,
		interval:  min(max(o.Timeout/10, 20*time.Millisecond), 2*time.Second),
		calls:     make(chan func()),
		done:      make(chan struct{}),
		finalized: make(chan error, 1),
	}
	ready := make(chan error, 1)
	go w.serve(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	if ln.size > 0 && ln.size != w.size {
		w.Close()
		return nil, fmt.Errorf("mpi: mpirun started %d processes (%s) but MPI sees a world of %d: libmpi (%s) is not the Open MPI of that mpirun; point %s at the right one", ln.size, ln.env, w.size, l.path, LibEnv)
	}
	if err := w.identify(); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// identify gathers every rank's pid and processor name, for messages.
func (w *World) identify() error {
	const nameLen = 64
	mine := make([]byte, 8+nameLen)
	var host string
	if err := w.call(func() error { host = w.l.cString(w.l.processorName, maxProcName); return nil }); err != nil {
		return err
	}
	*(*int64)(unsafe.Pointer(&mine[0])) = int64(os.Getpid())
	copy(mine[8:], host)
	all := make([]byte, len(mine)*w.size)
	if err := w.allgather(context.Background(), 0, "start-up exchange", unsafe.Pointer(&mine[0]), unsafe.Pointer(&all[0]), int32(len(mine)), w.l.tByte, mine, all); err != nil {
		return err
	}
	w.hosts, w.pids = make([]string, w.size), make([]int64, w.size)
	for r := range w.size {
		b := all[r*len(mine) : (r+1)*len(mine)]
		w.pids[r] = *(*int64)(unsafe.Pointer(&b[0]))
		w.hosts[r] = strings.TrimRight(string(b[8:]), "\x00")
	}
	return nil
}

// Rank returns this process's rank, 0 … Size()-1.
func (w *World) Rank() int {
	if w == nil {
		return 0
	}
	return w.rank
}

// Size returns the number of processes.
func (w *World) Size() int {
	if w == nil {
		return 1
	}
	return w.size
}

// Timeout returns the deadline of every collective.
func (w *World) Timeout() time.Duration {
	if w == nil {
		return DefaultTimeout
	}
	return w.timeout
}

// Describe says which MPI library the world runs on, its rank, size and
// host, e.g. "rank 0 of 2 on node1 (Open MPI v4.1.4, …, /usr/lib/…/libmpi.so.40.30.4)".
func (w *World) Describe() string {
	if w == nil {
		return "a single process (no MPI)"
	}
	v, _, _ := strings.Cut(w.l.version, ",")
	return fmt.Sprintf("rank %d of %d on %s (%s, %s)", w.rank, w.size, w.hosts[w.rank], v, w.l.path)
}

// Bcast copies root's buf into every other rank's buf; every rank passes
// a buffer of the same length.
func (w *World) Bcast(buf []byte, root int) error {
	if w == nil || len(buf) == 0 {
		return nil
	}
	if root < 0 || root >= w.size {
		return fmt.Errorf("mpi: broadcast from rank %d in a world of %d", root, w.size)
	}
	const chunk = 1 << 30 // MPI counts are C ints
	for lo := 0; lo < len(buf); lo += chunk {
		b := buf[lo:min(lo+chunk, len(buf))]
		err := w.collective(context.Background(), 0, "broadcast", func(comm uintptr, req *uintptr) int32 {
			return w.l.ibcast(unsafe.Pointer(&b[0]), int32(len(b)), w.l.tByte, int32(root), comm, req)
		}, b)
		if err != nil {
			return err
		}
	}
	return nil
}

// Barrier returns once every rank has called it.
func (w *World) Barrier() error {
	if w == nil {
		return nil
	}
	return w.collective(context.Background(), 0, "barrier", func(comm uintptr, req *uintptr) int32 {
		return w.l.ibarrier(comm, req)
	})
}

// AllReduceFloat32 replaces x, on every rank, with the element-wise sum of
// every rank's x (all of the same length), summed in rank order in float64
// and rounded once: every rank gets the same bits, run after run.
func (w *World) AllReduceFloat32(x []float32) error {
	if w == nil {
		return nil
	}
	return w.sumFloat32(context.Background(), 0, "all-reduce", x, 1, 1)
}

// AllReduceFloat64 replaces x, on every rank, with the element-wise sum of
// every rank's x (all of the same length), summed in rank order: every rank
// gets the same bits, run after run.
func (w *World) AllReduceFloat64(x []float64) error {
	if w == nil {
		return nil
	}
	if err := w.checkLengths(context.Background(), 0, "all-reduce", int64(len(x)), 1); err != nil {
		return err
	}
	R := w.size
	chunk := chunkLen(R)
	all := make([]float64, R*min(chunk, len(x)))
	for lo := 0; lo < len(x); lo += chunk {
		m := min(chunk, len(x)-lo)
		send, recv := x[lo:lo+m], all[:R*m]
		if err := w.allgather(context.Background(), 0, "all-reduce", unsafe.Pointer(&send[0]), unsafe.Pointer(&recv[0]), int32(m), w.l.tDouble, send, recv); err != nil {
			return err
		}
		for j := range m {
			var s float64
			for r := range R {
				s += recv[r*m+j]
			}
			x[lo+j] = s
		}
	}
	return nil
}

// sumFloat32 replaces x, which holds the given number of tensors, with the
// rank-order float64 sum over the ranks of comm, divided by div.
func (w *World) sumFloat32(ctx context.Context, comm int, what string, x []float32, tensors int, div float64) error {
	if err := w.checkLengths(ctx, comm, what, int64(len(x)), int64(tensors)); err != nil {
		return err
	}
	R := w.size
	chunk := chunkLen(R)
	all := make([]float32, R*min(chunk, len(x)))
	for lo := 0; lo < len(x); lo += chunk {
		m := min(chunk, len(x)-lo)
		send, recv := x[lo:lo+m], all[:R*m]
		if err := w.allgather(ctx, comm, what, unsafe.Pointer(&send[0]), unsafe.Pointer(&recv[0]), int32(m), w.l.tFloat, send, recv); err != nil {
			return err
		}
		for j := range m {
			var s float64
			for r := range R {
				s += float64(recv[r*m+j])
			}
			x[lo+j] = float32(s / div)
		}
	}
	return nil
}

// chunkLen is the number of values gathered at once: the gathered chunk
// of R ranks stays under 64 MiB whatever the length.
func chunkLen(R int) int { return max(chunkValues/R, 1) }

// chunkValues bounds the values of one gather (64 MiB of float32); tests
// lower it to split small tensors.
var chunkValues = 1 << 24

// checkLengths gathers every rank's (n, tensors) and fails unless all agree.
func (w *World) checkLengths(ctx context.Context, comm int, what string, n, tensors int64) error {
	mine := []int64{n, tensors}
	all := make([]int64, 2*w.size)
	if err := w.allgather(ctx, comm, what, unsafe.Pointer(&mine[0]), unsafe.Pointer(&all[0]), 2, w.l.tInt64, mine, all); err != nil {
		return err
	}
	for r := range w.size {
		if all[2*r] != n || all[2*r+1] != tensors {
			err := fmt.Errorf("mpi: rank %d reduces %d values in %d tensors, rank %d %d in %d: every rank must run the same net", r, all[2*r], all[2*r+1], w.rank, n, tensors)
			w.fail(err)
			return err
		}
	}
	return nil
}

// allgather gathers count values of type dtype from every rank's send into
// recv, rank r's at r·count.
func (w *World) allgather(ctx context.Context, comm int, what string, send, recv unsafe.Pointer, count int32, dtype uintptr, keep ...any) error {
	return w.collective(ctx, comm, what, func(c uintptr, req *uintptr) int32 {
		return w.l.iallgather(send, count, dtype, recv, count, dtype, c, req)
	}, keep...)
}

// collective posts a non-blocking collective on communicator comm through
// post, and waits until it completes, fails or passes its deadline. After
// a failure the world is broken: MPI's collectives cannot be cancelled, so
// the ranks are no longer in step.
func (w *World) collective(ctx context.Context, comm int, what string, post func(comm uintptr, req *uintptr) int32, keep ...any) error {
	if err := w.err(); err != nil {
		return err
	}
	o := &op{what: what, comm: comm, done: make(chan error, 1), keep: keep}
	err := w.call(func() error {
		w.entered[comm]++
		o.seq = w.entered[comm]
		if err := w.l.check(post(w.comms[comm], &o.req), what); err != nil {
			return err
		}
		o.deadline = time.Now().Add(w.timeout)
		w.pending = append(w.pending, o)
		// Tell the others at once that this rank has come.
		for r, p := range w.peers {
			if p != nil && !p.byeSent && w.tested(&p.sendReq) {
				w.send(r, 0)
			}
		}
		return nil
	})
	if err == nil {
		select {
		case err = <-o.done:
		case <-ctx.Done():
			err = fmt.Errorf("mpi: %s abandoned: %w", what, ctx.Err())
		}
	}
	if err != nil {
		w.fail(err)
	}
	return err
}

// err returns the failure that broke the world, if any.
func (w *World) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.broken
}

// fail records err as the world's failure unless one is recorded.
func (w *World) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken == nil {
		w.broken = err
	}
}

// call runs f on the MPI goroutine and returns its error.
func (w *World) call(f func() error) error {
	res := make(chan error, 1)
	select {
	case w.calls <- func() { res <- f() }:
		return <-res
	case <-w.done:
		return errors.New("mpi: the world is closed")
	}
}

// serve is the MPI goroutine: it starts MPI on its own OS thread, then runs
// the calls sent to it, polls the collectives in flight and exchanges the
// heartbeat until Close stops it.
func (w *World) serve(ready chan<- error) {
	runtime.LockOSThread() // for good: the thread ends with the goroutine
	if err := w.start(); err != nil {
		close(w.done)
		ready <- err
		return
	}
	ready <- nil
	timer := time.NewTimer(time.Hour)
	next, sleep := time.Now(), pollMin
	for !w.stop {
		now := time.Now()
		if !now.Before(next) {
			w.beat(now)
			next = now.Add(w.interval)
		}
		wait := time.Until(next)
		if len(w.pending) > 0 {
			w.receive(now)
			w.poll(now)
			// MPI moves data only inside MPI calls: while every rank is
			// in a collective, test it without pause; while some are yet
			// to come, ever less often.
			if w.arrived() {
				sleep = 0
			} else {
				sleep = min(max(2*sleep, pollMin), pollMax)
			}
			wait = min(wait, sleep)
		}
		if wait <= 0 {
			select {
			case f := <-w.calls:
				f()
			default:
			}
			continue
		}
		timer.Reset(wait)
		select {
		case f := <-w.calls:
			f()
			sleep = pollMin
		case <-timer.C:
		}
		timer.Stop()
	}
	close(w.done)
	if w.finalize {
		// MPI_Finalize waits for every rank: Close waits for it no longer
		// than the deadline, so that a rank that dies now cannot hang it.
		w.finalized <- w.l.check(w.l.finalize(), "MPI_Finalize")
	}
}

// start initialises MPI on the calling (locked) thread and starts the
// heartbeat.
func (w *World) start() error {
	l := w.l
	// Open MPI may catch SIGSEGV, SIGBUS, … to print its own backtrace
	// (4.1 leaves a handler already installed alone): keep Go's, which
	// turn some of them into panics, whatever the version.
	if _, ok := os.LookupEnv("OMPI_MCA_opal_signal"); !ok {
		os.Setenv("OMPI_MCA_opal_signal", "")
	}
	var provided int32
	if err := l.check(l.initThread(nil, nil, threadFunneled, &provided), "MPI_Init_thread"); err != nil {
		return err
	}
	if provided < threadFunneled {
		return fmt.Errorf("mpi: %s provides thread level %d, not MPI_THREAD_FUNNELED", l.path, provided)
	}
	w.comms = []uintptr{l.commWorld}
	w.entered = []int64{0}
	var rank, size int32
	if err := errors.Join(
		l.check(l.commSetErrhandler(l.commWorld, l.errorsReturn), "MPI_Comm_set_errhandler"),
		l.check(l.commRank(l.commWorld, &rank), "MPI_Comm_rank"),
		l.check(l.commSize(l.commWorld, &size), "MPI_Comm_size"),
	); err != nil {
		return err
	}
	w.rank, w.size = int(rank), int(size)
	// The heartbeat's communicator: duplicated before any heartbeat runs,
	// so a missing rank is named only by the deadline.
	var req uintptr
	if err := l.check(l.commIdup(l.commWorld, &w.hbComm, &req), "MPI_Comm_idup"); err != nil {
		return err
	}
	if err := w.waitLocal(&req, "start-up"); err != nil {
		return err
	}
	now := time.Now()
	w.peers = make([]*peer, w.size)
	for r := range w.size {
		if r != w.rank {
			w.peers[r] = &peer{lastHeard: now}
			w.post(r)
		}
	}
	return nil
}

// waitLocal polls req on the MPI goroutine until it completes or the
// deadline passes, without naming ranks (for start-up and shut-down).
func (w *World) waitLocal(req *uintptr, what string) error {
	deadline := time.Now().Add(w.timeout)
	for sleep := pollMin; ; sleep = min(2*sleep, pollMax) {
		var flag int32
		if err := w.l.check(w.l.test(req, &flag, nil), "MPI_Test"); err != nil {
			return err
		}
		if flag != 0 {
			*req = 0
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mpi: the %s did not complete within %v (%s): a rank did not start or stopped answering", what, w.timeout, w.flag)
		}
		time.Sleep(sleep)
	}
}

// post posts the heartbeat receive from rank r.
func (w *World) post(r int) {
	p := w.peers[r]
	w.l.irecv(unsafe.Pointer(&p.recvBuf[0]), hbMax, w.l.tInt64, int32(r), hbTag, w.hbComm, &p.recvReq)
}

// done reports whether req completed (clearing it) or is empty.
func (w *World) tested(req *uintptr) bool {
	if *req == 0 {
		return true
	}
	var flag int32
	if w.l.test(req, &flag, nil) != success || flag != 0 {
		*req = 0
		return true
	}
	return false
}

// receive takes in the heartbeats that arrived.
func (w *World) receive(now time.Time) {
	for r, p := range w.peers {
		if p == nil || p.recvReq == 0 || !w.tested(&p.recvReq) {
			continue
		}
		p.lastHeard = now
		n := int(min(max(p.recvBuf[1], 0), hbMax-2))
		p.entered = append(p.entered[:0], p.recvBuf[2:2+n]...)
		if p.recvBuf[0]&hbBye != 0 {
			p.bye = true
		} else {
			w.post(r)
		}
	}
}

// beat takes in the heartbeats that arrived and sends this rank's to every
// rank whose previous one has gone.
func (w *World) beat(now time.Time) {
	w.receive(now)
	for r, p := range w.peers {
		if p == nil || p.byeSent || !w.tested(&p.sendReq) {
			continue
		}
		w.send(r, 0)
	}
}

// send sends this rank's heartbeat to rank r.
func (w *World) send(r int, flags int64) {
	p := w.peers[r]
	p.sendBuf[0], p.sendBuf[1] = flags, int64(len(w.entered))
	copy(p.sendBuf[2:], w.entered)
	w.l.isend(unsafe.Pointer(&p.sendBuf[0]), int32(2+len(w.entered)), w.l.tInt64, int32(r), hbTag, w.hbComm, &p.sendReq)
}

// arrived reports whether, as far as the heartbeat says, every rank has
// entered one of the collectives in flight.
func (w *World) arrived() bool {
	for _, o := range w.pending {
		all := true
		for _, p := range w.peers {
			if p != nil && (o.comm >= len(p.entered) || p.entered[o.comm] < o.seq) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// poll tests the collectives in flight and ends those that completed,
// failed or passed their deadline.
func (w *World) poll(now time.Time) {
	keep := w.pending[:0]
	for _, o := range w.pending {
		var flag int32
		code := w.l.test(&o.req, &flag, nil)
		switch {
		case code != success:
			o.done <- w.l.check(code, o.what)
		case flag != 0:
			o.done <- nil
		case now.After(o.deadline):
			w.receive(now)
			o.done <- w.blame(o, now)
			w.abandoned = append(w.abandoned, o)
		default:
			keep = append(keep, o)
		}
	}
	clear(w.pending[len(keep):])
	w.pending = keep
}

// RankError is a collective that did not complete in time, with the ranks
// the heartbeat blames.
type RankError struct {
	// Ranks are the ranks missing from the collective; empty when every
	// rank answered and reached it (the network lost it).
	Ranks []int
	// Answering is false when those ranks stopped answering (died or
	// stopped), true when they answer but did not reach the collective.
	Answering bool
	Timeout   time.Duration
	msg       string
}

func (e *RankError) Error() string { return e.msg }

// blame names the ranks that keep o from completing: those whose heartbeat
// went silent, else those whose heartbeat says they have not entered it.
func (w *World) blame(o *op, now time.Time) *RankError {
	var silent, behind []int
	var lastHeard time.Duration
	for r, p := range w.peers {
		if p == nil {
			continue
		}
		age := now.Sub(p.lastHeard)
		switch {
		case age > staleBeat*w.interval:
			silent = append(silent, r)
			lastHeard = max(lastHeard, age)
		case o.comm >= len(p.entered) || p.entered[o.comm] < o.seq:
			behind = append(behind, r)
		}
	}
	e := &RankError{Timeout: w.timeout}
	switch {
	case len(silent) > 0:
		e.Ranks = silent
		e.msg = fmt.Sprintf("mpi: %s did not answer within %v (%s): %s (rank %d waited in the %s; last heard %v ago)",
			w.ranks(silent), w.timeout, w.flag, pick(len(silent), "it died or is stopped", "they died or are stopped"), w.rank, o.what, lastHeard.Round(time.Millisecond))
	case len(behind) > 0:
		e.Ranks, e.Answering = behind, true
		e.msg = fmt.Sprintf("mpi: %s answer%s but did not reach the %s within %v (%s): %s (rank %d waited)",
			w.ranks(behind), pick(len(behind), "s", ""), o.what, w.timeout, w.flag, pick(len(behind), "it hangs or is slower than the timeout", "they hang or are slower than the timeout"), w.rank)
	default:
		e.msg = fmt.Sprintf("mpi: the %s did not complete within %v (%s) though every rank answers and reached it (rank %d waited)", o.what, w.timeout, w.flag, w.rank)
	}
	return e
}

// ranks names ranks for a message: "rank 1 (node2, pid 4242)", "ranks 1, 3 (…)".
func (w *World) ranks(rs []int) string {
	var parts []string
	for _, r := range rs {
		s := fmt.Sprint(r)
		if r < len(w.hosts) && w.hosts[r] != "" {
			s += fmt.Sprintf(" (%s, pid %d)", w.hosts[r], w.pids[r])
		}
		parts = append(parts, s)
	}
	return pick(len(rs), "rank ", "ranks ") + strings.Join(parts, ", ")
}

func pick(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Close ends MPI (MPI_Finalize) once every rank has called Close: each
// sends the others a last heartbeat and waits, within the deadline, for
// theirs. After a failed collective it does not call MPI_Finalize, which
// would wait for the missing rank forever: the process should then exit
// with a non-zero status, upon which mpirun ends the other ranks (srun
// too, with --kill-on-bad-exit). It returns a *RankError when a rank does
// not close in time.
func (w *World) Close() error {
	if w == nil {
		return nil
	}
	w.closeOnce.Do(func() {
		if w.err() != nil {
			w.call(func() error { w.stop = true; return nil })
			return
		}
		err := w.call(func() error {
			w.stop = true
			err := w.farewell()
			w.finalize = err == nil
			return err
		})
		if err != nil {
			w.fail(err)
			w.closeErr = err
			return
		}
		select {
		case w.closeErr = <-w.finalized:
		case <-time.After(w.timeout):
			w.closeErr = fmt.Errorf("mpi: MPI_Finalize did not return within %v (%s): a rank died while closing", w.timeout, w.flag)
		}
	})
	return w.closeErr
}

// farewell sends every rank the last heartbeat and waits for theirs, so
// that no message is in flight when MPI ends.
func (w *World) farewell() error {
	deadline := time.Now().Add(w.timeout)
	for sleep := pollMin; ; sleep = min(2*sleep, pollMax) {
		now := time.Now()
		w.receive(now)
		waiting := false
		var missing []int
		for r, p := range w.peers {
			if p == nil {
				continue
			}
			if w.tested(&p.sendReq) && !p.byeSent {
				w.send(r, hbBye)
				p.byeSent = true
			}
			if !p.bye {
				missing = append(missing, r)
			}
			if p.sendReq != 0 || !p.bye {
				waiting = true
			}
		}
		if !waiting {
			return nil
		}
		if now.After(deadline) {
			return &RankError{Ranks: missing, Timeout: w.timeout, msg: fmt.Sprintf("mpi: %s did not close within %v (%s): it died, is stopped or did not finish (rank %d waited)",
				w.ranks(missing), w.timeout, w.flag, w.rank)}
		}
		time.Sleep(sleep)
	}
}
