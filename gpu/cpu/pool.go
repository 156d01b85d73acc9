package cpu

import (
	"math/bits"

	"github.com/alexnet-go/trainer/gpu"
)

// Max pooling is separable: a window's maximum is the maximum over its
// Size columns of each column's maximum over the window's Size rows. For
// output row i both passes run over whole rows: first the column maxima of
// input rows i·Stride … i·Stride+Size−1 (vmax, W values), then the window
// maxima of vmax. Both loops are branch-free (the builtin max), which on
// random data is what matters: a branch per comparison mispredicts every
// few windows. A NaN in a window makes its maximum NaN.

// MaxPool sets y (N, C, P, Q) to the maxima of x (N, C, H, W) over
// Size×Size windows every Stride pixels. Planes are split over the threads.
// With the assembly, AlexNet's 3×3 windows every two pixels take a plane
// per call (maxPool3Asm), eight output columns at a time, the same
// maxima in the same order as the Go code below.
func (d *Device) MaxPool(y, x gpu.Buffer, s gpu.PoolShape) error {
	validate(s)
	yd := d.data("y", y, s.YLen()) // (N, C, P, Q)
	xd := d.data("x", x, s.XLen()) // (N, C, H, W)
	p, q, hw := s.P(), s.Q(), s.H*s.W
	if pool3(s) {
		d.planes(s, func(_, lo, hi int) {
			for pl := lo; pl < hi; pl++ {
				maxPool3Asm(yd[pl*p*q:(pl+1)*p*q], xd[pl*hw:(pl+1)*hw], s.W, p, q)
			}
		})
		return nil
	}
	d.planes(s, func(wk, lo, hi int) {
		buf := d.buf32(wk, 2*s.W)
		vmax, wmax := buf[:s.W], buf[s.W:]
		for pl := lo; pl < hi; pl++ {
			xp, yp := xd[pl*hw:(pl+1)*hw], yd[pl*p*q:(pl+1)*p*q]
			for i := range p {
				columnMax(vmax, xp, s, i)
				windowMax(yp[i*q:(i+1)*q], vmax, wmax, s.Size, s.Stride)
			}
		}
	})
	return nil
}

// MaxPoolBackward sets dx (N, C, H, W) to dy (N, C, P, Q) routed to the
// first maximum, in row-major order, of each window of x (N, C, H, W),
// summed where windows overlap, in row-major order of the windows. Each
// window's maximum is read from y = MaxPool(x) (N, C, P, Q) and looked
// for in x; a window where it is not found (a NaN, or a y that is not
// x's) goes to its first maximum as argmax finds it.
//
// With the assembly, 3×3 windows every two pixels take two passes over a
// chunk of a plane's output rows (the whole plane, unless its arrays
// would overflow poolL1): poolRouteAsm finds each window's first maximum
// eight windows at a time and writes dy into one of nine arrays by its
// place k in the window (0 elsewhere); poolScatterAsm then writes each
// value of dx once, as 0 plus the arrays' values that land on it in the
// order above (see its comment). The dx rows of a chunk's last output
// row wait for the next chunk, which starts from that row's arrays (m's
// row 0). A plane where some window has no value equal to its maximum,
// and a dy other than ±0, is done again by the Go code (routePlane).
func (d *Device) MaxPoolBackward(dx, dy, x, y gpu.Buffer, s gpu.PoolShape) error {
	validate(s)
	dxd := d.data("dx", dx, s.XLen()) // (N, C, H, W)
	dyd := d.data("dy", dy, s.YLen()) // (N, C, P, Q)
	xd := d.data("x", x, s.XLen())    // (N, C, H, W)
	yd := d.data("y", y, s.YLen())    // (N, C, P, Q)
	p, q, hw := s.P(), s.Q(), s.H*s.W
	d.planes(s, func(wk, lo, hi int) {
		var m []float32
		l := 8*((s.W+15)/16) + 8 // an array: index 0 and 1 … q, 0 up to the last column block
		rows, asm := p, pool3(s)
		if (p+2)*9*l*4 > poolL1 {
			rows = max(1, poolL1/(9*l*4)-2)
		}
		if poolRows > 0 {
			rows = min(p, poolRows)
		}
		if asm {
			m = d.buf32(wk, (rows+2)*9*l)
			clear(m)
		}
		for pl := lo; pl < hi; pl++ {
			xp, dxp, dyp := xd[pl*hw:(pl+1)*hw], dxd[pl*hw:(pl+1)*hw], dyd[pl*p*q:(pl+1)*p*q]
			yp := yd[pl*p*q : (pl+1)*p*q]
			switch {
			case asm && rows == p:
				// m's rows: 0 and p+1 stay 0 (outputs −1 and p), 1 … p
				// the arrays of output rows 0 … p−1.
				if poolRouteAsm(m[9*l:], xp, yp, dyp, s.W, p, q, l) == 0 {
					poolScatterAsm(dxp, m, s.W, s.H, p, l)
					continue
				}
			case asm:
				if poolChunks(dxp, xp, dyp, yp, m, s, rows, l) {
					continue
				}
			}
			routePlane(dxp, xp, dyp, yp, s)
		}
	})
	return nil
}

