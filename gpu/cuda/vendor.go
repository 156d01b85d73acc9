package cuda

import (
	"fmt"

	"github.com/alexnet-go/trainer/gpu"
)

// cuDNN's own LRN and max pooling (gpu.VendorOps), for the kernel
// benchmark (trainer bench kernels) to time ours against. The network
// never calls them.

var _ gpu.VendorOps = (*Device)(nil)

// lrnPlan is what cuDNN's LRN needs for one shape: the LRN descriptor and
// one tensor descriptor, shared by x, y, dx and dy.
type lrnPlan struct{ norm, t uintptr }

// poolPlan is what cuDNN's pooling needs for one shape: the pooling
// descriptor and the x and y tensor descriptors (dx and dy share them).
type poolPlan struct{ pool, x, y uintptr }

// VendorName names the library behind the Vendor* methods.
func (d *Device) VendorName() string { return fmt.Sprintf("cuDNN %d", d.lib.dnn.version) }

// step is one cuDNN call of a plan, with its name for the error.
type step struct {
	r    func() Result
	call string
}

func (d *Device) run(steps []step) error {
	for _, st := range steps {
		if err := d.lib.dnn.check(st.r(), st.call); err != nil {
			return err
		}
	}
	return nil
}

// lrnPlan returns the descriptors of shape s, made on first use. cuDNN's
// LRN divides its α by the window (y = x / (K + α/n·Σx²)^β), where
// gpu.LRNShape takes the α that multiplies the sum: cuDNN is given
// Alpha·Size, so both compute the same. The caller holds d's context.
func (d *Device) lrnPlan(s gpu.LRNShape) (*lrnPlan, error) {
	if c := d.lib.dnn; c.vendorErr != nil {
		return nil, c.vendorErr
	}
	if p, ok := d.lrns[s]; ok {
		return p, nil
	}
	c, p := d.lib.dnn, &lrnPlan{}
	err := d.run([]step{
		{func() Result { return c.createLRN(&p.norm) }, "cudnnCreateLRNDescriptor"},
		{func() Result { return c.createTensor(&p.t) }, "cudnnCreateTensorDescriptor"},
		{func() Result {
			return c.setLRN(p.norm, uint32(s.Size), float64(s.Alpha)*float64(s.Size), float64(s.Beta), float64(s.K))
		}, fmt.Sprintf("cudnnSetLRNDescriptor(n=%d, alpha=%g·%d, beta=%g, k=%g)", s.Size, s.Alpha, s.Size, s.Beta, s.K)},
		{func() Result {
			return c.setTensor4d(p.t, cudnnNCHW, cudnnFloat, int32(s.N), int32(s.C), int32(s.H), int32(s.W))
		}, fmt.Sprintf("cudnnSetTensor4dDescriptor(%d×%d×%d×%d)", s.N, s.C, s.H, s.W)},
	})
	if err != nil {
		return nil, err
	}
	if d.lrns == nil {
		d.lrns = map[gpu.LRNShape]*lrnPlan{}
	}
	d.lrns[s] = p
	return p, nil
}

