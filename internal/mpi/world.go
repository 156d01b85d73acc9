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
	"strconv"
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
	// StartTimeout bounds Init's wait for every rank to start MPI, which
	// on a cluster can take longer than a collective. 0 means Timeout.
	StartTimeout time.Duration
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
	start := o.StartTimeout
	if start <= 0 {
		start = o.Timeout
	}
	ready := make(chan error, 1)
	go w.serve(ready, start)
	// MPI_Init_thread waits for every rank and cannot be interrupted: a
	// rank that never starts leaves the MPI goroutine there for good.
	select {
	case err := <-ready:
		if err != nil {
			return nil, err
		}
	case <-time.After(start):
		return nil, fmt.Errorf("mpi: MPI did not start within %v: a rank did not start, died or is stopped", start)
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
// host, e.g. "rank 0 of 2 on node1 (Open MPI v4.1.4, /usr/lib/…/libmpi.so.40.30.4)",
// and whether the launcher bound the process to fewer CPUs than the host has.
func (w *World) Describe() string {
	if w == nil {
		return "a single process (no MPI)"
	}
	v, _, _ := strings.Cut(w.l.version, ",")
	d := fmt.Sprintf("rank %d of %d on %s (%s, %s)", w.rank, w.size, w.hosts[w.rank], v, w.l.path)
	if n, all := runtime.NumCPU(), onlineCPUs(); n < all {
		d += fmt.Sprintf(", bound to %d of the host's %d CPUs (mpirun binds each process to a core unless told --bind-to none)", n, all)
	}
	return d
}

// onlineCPUs counts the host's CPUs (/sys/devices/system/cpu/online, e.g.
// "0-63" or "0,2-5"), or returns 0 when it cannot tell.
func onlineCPUs() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 0
	}
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, found := strings.Cut(part, "-")
		if !found {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		z, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || z < a {
			return 0
		}
		n += z - a + 1
	}
	return n
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