// poolL1 is the most bytes of dy arrays (m in MaxPoolBackward) a chunk
// of a plane's rows writes before they are read: enough that m stays in
// L1 beside the rows of x and dx. poolRows, if set, is the rows of a
// chunk instead (for tests).
const poolL1 = 16 << 10

var poolRows = 0

// poolChunks is MaxPoolBackward's assembly on one plane in chunks of rows
// output rows, the arrays of a chunk in m's rows 1 … rows; row 0 holds
// those of the output row before, 0 before the first. It reports false,
// with dxp half written, where poolRouteAsm misses.
func poolChunks(dxp, xp, dyp, yp, m []float32, s gpu.PoolShape, rows, l int) bool {
	p, q, w, sl := s.P(), s.Q(), s.W, 9*l
	defer clear(m[:sl])
	for a := 0; a < p; a += rows {
		n := min(rows, p-a)
		if a > 0 {
			copy(m[:sl], m[rows*sl:(rows+1)*sl])
		}
		if poolRouteAsm(m[sl:], xp[2*a*w:], yp[a*q:], dyp[a*q:], w, n, q, l) != 0 {
			return false
		}
		if a+n < p { // dx rows 2a … 2(a+n)−1
			poolScatterAsm(dxp[2*a*w:], m, w, 2*n, n-1, l)
			continue
		}
		if n < rows { // row n+1, output row p, must be 0: an earlier chunk wrote it
			clear(m[(n+1)*sl : (n+2)*sl])
		}
		poolScatterAsm(dxp[2*a*w:], m, w, s.H-2*a, n, l) // the rest
	}
	return true
}

// routePlane is MaxPoolBackward on one plane: dxp (H, W) from dyp and
// yp (P, Q) and xp (H, W), dy added to dxp in row-major order of the
// windows.
func routePlane(dxp, xp, dyp, yp []float32, s gpu.PoolShape) {
	p, q := s.P(), s.Q()
	clear(dxp)
	for i := range p {
		m := yp[i*q : (i+1)*q]
		dyi := dyp[i*q : (i+1)*q]
		if s.Size == 3 {
			route3(dxp, xp, dyi, m, s, i)
			continue
		}
		for j, v := range m {
			dxp[firstEqual(xp, s, i, j, v)] += dyi[j]
		}
	}
}

// planes runs fn over the N·C planes of a pooling, split over the threads;
// fn learns its worker index for scratch.
func (d *Device) planes(s gpu.PoolShape, fn func(wk, lo, hi int)) {
	work := int64(s.YLen()) * int64(s.Size*s.Size)
	parallelWorkers(s.N*s.C, d.elemThreads(work), fn)
}

