package cpu

import (
	"fmt"

	"github.com/alexnet-go/trainer/gpu"
)

// SGDMulti applies SGD to each tensor in turn: on the host a launch costs
// nothing, so fusing the tensors would gain nothing, and the bits are
// SGD's by construction.
func (d *Device) SGDMulti(ws, vs, dws []gpu.Buffer, s gpu.SGDMultiShape) error {
	if err := s.Validate(len(ws)); err != nil || len(vs) != len(ws) || len(dws) != len(ws) {
		panic(fmt.Sprintf("cpu: SGDMulti of %d, %d, %d buffers: %v", len(ws), len(vs), len(dws), err))
	}
	for i := range ws {
		if err := d.SGD(ws[i], vs[i], dws[i], s.Tensor(i)); err != nil {
			return err
		}
	}
	return nil
}
