package open

import (
	"fmt"
	"io"
	"strings"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cuda"
	"github.com/alexnet-go/trainer/internal/mpi"
	"github.com/alexnet-go/trainer/parallel"
)

// Reducers is how the replicas' gradients are averaged, for
// parallel.Options.Reducers: one group per worker (tower), the group's
// devices one per replica.
//
// In one process (w nil or of size 1), a group of CUDA devices reduces
// through NCCL (cuda.NCCLGroup: ncclAllReduce on a stream beside the
// backward pass, or, where NCCL is missing or refuses several ranks on
// one GPU, device copies); any other group through parallel's in-process
// reference.
//
// Over the processes of an MPI world (one replica each, rank r replica r):
// when every rank's devices are CUDA devices and every rank loads NCCL,
// rank 0 makes the group's NCCL unique id and MPI broadcasts it to the
// others, which join one NCCL communicator; otherwise the group reduces
// through MPI on the host (mpi.Group: the same float64 sum in rank order
// as the in-process reference, so the same bits as one process of as many
// replicas). Making a group is then a collective: every rank makes its
// groups in the same order, as NewReplicas does (worker order).
//
// Each group's way is said on log, one line.
func Reducers(w *mpi.World, log io.Writer) parallel.ReducerFactory {
	return func(worker int, devs []gpu.Device) (parallel.GroupReducer, error) {
		cds := cudaDevices(devs)
		names := make([]string, len(devs))
		for i, d := range devs {
			names[i] = d.Name()
		}
		what := fmt.Sprintf("the gradients of worker %d (%s", worker, strings.Join(names, ", "))
		if w.Size() > 1 {
			what += fmt.Sprintf(" on rank %d, and the other ranks'", w.Rank())
		}
		what += ")"
		if w.Size() == 1 {
			if cds == nil {
				fmt.Fprintf(log, "%s: averaged by the in-process reference (float64 sums in replica order)\n", what)
				return parallel.Reference(worker, devs)
			}
			g, err := cuda.NewNCCLGroup(cds)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(log, "%s: %s\n", what, g)
			return g, nil
		}
		useNCCL, why, err := worldNCCL(w, cds)
		if err != nil {
			return nil, err
		}
		if !useNCCL {
			g, err := w.NewGroup()
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(log, "%s: averaged through MPI on the host (all-gather, float64 sums in rank order)%s\n", what, why)
			return g, nil
		}
		var id cuda.NCCLID
		var idErr error
		if w.Rank() == 0 {
			id, idErr = cuda.NewNCCLID()
		}
		// Every rank learns whether rank 0 made the id before any waits
		// for the others in ncclCommInitRank, which has no deadline.
		failed := []float64{0}
		if idErr != nil {
			failed[0] = 1
		}
		if err := w.AllReduceFloat64(failed); err != nil {
			return nil, err
		}
		if idErr != nil {
			return nil, idErr
		}
		if failed[0] != 0 {
			return nil, fmt.Errorf("open: rank 0 could not make the NCCL id of worker %d's group (see its message)", worker)
		}
		if err := w.Bcast(id[:], 0); err != nil {
			return nil, err
		}
		g, err := cuda.NewNCCLGroupRanks(cds, id, w.Size()*len(cds), w.Rank()*len(cds))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "%s: %s (id broadcast by MPI)\n", what, g)
		return g, nil
	}
}

// worldNCCL reports whether every rank of w reduces with NCCL: all its
// devices CUDA devices (cds not nil) and NCCL loaded. why says otherwise
// why not, after a "; ". A collective.
func worldNCCL(w *mpi.World, cds []*cuda.Device) (ok bool, why string, err error) {
	can := []float64{0}
	var loadErr error
	if cds != nil {
		if _, loadErr = cuda.NCCLVersion(); loadErr == nil {
			can[0] = 1
		}
	}
	if err := w.AllReduceFloat64(can); err != nil {
		return false, "", err
	}
	switch {
	case int(can[0]) == w.Size():
		return true, "", nil
	case cds == nil:
		return false, "", nil // CPU devices: MPI is their way
	case loadErr != nil:
		return false, fmt.Sprintf("; NCCL does not load here (%v)", loadErr), nil
	}
	return false, fmt.Sprintf("; %d of %d ranks cannot reduce with NCCL (CPU devices, or no NCCL)", w.Size()-int(can[0]), w.Size()), nil
}

// cudaDevices returns devs as CUDA devices, or nil unless they all are.
func cudaDevices(devs []gpu.Device) []*cuda.Device {
	out := make([]*cuda.Device, len(devs))
	for i, d := range devs {
		c, ok := d.(*cuda.Device)
		if !ok {
			return nil
		}
		out[i] = c
	}
	return out
}
