package mpi

import (
	"context"
	"fmt"

	"github.com/alexnet-go/trainer/gpu"
)

// Group averages gradients across the processes, one replica per process:
// the ranks' tensors are gathered (MPI_Iallgather, in chunks), summed in
// rank order in float64 and divided by the world's size, which is exactly
// what the in-process reduction of package parallel does with its
// replicas in replica order. Rank r is therefore replica r, and R
// processes of one replica each apply the bits of the mean that one
// process of R replicas applies.
//
// A group has a communicator of its own: the groups of a replica's
// workers (one per tower) reduce concurrently, each one call at a time.
// Every rank creates its groups in the same order.
type Group struct {
	w    *World
	comm int
}

// NewGroup returns a new gradient group. It is a collective: every rank
// calls it, in the same order relative to its other collectives. A nil
// World gives a group of one, whose Reduce leaves the gradients as they
// are.
func (w *World) NewGroup() (*Group, error) {
	if w == nil {
		return &Group{}, nil
	}
	if err := w.err(); err != nil {
		return nil, err
	}
	var id int
	if err := w.call(func() error { id = len(w.comms); return nil }); err != nil {
		return nil, err
	}
	if id >= hbMax-2 {
		return nil, fmt.Errorf("mpi: a world holds at most %d groups", hbMax-3)
	}
	var newComm uintptr
	err := w.collective(context.Background(), 0, "group creation", func(comm uintptr, req *uintptr) int32 {
		return w.l.commIdup(comm, &newComm, req)
	}, &newComm)
	if err == nil {
		err = w.call(func() error {
			w.comms = append(w.comms, newComm)
			w.entered = append(w.entered, 0)
			return w.l.check(w.l.commSetErrhandler(newComm, w.l.errorsReturn), "MPI_Comm_set_errhandler")
		})
	}
	if err != nil {
		w.fail(err)
		return nil, err
	}
	return &Group{w: w, comm: id}, nil
}

// Reduce replaces the gradients grads on dev with their mean over the
// ranks: it downloads them, averages them with the other ranks' (see
// Group) and uploads the mean. replica is the caller's replica in this
// process, which holds one: it must be 0. Every rank passes tensors of
// the same lengths in the same order. ctx abandons the wait, which, like
// a missed deadline, leaves the world broken.
func (g *Group) Reduce(ctx context.Context, replica int, dev gpu.Device, grads []gpu.Buffer) error {
	if replica != 0 {
		return fmt.Errorf("mpi: replica %d: a process of an MPI world holds one replica (replica 0); start one process per replica", replica)
	}
	if g.w == nil {
		return nil
	}
	n := 0
	for _, b := range grads {
		n += b.Len()
	}
	flat := make([]float32, n)
	off := 0
	for _, b := range grads {
		if err := dev.Download(flat[off:off+b.Len()], b); err != nil {
			return err
		}
		off += b.Len()
	}
	if err := g.w.sumFloat32(ctx, g.comm, "gradient reduction", flat, len(grads), float64(g.w.size)); err != nil {
		return err
	}
	off = 0
	for _, b := range grads {
		if err := dev.Upload(b, flat[off:off+b.Len()]); err != nil {
			return err
		}
		off += b.Len()
	}
	return nil
}
