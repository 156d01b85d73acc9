package bench

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sort"
	"time"

	"github.com/alexnet-go/trainer/data"
	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/open"
	"github.com/alexnet-go/trainer/parallel"
)

// dataOptions is how the end-to-end rows open o.Data for net name.
func dataOptions(name string, o SpeedOptions) open.DataOptions {
	return open.DataOptions{Dir: o.Data, Net: name, LRN: "paper", Activation: "relu", Pool: "3/2", Batch: o.Batch, Seed: 1, Workers: o.Workers}
}

// dataNet is net name built for o.Data's channels and classes.
func dataNet(name string, o SpeedOptions) (*model.Net, error) {
	ds, err := open.Data(dataOptions(name, o))
	if err != nil {
		return nil, fmt.Errorf("bench speed --data %s: %w", o.Data, err)
	}
	defer ds.Close()
	return ds.Net, nil
}

// endToEnd times training steps of net on place from o.Data through the
// real loader, as trainer train runs them: the batch after the current
// one is taken from the loader and staged on the devices while the step
// computes, and the step's scores are read back after. Each step's time
// is wall time from one step's end to the next's, so it includes any
// wait for data; DataWaitMs is that wait alone.
func endToEnd(name, place string, o SpeedOptions) (SpeedRow, error) {
	row := SpeedRow{Net: name, Placement: place, Mode: "end-to-end", Precision: o.precision(), Batch: o.Batch}
	ds, err := open.Data(dataOptions(name, o))
	if err != nil {
		return row, fmt.Errorf("bench speed --data %s: %w", o.Data, err)
	}
	defer ds.Close()
	net := ds.Net
	spec, _ := open.ForNet(net, place)
	devs, err := open.Devices(spec, open.DeviceOptions{Threads: o.Threads, Precision: o.Precision})
	if errors.Is(err, open.ErrNoCUDA) || errors.Is(err, open.ErrNoSuchGPU) {
		row.Skipped = "no such device here"
		return row, nil
	}
	if err != nil {
		return row, err
	}
	defer devs.Close()
	r, err := parallel.New(net, devs, model.Init(net, 1), parallel.Options{Batch: o.Batch, Seed: 1, Momentum: 0.9, WeightDecay: 5e-4})
	if err != nil {
		return row, err
	}
	defer r.Close()
	for _, d := range r.Devices() {
		if len(row.Devices) == 0 || row.Devices[len(row.Devices)-1] != d.Name() {
			row.Devices = append(row.Devices, d.Name())
		}
	}
	row.Augment = "host"
	var raw data.RawBatcher
	if rb, ok := ds.Train.(data.RawBatcher); ok {
		if rs, ok := rb.Raw(); ok && rs.Crop == net.Input.H {
			if err := r.SetAugment(parallel.Augment{C: rs.C, Size: rs.Size, Mean: rs.Mean, OutputMean: rs.OutputMean}); err != nil {
				return row, err
			}
			raw, row.Augment = rb, "device"
		}
	}
	if ds.Train.Batches() == 0 {
		return row, fmt.Errorf("bench speed --data %s: fewer training images than --batch %d", o.Data, o.Batch)
	}
	warm := 1
	if slices.ContainsFunc(r.Devices(), func(d gpu.Device) bool { _, ok := d.(gpu.Timer); return ok }) {
		warm = 10 // as timeSteps: cuDNN's search, the clocks
	}
	steps, waits, err := loaderSteps(r, ds.Train, raw, warm+o.Repeats)
	if err != nil {
		return row, err
	}
	steps, waits = steps[warm:], waits[warm:]
	var wait time.Duration
	for i, s := range steps {
		row.StepsMs = append(row.StepsMs, float64(s)/1e6)
		wait += waits[i]
	}
	s := append([]float64(nil), row.StepsMs...)
	sort.Float64s(s)
	row.MsPerStep = s[len(s)/2]
	if len(s)%2 == 0 {
		row.MsPerStep = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	row.ImagesPerS = float64(o.Batch) / (row.MsPerStep / 1e3)
	row.GFLOPs = float64(parallel.TrainFLOPs(net, o.Batch)) / (row.MsPerStep / 1e3) / 1e9
	row.DataWaitMs = float64(wait) / 1e6 / float64(len(steps))
	row.MovedBytes = r.MovedBytes() / int64(warm+o.Repeats)
	row.MemoryBytes = r.MemoryBytes()
	return row, nil
}

// loaderSteps trains n full batches from l, epoch after epoch, with the
// training loop's pipeline, and returns each step's wall time and the
// part of it spent waiting for the loader.
func loaderSteps(r *parallel.Runner, l data.Batcher, raw data.RawBatcher, n int) (steps, waits []time.Duration, err error) {
	ctx := context.Background()
	epoch := 0
	var next func() (*data.Batch, error, bool)
	var stop func()
	defer func() {
		if stop != nil {
			stop()
		}
		r.Unstage()
	}()
	// pull returns the next batch, across epochs, staged if raw.
	pull := func() (parallel.Batch, time.Duration, error) {
		t0 := time.Now()
		for {
			if next == nil {
				epoch++
				var seq iter.Seq2[*data.Batch, error] = l.EpochFrom(ctx, epoch, 0)
				if raw != nil {
					seq = raw.RawEpochFrom(ctx, epoch, 0)
				}
				next, stop = iter.Pull2(seq)
			}
			b, err, ok := next()
			if !ok {
				stop()
				next, stop = nil, nil
				continue
			}
			if err != nil {
				return parallel.Batch{}, 0, err
			}
			waited := time.Since(t0)
			pb := parallel.Batch{N: b.N, Images: b.Images, Labels: append([]float32(nil), b.Labels...), Raw: b.Raw, Params: b.Params}
			if raw != nil {
				err = r.Stage(pb)
				l.Recycle(b)
				return pb, waited, err
			}
			pb.Images = append([]float32(nil), b.Images...)
			l.Recycle(b)
			return pb, waited, nil
		}
	}
	b, _, err := pull()
	if err != nil {
		return nil, nil, err
	}
	began := time.Now()
	for k := range n {
		p, err := r.Start(b, 0.01)
		if err != nil {
			return nil, nil, err
		}
		var nw time.Duration
		if k+1 < n {
			if b, nw, err = pull(); err != nil {
				return nil, nil, err
			}
		}
		if _, err := p.Result(); err != nil {
			return nil, nil, err
		}
		steps = append(steps, time.Since(began))
		waits = append(waits, nw) // taken within this step's time
		began = time.Now()
	}
	return steps, waits, nil
}
