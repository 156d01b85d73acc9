package parallel_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// shifted is one process's view of a group shared by several (what an MPI
// world's group is): its replica k is the group's replica k+by.
type shifted struct {
	g     parallel.GroupReducer
	by    int
	async *atomic.Int64 // counts ReduceAsync calls; nil: not an AsyncReducer
}

func (s shifted) Reduce(ctx context.Context, k int, dev gpu.Device, grads []gpu.Buffer) error {
	return s.g.Reduce(ctx, k+s.by, dev, grads)
}

func (s shifted) Flush(ctx context.Context, k int, dev gpu.Device) error {
	return s.g.(parallel.Flusher).Flush(ctx, k+s.by, dev)
}

// asyncShifted is shifted as an AsyncReducer: the mean it leaves to come
// is marked by an event recorded after the reduction's call.
type asyncShifted struct{ shifted }

func (s asyncShifted) ReduceAsync(ctx context.Context, k int, dev gpu.Device, grads []gpu.Buffer) (gpu.Event, error) {
	s.async.Add(1)
	if err := s.Reduce(ctx, k, dev, grads); err != nil {
		return nil, err
	}
	return dev.Record()
}

// Two Replicas of one replica each, placed as replicas 0 and 1 of two
// (Options.TotalReplicas, FirstReplica: two MPI ranks) and sharing their
// groups, train as one Replicas of two on the same global batches: each
// trains its slice with its images' masks, so the losses combined and the
// weights are the same bits. Through an AsyncReducer too, whose events
// the workers wait for.
func TestReplicasAcrossProcesses(t *testing.T) {
	for _, async := range []bool{false, true} {
		net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
		if err != nil {
			t.Fatal(err)
		}
		w := model.Init(net, 5)
		o := parallel.Options{Batch: 8, Seed: 3, Momentum: 0.9, WeightDecay: 5e-4, BucketBytes: 1 << 16}
		whole, err := parallel.NewReplicas(net, [][]gpu.Device{{cpuDev(0), cpuDev(1)}, {cpuDev(2), cpuDev(3)}}, w, o)
		if err != nil {
			t.Fatal(err)
		}
		defer whole.Close()

		// The groups both "processes" share, one per worker, made once.
		var mu sync.Mutex
		shared := map[int]parallel.GroupReducer{}
		var calls atomic.Int64
		factory := func(first int) parallel.ReducerFactory {
			return func(worker int, devs []gpu.Device) (parallel.GroupReducer, error) {
				mu.Lock()
				defer mu.Unlock()
				if shared[worker] == nil {
					shared[worker], _ = parallel.Reference(worker, make([]gpu.Device, 2))
				}
				s := shifted{g: shared[worker], by: first, async: &calls}
				if async {
					return asyncShifted{s}, nil
				}
				return s, nil
			}
		}
		var parts [2]*parallel.Replicas
		for k := range parts {
			ok := o
			ok.TotalReplicas, ok.FirstReplica, ok.Reducers = 2, k, factory(k)
			if parts[k], err = parallel.NewReplicas(net, [][]gpu.Device{{cpuDev(2 * k), cpuDev(2*k + 1)}}, w, ok); err != nil {
				t.Fatal(err)
			}
			defer parts[k].Close()
		}
		rng := rand.New(rand.NewPCG(7, 8))
		for step := range 3 {
			b := randomBatch(net, 8, rng)
			want, err := whole.Train(b, 0.01)
			if err != nil {
				t.Fatal(err)
			}
			var got [2]parallel.Result
			var errs [2]error
			var wg sync.WaitGroup
			for k, p := range parts {
				wg.Go(func() { got[k], errs[k] = p.Train(b, 0.01) })
			}
			wg.Wait()
			if errs[0] != nil || errs[1] != nil {
				t.Fatal(errs)
			}
			loss := got[0].Loss*float64(got[0].N)/8 + got[1].Loss*float64(got[1].N)/8
			if got[0].N != 4 || got[1].N != 4 || loss != want.Loss || got[0].Top1+got[1].Top1 != want.Top1 {
				t.Fatalf("async %v, step %d: the parts' loss %v (N %d, %d), top-1 %d; one process %v, %d", async, step, loss, got[0].N, got[1].N, got[0].Top1+got[1].Top1, want.Loss, want.Top1)
			}
			// Eval: each part scores its slice of a short batch.
			e := randomBatch(net, 6, rng)
			wantE, err := whole.Eval(e)
			if err != nil {
				t.Fatal(err)
			}
			e0, err0 := parts[0].Eval(e)
			e1, err1 := parts[1].Eval(e)
			if err0 != nil || err1 != nil {
				t.Fatal(err0, err1)
			}
			if e0.N != 4 || e1.N != 2 || e0.Top1+e1.Top1 != wantE.Top1 || e0.Loss*4/6+e1.Loss*2/6 != wantE.Loss {
				t.Fatalf("async %v: eval of 6 images: parts %d, %d images, loss %v, %v; one process %v", async, e0.N, e1.N, e0.Loss, e1.Loss, wantE.Loss)
			}
		}
		ref, _ := whole.Weights()
		for k, p := range parts {
			wk, _ := p.Weights()
			sameBits(t, "a part parted from the whole", wk, ref)
			if st := p.ReduceStats(); st.Members != 2 || st.Calls == 0 {
				t.Errorf("part %d: reduce stats %+v", k, st)
			}
		}
		if async != (calls.Load() > 0) {
			t.Errorf("async %v: %d ReduceAsync calls", async, calls.Load())
		}
	}
	// A placement outside the world is refused.
	net, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if _, err := parallel.NewReplicas(net, [][]gpu.Device{{cpuDev(0), cpuDev(1)}}, model.Init(net, 1), parallel.Options{Batch: 8, TotalReplicas: 2, FirstReplica: 2}); err == nil {
		t.Error("replica 2 of 2: no error")
	}
}
