package mpi

import (
	"context"
	"fmt"
	"time"
	"unsafe"
)

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

// Bcast copies root's buf into every other rank's buf; every rank passes
// a buffer of the same length (checked first).
func (w *World) Bcast(buf []byte, root int) error {
	if w == nil {
		return nil
	}
	if root < 0 || root >= w.size {
		return fmt.Errorf("mpi: broadcast from rank %d in a world of %d", root, w.size)
	}
	if err := w.checkLengths(context.Background(), 0, "broadcast", int64(len(buf)), 1); err != nil {
		return err
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
	return sumRanks(w, context.Background(), 0, "all-reduce", x, 1, 1, w.l.tDouble)
}

// sumFloat32 replaces x, which holds the given number of tensors, with the
// rank-order float64 sum over the ranks of comm, divided by div.
func (w *World) sumFloat32(ctx context.Context, comm int, what string, x []float32, tensors int, div float64) error {
	return sumRanks(w, ctx, comm, what, x, tensors, div, w.l.tFloat)
}

// sumRanks is sumFloat32 for float32 or float64 values, dtype being MPI's
// handle for T: gathered in chunks, summed in rank order in float64. (For
// float64 and div 1 the division is exact: the plain sum.)
func sumRanks[T float32 | float64](w *World, ctx context.Context, comm int, what string, x []T, tensors int, div float64, dtype uintptr) error {
	if err := w.checkLengths(ctx, comm, what, int64(len(x)), int64(tensors)); err != nil {
		return err
	}
	R := w.size
	chunk := chunkLen(R)
	all := make([]T, R*min(chunk, len(x)))
	for lo := 0; lo < len(x); lo += chunk {
		m := min(chunk, len(x)-lo)
		send, recv := x[lo:lo+m], all[:R*m]
		if err := w.allgather(ctx, comm, what, unsafe.Pointer(&send[0]), unsafe.Pointer(&recv[0]), int32(m), dtype, send, recv); err != nil {
			return err
		}
		for j := range m {
			var s float64
			for r := range R {
				s += float64(recv[r*m+j])
			}
			x[lo+j] = T(s / div)
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
			err := fmt.Errorf("mpi: %s: rank %d passes %d values in %d tensors, rank %d %d in %d: every rank must pass the same lengths (run the same net)", what, r, all[2*r], all[2*r+1], w.rank, n, tensors)
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
