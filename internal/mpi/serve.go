package mpi

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
)

// The MPI goroutine's pauses between tests of a collective in flight.
const (
	pollMin = 20 * time.Microsecond
	pollMax = time.Millisecond
)

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
func (w *World) serve(ready chan<- error, startTimeout time.Duration) {
	runtime.LockOSThread() // for good: the thread ends with the goroutine
	if err := w.start(startTimeout); err != nil {
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
// heartbeat, waiting for the other ranks no longer than timeout.
func (w *World) start(timeout time.Duration) error {
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
	if err := w.waitLocal(&req, timeout); err != nil {
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

// waitLocal polls req on the MPI goroutine until it completes or timeout
// passes, without naming ranks: the heartbeat does not run yet.
func (w *World) waitLocal(req *uintptr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
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
			return fmt.Errorf("mpi: MPI did not start within %v: a rank did not start, died or is stopped", timeout)
		}
		time.Sleep(sleep)
	}
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
