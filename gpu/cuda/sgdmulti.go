package cuda

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"github.com/alexnet-go/trainer/gpu"
)

// SGDMulti updates every tensor in one launch of sgd_multi
// (kernels/sgd.cu), whose arithmetic is sgd_update's: the same bits as one
// SGD call per tensor. The table of the tensors' addresses, starts and
// decays is uploaded to a buffer d keeps, grown to the largest table so
// far, on d's stream before the launch.
func (d *Device) SGDMulti(ws, vs, dws []gpu.Buffer, s gpu.SGDMultiShape) error {
	if err := s.Validate(len(ws)); err != nil || len(vs) != len(ws) || len(dws) != len(ws) {
		panic(fmt.Sprintf("cuda: %s: SGDMulti of %d, %d, %d buffers: %v", d.name, len(ws), len(vs), len(dws), err))
	}
	table := make([]uint64, 4*len(ws))
	start := 0
	for i := range ws {
		n := s.Sizes[i]
		w, v, dw := d.buf(fmt.Sprintf("ws[%d]", i), ws[i], n), d.buf(fmt.Sprintf("vs[%d]", i), vs[i], n), d.buf(fmt.Sprintf("dws[%d]", i), dws[i], n)
		decay := s.WeightDecays[i] * s.LR // rounded as SGD rounds it
		table[4*i], table[4*i+1], table[4*i+2] = w.ptr, v.ptr, dw.ptr
		table[4*i+3] = uint64(start) | uint64(math.Float32bits(decay))<<32
		start += n
		if start > math.MaxInt32 {
			panic(fmt.Sprintf("cuda: %s: SGDMulti of more than 2³¹ values", d.name))
		}
	}
	if start == 0 {
		return nil
	}
	tb, err := d.sgdTableOf(len(table))
	if err != nil {
		return err
	}
	done, err := d.bind()
	if err != nil {
		done()
		return err
	}
	// The driver stages pageable memory before the call returns, so the
	// table may be garbage after it.
	err = d.drv.check(d.drv.cuMemcpyHtoDAsync(tb.ptr, unsafe.Pointer(&table[0]), 8*uint64(len(table)), d.stream),
		fmt.Sprintf("cuMemcpyHtoDAsync_v2(%d bytes: the SGD table) on %s", 8*len(table), d.name))
	runtime.KeepAlive(table)
	done()
	if err != nil {
		return err
	}
	return d.launch("sgd_multi", d.grid(start), threads, len(ws), start, s.LR, s.Momentum, tb)
}

// sgdTableOf returns d's SGD table buffer with room for words uint64s,
// growing it.
func (d *Device) sgdTableOf(words int) (*Buffer, error) {
	if d.sgdTable != nil && d.sgdTable.n >= 2*words {
		return d.sgdTable, nil
	}
	if d.sgdTable != nil {
		d.Free(d.sgdTable) // waits for the launches reading it
		d.sgdTable = nil
	}
	b, err := d.Alloc(2 * words)
	if err != nil {
		return nil, err
	}
	d.sgdTable = b.(*Buffer)
	return d.sgdTable, nil
}
