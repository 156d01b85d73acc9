package train

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/alexnet-go/trainer/data"
	"github.com/alexnet-go/trainer/internal/mpi"
	"github.com/alexnet-go/trainer/parallel"
)

// A run started by mpirun or srun is one rank of an MPI world (package
// mpi), one replica per process: with P ranks of L replicas' devices each
// (--gpus), the run trains P·L replicas, rank r's being replicas r·L …,
// each on --batch/(P·L) images of every global batch. Every rank loads
// the same global batches (the same data, seed and order) and trains its
// slice; the gradients are averaged across the ranks (open.Reducers); the
// steps' losses and errors, and the validation and test scores (each rank
// scoring its slice of every batch), are summed over the ranks, so every
// rank holds the same numbers and takes the same decisions. Rank 0 alone
// takes the run directory's lock and writes into it (config.json,
// metrics.jsonl, weights, checkpoints) and logs; the others only read it:
// on --resume every rank reads config.json and the checkpoint from the
// run directory, which must therefore be on a filesystem every rank sees
// at the same path (as the data must be). Whether a checkpoint is due is
// rank 0's decision, and a signal on any rank stops every rank after the
// same step, rank 0 saving the checkpoint; both travel with each step's
// sums.
//
// While rank 0 writes a checkpoint the others wait for it in the next
// reduction: that, like every collective, must end within --rank-timeout,
// after which a rank gives up with a *mpi.RankError naming the rank it
// waited for, and the run ends with one line saying so and how to resume.

// initWorld starts MPI when a launcher started the process (nil, nil
// when none did: a world of one).
func initWorld(timeout time.Duration, log io.Writer) (*mpi.World, error) {
	if timeout < 0 {
		return nil, fmt.Errorf("--rank-timeout %v: must be positive (0: the default, %v)", timeout, mpi.DefaultTimeout)
	}
	w, err := mpi.Init(mpi.Options{Timeout: timeout, Flag: "--rank-timeout"})
	if err != nil {
		return nil, err
	}
	if w != nil && w.Rank() == 0 {
		fmt.Fprintf(log, "MPI: %s; a rank that stops answering ends the run within %v (--rank-timeout)\n", w.Describe(), w.Timeout())
	}
	return w, nil
}

// closeWorld ends MPI after the run, and says, after a rank failed, where
// the run stands: one line naming the rank, that the last checkpoint in
// dir is whole, and how to go on.
func closeWorld(w *mpi.World, dir string, err error) error {
	if w == nil {
		return err
	}
	var re *mpi.RankError
	if errors.As(err, &re) {
		err = fmt.Errorf("%w; %s, started as this run was (the same number of processes)", re, OnDisk(dir))
	}
	if cerr := w.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// agreeAll returns err on the rank where it is set, and on every other rank
// an error naming the ranks that failed: a failure on one rank before the
// run's first collective ends every rank at once. A collective.
func agreeAll(w *mpi.World, err error) error {
	if w.Size() == 1 {
		return err
	}
	v := make([]float64, w.Size())
	if err != nil {
		v[w.Rank()] = 1
	}
	if cerr := w.AllReduceFloat64(v); cerr != nil {
		return errors.Join(err, cerr)
	}
	if err != nil {
		return err
	}
	for r, f := range v {
		if f != 0 {
			return fmt.Errorf("rank %d could not start the run (see its message)", r)
		}
	}
	return nil
}

// bcastString returns rank 0's s on every rank. A collective.
func bcastString(w *mpi.World, s string) (string, error) {
	if w.Size() == 1 {
		return s, nil
	}
	n := binary.LittleEndian.AppendUint64(nil, uint64(len(s)))
	if err := w.Bcast(n, 0); err != nil {
		return "", err
	}
	b := make([]byte, binary.LittleEndian.Uint64(n))
	copy(b, s)
	if len(b) > 0 {
		if err := w.Bcast(b, 0); err != nil {
			return "", err
		}
	}
	return string(b), nil
}

// combine sums one step's result over the ranks, each holding its slice's
// (parallel.Replicas.Result), with rank 0's due (a checkpoint) and any
// rank's stop (a signal): the global batch's result and the decisions
// every rank then takes. A collective.
func (t *trainer) combine(res parallel.Result, due, stop bool) (parallel.Result, bool, bool, error) {
	if t.world.Size() == 1 {
		return res, due, stop, nil
	}
	v := []float64{res.Loss * float64(res.N), float64(res.Top1), float64(res.Top5), float64(res.N), 0, 0}
	if due && t.world.Rank() == 0 {
		v[4] = 1
	}
	if stop {
		v[5] = 1
	}
	if err := t.world.AllReduceFloat64(v); err != nil {
		return res, false, false, err
	}
	out := parallel.Result{N: int(v[3]), Top1: int(v[1]), Top5: int(v[2])}
	if out.N > 0 {
		out.Loss = v[0] / v[3]
	}
	return out, v[4] != 0, v[5] != 0, nil
}

// evaluate is Evaluate over the world: each rank scores its replicas'
// slice of every batch, and the sums are combined, so every rank returns
// the score of the whole set. The loader does not stop on ctx, which a
// signal cancels on one rank only: the ranks stop together, after a step.
func (t *trainer) evaluate(ctx context.Context, l data.Batcher) (Score, error) {
	if t.world.Size() == 1 {
		return Evaluate(ctx, t.r, l)
	}
	var v [4]float64 // loss·N, top-1 errors, top-5 errors, N
	for b, err := range l.EpochFrom(context.WithoutCancel(ctx), 0, 0) {
		if err != nil {
			return Score{}, err
		}
		res, err := t.r.Eval(parallel.Batch{N: b.N, Images: b.Images, Labels: b.Labels})
		l.Recycle(b)
		if err != nil {
			return Score{}, err
		}
		v[0] += res.Loss * float64(res.N)
		v[1] += float64(res.Top1)
		v[2] += float64(res.Top5)
		v[3] += float64(res.N)
	}
	if err := t.world.AllReduceFloat64(v[:]); err != nil {
		return Score{}, err
	}
	s := Score{Images: int(v[3])}
	if s.Images > 0 {
		s.Loss, s.Top1Err, s.Top5Err = v[0]/v[3], v[1]/v[3], v[2]/v[3]
	}
	return s, nil
}

// sameStep fails unless every rank resumes from rank 0's step. A
// collective.
func (t *trainer) sameStep() error {
	if t.world.Size() == 1 {
		return nil
	}
	b := binary.LittleEndian.AppendUint64(nil, t.st.Step)
	if err := t.world.Bcast(b, 0); err != nil {
		return err
	}
	if s := binary.LittleEndian.Uint64(b); s != t.st.Step {
		return fmt.Errorf("--resume %s: rank %d read a checkpoint of step %d, rank 0 one of step %d: the run directory must be one filesystem every rank sees at the same path", t.c.Out, t.world.Rank(), t.st.Step, s)
	}
	return nil
}