// poolPlan returns the descriptors of shape s, made on first use:
// CUDNN_POOLING_MAX_DETERMINISTIC, as ours is deterministic, without
// padding. The caller holds d's context.
func (d *Device) poolPlan(s gpu.PoolShape) (*poolPlan, error) {
	if c := d.lib.dnn; c.vendorErr != nil {
		return nil, c.vendorErr
	}
	if p, ok := d.pools[s]; ok {
		return p, nil
	}
	c, p := d.lib.dnn, &poolPlan{}
	err := d.run([]step{
		{func() Result { return c.createPooling(&p.pool) }, "cudnnCreatePoolingDescriptor"},
		{func() Result { return c.createTensor(&p.x) }, "cudnnCreateTensorDescriptor"},
		{func() Result { return c.createTensor(&p.y) }, "cudnnCreateTensorDescriptor"},
		{func() Result {
			return c.setPooling2d(p.pool, cudnnPoolingMaxDet, cudnnNotPropagateNaN, int32(s.Size), int32(s.Size), 0, 0, int32(s.Stride), int32(s.Stride))
		}, fmt.Sprintf("cudnnSetPooling2dDescriptor(%d×%d every %d)", s.Size, s.Size, s.Stride)},
		{func() Result {
			return c.setTensor4d(p.x, cudnnNCHW, cudnnFloat, int32(s.N), int32(s.C), int32(s.H), int32(s.W))
		}, fmt.Sprintf("cudnnSetTensor4dDescriptor(x %d×%d×%d×%d)", s.N, s.C, s.H, s.W)},
		{func() Result {
			return c.setTensor4d(p.y, cudnnNCHW, cudnnFloat, int32(s.N), int32(s.C), int32(s.P()), int32(s.Q()))
		}, fmt.Sprintf("cudnnSetTensor4dDescriptor(y %d×%d×%d×%d)", s.N, s.C, s.P(), s.Q())},
	})
	if err != nil {
		return nil, err
	}
	if d.pools == nil {
		d.pools = map[gpu.PoolShape]*poolPlan{}
	}
	d.pools[s] = p
	return p, nil
}

// VendorLRN is gpu.Ops.LRN by cudnnLRNCrossChannelForward.
func (d *Device) VendorLRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	validate(s)
	yp, xp := d.ptr("y", y, s.Len()), d.ptr("x", x, s.Len())
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	p, err := d.lrnPlan(s)
	if err != nil {
		return err
	}
	c := d.lib.dnn
	return c.check(c.lrnForward(d.dnn, p.norm, cudnnLRNCrossChannel, &one, p.t, xp, &zero, p.t, yp),
		fmt.Sprintf("cudnnLRNCrossChannelForward(%+v) on %s", s, d.name))
}

// VendorLRNBackward is gpu.Ops.LRNBackward by
// cudnnLRNCrossChannelBackward.
func (d *Device) VendorLRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	validate(s)
	n := s.Len()
	dxp, dyp, xp, yp := d.ptr("dx", dx, n), d.ptr("dy", dy, n), d.ptr("x", x, n), d.ptr("y", y, n)
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	p, err := d.lrnPlan(s)
	if err != nil {
		return err
	}
	c := d.lib.dnn
	return c.check(c.lrnBackward(d.dnn, p.norm, cudnnLRNCrossChannel, &one, p.t, yp, p.t, dyp, p.t, xp, &zero, p.t, dxp),
		fmt.Sprintf("cudnnLRNCrossChannelBackward(%+v) on %s", s, d.name))
}

// VendorMaxPool is gpu.Ops.MaxPool by cudnnPoolingForward.
func (d *Device) VendorMaxPool(y, x gpu.Buffer, s gpu.PoolShape) error {
	validate(s)
	yp, xp := d.ptr("y", y, s.YLen()), d.ptr("x", x, s.XLen())
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	p, err := d.poolPlan(s)
	if err != nil {
		return err
	}
	c := d.lib.dnn
	return c.check(c.poolForward(d.dnn, p.pool, &one, p.x, xp, &zero, p.y, yp),
		fmt.Sprintf("cudnnPoolingForward(%+v) on %s", s, d.name))
}

// VendorMaxPoolBackward is gpu.Ops.MaxPoolBackward by
// cudnnPoolingBackward, which reads y as well.
func (d *Device) VendorMaxPoolBackward(dx, dy, x, y gpu.Buffer, s gpu.PoolShape) error {
	validate(s)
	dxp, dyp := d.ptr("dx", dx, s.XLen()), d.ptr("dy", dy, s.YLen())
	xp, yp := d.ptr("x", x, s.XLen()), d.ptr("y", y, s.YLen())
	done, err := d.bind()
	defer done()
	if err != nil {
		return err
	}
	p, err := d.poolPlan(s)
	if err != nil {
		return err
	}
	c := d.lib.dnn
	return c.check(c.poolBackward(d.dnn, p.pool, &one, p.y, yp, p.y, dyp, p.x, xp, &zero, p.x, dxp),
		fmt.Sprintf("cudnnPoolingBackward(%+v) on %s", s, d.name))
}
