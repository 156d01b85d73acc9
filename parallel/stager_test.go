package parallel_test

import (
	"slices"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// stagingDevice is a CPU device with a copy stream of its own, as a GPU
// has (gpu.Stager): a staged copy is applied only when the device Waits
// on its event (the copies run in order), the latest a real copy stream
// could land. A step that read a staged batch without waiting for it
// would read the slot's old contents.
type stagingDevice struct {
	*cpu.Device
	queue          []*stageEvent
	staged, waited int
	afters         int // stages ordered after an event (a slot reused)
}

type stageEvent struct{ apply func() error }

func (d *stagingDevice) StageUpload(dst gpu.Buffer, src []float32, after gpu.Event) (gpu.Event, error) {
	data := slices.Clone(src)
	d.staged++
	if after != nil {
		d.afters++
	}
	e := &stageEvent{apply: func() error { return d.Device.Upload(dst, data) }}
	d.queue = append(d.queue, e)
	return e, nil
}

func (d *stagingDevice) Wait(e gpu.Event) error {
	se, ok := e.(*stageEvent)
	if !ok {
		return d.Device.Wait(e)
	}
	d.waited++
	for len(d.queue) > 0 {
		q := d.queue[0]
		d.queue = d.queue[1:]
		if err := q.apply(); err != nil {
			return err
		}
		if q == se {
			break
		}
	}
	return nil
}

// Raw batches staged through a device's own copy stream train exactly as
// batches rendered on the host, on one device and on two: every step
// waits for its batch's copies, and a slot's copies are ordered after the
// step that last read it.
func TestStagedCopiesTrainAsRendered(t *testing.T) {
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	const size = 36
	a := parallel.Augment{C: 1, Size: size, Mean: randomImage(size*size, 255, 1), OutputMean: randomImage(net.Input.Len(), 255, 2)}
	for _, towers := range []int{1, 2} {
		var sds []*stagingDevice
		var devs, hostDevs []gpu.Device
		for i := range towers {
			sd := &stagingDevice{Device: cpu.New(cpu.Options{Index: i, Threads: 1})}
			sds = append(sds, sd)
			devs = append(devs, sd)
			hostDevs = append(hostDevs, cpu.New(cpu.Options{Index: i, Threads: 1}))
		}
		w := model.Init(net, 4)
		host := newRunner(t, net, w, hostDevs...)
		dev := newRunner(t, net, w, devs...)
		if err := dev.SetAugment(a); err != nil {
			t.Fatal(err)
		}
		const steps = 5
		var raws, rendered []parallel.Batch
		for s := range steps {
			r, h := rawBatch(a, net.Input.H, net.Classes, 8, uint64(s))
			raws, rendered = append(raws, r), append(rendered, h)
		}
		trainStaged(t, dev, host, raws, rendered)
		sameWeights(t, dev, host)
		for i, sd := range sds {
			// Each stage copies the bytes and parameters (and, on the
			// logits' device, the labels); the slots are reused from the
			// third batch on, ordered after the step that read them.
			if sd.staged < 2*steps || sd.waited < steps || sd.afters < 2*(steps-2) {
				t.Errorf("%d tower(s), device %d: %d copies staged, %d waited on, %d ordered after a step", towers, i, sd.staged, sd.waited, sd.afters)
			}
		}
	}
}