// columnMax sets vmax[w] to the maximum of column w over the rows of plane
// xp (H, W) that output row i's windows cover.
func columnMax(vmax, xp []float32, s gpu.PoolShape, i int) {
	r0 := i * s.Stride * s.W
	copy(vmax, xp[r0:r0+s.W])
	for r := 1; r < s.Size; r++ {
		maxInto(vmax, xp[r0+r*s.W:r0+(r+1)*s.W])
	}
}

// maxIntoGo sets dst[k] = max(dst[k], src[k]): the reference for
// maxInto's assembly.
func maxIntoGo(dst, src []float32) {
	src = src[:len(dst)]
	for k, v := range src {
		dst[k] = max(dst[k], v)
	}
}

// windowMax sets m[j] to the maximum of vmax[j·stride … j·stride+size−1].
// With 3×3 windows and the assembly, it takes the maxima of every three
// neighbours, max(max(vmax[k], vmax[k+1]), vmax[k+2]), eight at a time
// into tmp (as long as vmax), and picks every stride-th: more maxima than
// it needs, but in vectors.
func windowMax(m, vmax, tmp []float32, size, stride int) {
	if size == 3 && useAVX && len(vmax) >= 10 {
		n := len(vmax) - 2
		t := tmp[:n]
		copy(t, vmax[:n])
		maxInto(t, vmax[1:n+1])
		maxInto(t, vmax[2:n+2])
		for j := range m {
			m[j] = t[j*stride]
		}
		return
	}
	if size == 3 { // AlexNet's overlapping pooling
		for j := range m {
			w := vmax[j*stride : j*stride+3]
			m[j] = max(w[0], w[1], w[2])
		}
		return
	}
	for j := range m {
		w := vmax[j*stride : j*stride+size]
		v := w[0]
		for _, u := range w[1:] {
			v = max(v, u)
		}
		m[j] = v
	}
}

// route3 adds dy[j] to dxp at the first value of output (i, j)'s 3×3
// window of xp equal to m[j], the window's maximum, for every j of row i.
// Which of the nine comes first is found without a branch: each equality
// is a bit of a mask, and the first set bit is the answer.
func route3(dxp, xp, dy, m []float32, s gpu.PoolShape, i int) {
	w, st := s.W, s.Stride
	r0 := i * st * w
	x0, x1, x2 := xp[r0:r0+w], xp[r0+w:r0+2*w], xp[r0+2*w:r0+3*w]
	dy = dy[:len(m)]
	for j, v := range m {
		c := j * st
		a, b, e := x0[c:c+3], x1[c:c+3], x2[c:c+3]
		mask := eqBit(a[0], v, 0) | eqBit(a[1], v, 1) | eqBit(a[2], v, 2) |
			eqBit(b[0], v, 3) | eqBit(b[1], v, 4) | eqBit(b[2], v, 5) |
			eqBit(e[0], v, 6) | eqBit(e[1], v, 7) | eqBit(e[2], v, 8)
		if mask == 0 { // a NaN in the window
			dxp[argmax(xp, s, i, j)] += dy[j]
			continue
		}
		k := bits.TrailingZeros32(mask)
		dxp[r0+k/3*w+c+k%3] += dy[j]
	}
}

// eqBit returns 1<<k if x == v, else 0, without a branch.
func eqBit(x, v float32, k uint) uint32 {
	var b uint32
	if x == v {
		b = 1
	}
	return b << k
}

// firstEqual returns the index in plane xp (H, W) of the first value, in
// row-major order, of output (i, j)'s window that equals v, its maximum;
// with a NaN in the window, the first maximum as argmax finds it. route3
// is the same for 3×3 windows without branches.
func firstEqual(xp []float32, s gpu.PoolShape, i, j int, v float32) int {
	at := i*s.Stride*s.W + j*s.Stride
	for r := range s.Size {
		row := xp[at+r*s.W : at+r*s.W+s.Size]
		for c, u := range row {
			if u == v {
				return at + r*s.W + c
			}
		}
	}
	return argmax(xp, s, i, j)
}

// argmax returns the index in plane xp (H, W) of the first maximum, in
// row-major order, of output (i, j)'s window, comparing with > so that a
// NaN is never the maximum unless it comes first.
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
