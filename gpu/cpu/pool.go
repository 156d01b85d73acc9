package cpu

import "github.com/alexnet-go/trainer/gpu"

// MaxPool sets y (N, C, P, Q) to the maxima of x (N, C, H, W) over
// Size×Size windows every Stride pixels. Planes are split over the threads.
func (d *Device) MaxPool(y, x gpu.Buffer, s gpu.PoolShape) error {
	validate(s)
	yd := d.data("y", y, s.YLen()) // (N, C, P, Q)
	xd := d.data("x", x, s.XLen()) // (N, C, H, W)
	p, q, hw := s.P(), s.Q(), s.H*s.W
	d.planes(s, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			xp, yp := xd[pl*hw:(pl+1)*hw], yd[pl*p*q:(pl+1)*p*q]
			for i := range p {
				for j := range q {
					yp[i*q+j] = xp[argmax(xp, s, i, j)]
				}
			}
		}
	})
	return nil
}

// MaxPoolBackward sets dx (N, C, H, W) to dy (N, C, P, Q) routed to the
// first maximum of each window of x (N, C, H, W), summed where windows
// overlap. The maxima are found again in x; y is not read.
func (d *Device) MaxPoolBackward(dx, dy, x, y gpu.Buffer, s gpu.PoolShape) error {
	validate(s)
	dxd := d.data("dx", dx, s.XLen()) // (N, C, H, W)
	dyd := d.data("dy", dy, s.YLen()) // (N, C, P, Q)
	xd := d.data("x", x, s.XLen())    // (N, C, H, W)
	d.data("y", y, s.YLen())
	p, q, hw := s.P(), s.Q(), s.H*s.W
	d.planes(s, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			xp, dxp, dyp := xd[pl*hw:(pl+1)*hw], dxd[pl*hw:(pl+1)*hw], dyd[pl*p*q:(pl+1)*p*q]
			clear(dxp)
			for i := range p {
				for j := range q {
					dxp[argmax(xp, s, i, j)] += dyp[i*q+j]
				}
			}
		}
	})
	return nil
}

// planes runs fn over the N·C planes of a pooling, split over the threads.
func (d *Device) planes(s gpu.PoolShape, fn func(lo, hi int)) {
	work := int64(s.YLen()) * int64(s.Size*s.Size)
	parallelFor(s.N*s.C, d.elemThreads(work), fn)
}

// argmax returns the index in plane xp (H, W) of the first maximum, in
// row-major order, of output (i, j)'s window.
func argmax(xp []float32, s gpu.PoolShape, i, j int) int {
	at := i*s.Stride*s.W + j*s.Stride
	best, v := at, xp[at]
	for r := range s.Size {
		row := xp[at+r*s.W : at+r*s.W+s.Size]
		for c, u := range row {
			if u > v {
				best, v = at+r*s.W+c, u
			}
		}
	}
	return best
}
