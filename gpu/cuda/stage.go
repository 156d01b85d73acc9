package cuda

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/alexnet-go/trainer/gpu"
)

// stageSlots is how many page-locked staging buffers a device cycles
// through: a buffer is refilled only after the copy out of it, issued
// stageSlots stages earlier, is done.
const stageSlots = 3

// stager is a device's page-locked staging memory and the copy stream its
// uploads ahead of a step run on (gpu.Stager).
type stager struct {
	stream uintptr
	bufs   [stageSlots]pinned
	next   int
}

// pinned is one page-locked host buffer.
type pinned struct {
	p     unsafe.Pointer // from cuMemHostAlloc
	bytes uint64
	done  uintptr // an event recorded after the last copy out of it; 0 before the first
}

var _ gpu.Stager = (*Device)(nil)

// StageUpload copies src into dst on d's copy stream (gpu.Stager): src is
// copied into a page-locked buffer, and the copy to the device, ordered
// after the work of d's stream up to after, runs while d's stream computes.
// The returned event is recorded on the copy stream after the copy.
func (d *Device) StageUpload(dst gpu.Buffer, src []float32, after gpu.Event) (gpu.Event, error) {
	if len(src) == 0 {
		return nil, nil
	}
	p := d.ptr("dst", dst, len(src))
	done, err := d.bind()
	defer done()
	if err != nil {
		return nil, err
	}
	drv := d.drv
	if d.stage == nil {
		st := &stager{}
		if err := drv.check(drv.cuStreamCreate(&st.stream, streamNonBlocking), "cuStreamCreate (copies) on "+d.name); err != nil {
			return nil, err
		}
		d.stage = st
	}
	st := d.stage
	b := &st.bufs[st.next]
	st.next = (st.next + 1) % stageSlots
	bytes := 4 * uint64(len(src))
	if b.done != 0 { // the buffer's last copy out must be over before it is refilled
		if err := drv.check(drv.cuEventSynchronize(b.done), "cuEventSynchronize (staging) on "+d.name); err != nil {
			return nil, err
		}
	} else if err := drv.check(drv.cuEventCreate(&b.done, eventDisableTiming), "cuEventCreate (staging) on "+d.name); err != nil {
		b.done = 0
		return nil, err
	}
	if b.bytes < bytes {
		if b.p != nil {
			_ = drv.cuMemFreeHost(b.p)
			b.p, b.bytes = nil, 0
		}
		if err := drv.check(drv.cuMemHostAlloc(&b.p, bytes, 0), fmt.Sprintf("cuMemHostAlloc(%d bytes) on %s", bytes, d.name)); err != nil {
			b.p = nil
			return nil, err
		}
		b.bytes = bytes
	}
	copy(unsafe.Slice((*float32)(b.p), len(src)), src)
	if ev, ok := after.(*event); ok && ev != nil {
		err := drv.check(drv.cuStreamWaitEvent(st.stream, ev.ev, 0), "cuStreamWaitEvent (copies) on "+d.name)
		runtime.KeepAlive(ev)
		if err != nil {
			return nil, err
		}
	}
	if err := drv.check(drv.cuMemcpyHtoDAsync(p, b.p, bytes, st.stream), fmt.Sprintf("cuMemcpyHtoDAsync_v2(%d bytes, staged) on %s", bytes, d.name)); err != nil {
		return nil, err
	}
	if err := drv.check(drv.cuEventRecord(b.done, st.stream), "cuEventRecord (staging) on "+d.name); err != nil {
		return nil, err
	}
	return d.recordOn(st.stream, eventDisableTiming)
}

// closeStage waits for the copy stream and releases it, its events and the
// page-locked buffers. d's context is current.
func (d *Device) closeStage() error {
	st := d.stage
	if st == nil {
		return nil
	}
	d.stage = nil
	drv := d.drv
	err := drv.check(drv.cuStreamSynchronize(st.stream), "cuStreamSynchronize (copies) on "+d.name)
	for i := range st.bufs {
		b := &st.bufs[i]
		if b.done != 0 {
			_ = drv.cuEventDestroy(b.done)
		}
		if b.p != nil {
			_ = drv.cuMemFreeHost(b.p)
		}
	}
	_ = drv.cuStreamDestroy(st.stream)
	return err
}
