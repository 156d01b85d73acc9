package cpu

import (
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// On processors with AVX-512, Conv, ConvBackwardFilter and (stride 1)
// ConvBackwardData take every shape with filters in eights, at least
// convMinDepth taps and more than 8 images as a lane convolution
// (laneConvOK in conv_lane.go), sixteen images in a vector's lanes, with
// no matrix product. The rest, and every shape elsewhere, are lowered as
// follows.
//
// Convolution is lowered to matrix products (im2col), a block of images
// at a time. For a block of B images the column matrix col (C·R·S, B·P·Q)
// holds in row (c,r,s), column (n,p,q) the input pixel of image n that tap
// (r,s) of channel c meets at output position (p,q), zero in the padding.
// With dy and y gathered the same way, (K, B·P·Q), each direction is one
// product per block:
//
//	y (K, B·P·Q)      = w (K, C·R·S) · col
//	dcol (C·R·S, B·P·Q) = wᵀ · dy,   dx = col2im(dcol)
//	dw (K, C·R·S)    += dy · colᵀ
//
// An image whose column matrix alone is too big for the cache (alexnet's
// conv1) is instead cut into bands of output rows, one product per band,
// the band's columns of y and dy read and written in place. B and the
// bands depend on the shape alone (see convBlock), and every product is
// split over the threads by Device.gemm into blocks that depend on the
// shape alone, so the results are the same, bit for bit, for any thread
// count.
// The copies between the (N, K, P, Q) tensors and the block's (K, B·P·Q)
// matrices cost a pass over y or dy; the products they buy are B times
// wider than one image's, which is what keeps small layers near the GEMM
// rate. The shallowest forward passes skip the lowering (see
// directConvOK).

// Conv computes y (N, K, P, Q) = x (N, C, H, W) ⋆ w (K, C, R, S), the
// cross-correlation documented on gpu.Ops. With at least as many blocks of
// images as threads, each thread takes whole blocks; otherwise the threads
// share each block's work. Either way every block is the same product.
func (d *Device) Conv(y, x, w gpu.Buffer, s gpu.ConvShape) error {
	validate(s)
	yd := d.data("y", y, s.YLen()) // (N, K, P, Q)
	xd := d.data("x", x, s.XLen()) // (N, C, H, W)
	wd := d.data("w", w, s.WLen()) // (K, C, R, S)
	if directConvOK(s) {
		d.byBlocks(s, func(t int, sc *convScratch, bl convBlk) { directConv(t, sc, yd, xd, wd, s, bl.n0) })
		return nil
	}
	if laneConvOK(s) {
		wl := grow(&d.convs[0].lw, s.WLen())
		laneWeights(wl, wd, s, false)
		d.laneConv(d.flopThreads(s.FLOPs()), yd, xd, wl, s)
		return nil
	}
	d.byBlocks(s, func(t int, sc *convScratch, bl convBlk) {
		crs, pq := s.C*s.R*s.S, s.P()*s.Q()
		ld := bl.cols(s)
		col := d.im2col(t, sc, xd, s, bl) // (C·R·S, B·P·Q) or a band's
		if bl.b == 1 {                    // rows p0…p1−1 of image n0 of y are the block's matrix
			d.gemm(t, false, false, s.K, ld, crs, 1, wd, crs, col, ld, 0, yd[bl.n0*s.K*pq+bl.p0*s.Q():], pq)
			return
		}
		yb := grow(&sc.tmp, s.K*ld) // (K, B·P·Q)
		d.gemm(t, false, false, s.K, ld, crs, 1, wd, crs, col, ld, 0, yb, ld)
		scatterBlock(t, yd, yb, s.K, pq, bl.n0, bl.b)
	})
	return nil
}

// directConvOK says whether Conv computes y directly, without im2col:
// for shallow stride-1 convolutions (fewer than convMinDepth taps, one
// image a block) whose output rows are whole runs of 32 and whose filters
// come in eights, where the processor has AVX-512 and FMA. Alexnet-small's
// conv1 (one channel, 25 taps, 16 filters, 32×32) spent a quarter of its
// forward pass in im2col for a product of depth 25, and the product ran
// at two thirds of OpenBLAS's rate; directly it runs about 1.5 times
// faster. The sums are in another order than the product's, so the bits
// differ from a machine without AVX-512, but not between thread counts.
func directConvOK(s gpu.ConvShape) bool {
	return fastDirect && s.Stride == 1 && s.C*s.R*s.S < convMinDepth && s.Q()%32 == 0 && s.K%8 == 0
}

// directConv sets image n of y (N, K, P, Q) to x ⋆ w directly: the image
// zero-padded into sc, the weights of each eight filters interleaved tap
// by tap, then 32 outputs of a row of eight filters at a time
// (convRows8), the groups of filters split over t threads. Every output
// is the same sum in the same order whatever the split.
func directConv(t int, sc *convScratch, yd, xd, wd []float32, s gpu.ConvShape, n int) {
	hp, wp := s.P()+s.R-1, s.Q()+s.S-1 // the padded plane
	crs, pq, hw := s.C*s.R*s.S, s.P()*s.Q(), s.H*s.W
	xp := grow(&sc.phases, s.C*hp*wp)
	clear(xp)
	for c := range s.C {
		for h := range s.H {
			at := (n*s.C+c)*hw + h*s.W
			copy(xp[c*hp*wp+(h+s.Pad)*wp+s.Pad:], xd[at:at+s.W])
		}
	}
	wt := grow(&sc.tmp, s.K*crs) // (K/8, C·R·S, 8)
	for k := range s.K {
		for j, v := range wd[k*crs : (k+1)*crs] {
			wt[(k/8*crs+j)*8+k%8] = v
		}
	}
	yn := yd[n*s.K*pq : (n+1)*s.K*pq]
	parallelFor(s.K/8, t, func(lo, hi int) {
		for g := lo; g < hi; g++ {
			for p := range s.P() {
				for q := 0; q < s.Q(); q += 32 {
					convRows8(yn[8*g*pq+p*s.Q()+q:], xp[p*wp+q:], wt[g*crs*8:(g+1)*crs*8], pq, s.C, s.R, s.S, wp, hp*wp)
				}
			}
		}
	})
}

// ConvBackwardData computes dx (N, C, H, W) from dy (N, K, P, Q) and
// w (K, C, R, S): dx = col2im(wᵀ·dy), summing where taps overlap. It
// splits the work as Conv does.
func (d *Device) ConvBackwardData(dx, dy, w gpu.Buffer, s gpu.ConvShape) error {
	validate(s)
	dxd := d.data("dx", dx, s.XLen()) // (N, C, H, W)
	dyd := d.data("dy", dy, s.YLen()) // (N, K, P, Q)
	wd := d.data("w", w, s.WLen())    // (K, C, R, S)
	if laneDataOK(s) {
		wl := grow(&d.convs[0].lw, s.WLen())
		laneWeights(wl, wd, s, true)
		d.laneConv(d.flopThreads(s.FLOPs()), dxd, dyd, wl, laneDataShape(s))
		return nil
	}
	d.byBlocks(s, func(t int, sc *convScratch, bl convBlk) {
		crs := s.C * s.R * s.S
		ld := bl.cols(s)
		dyb, lddy := bl.gather(t, &sc.tmp, dyd, s) // (K, B·P·Q) or a band's
		dcol := grow(&sc.col, crs*ld)              // (C·R·S, B·P·Q)
		d.gemm(t, true, false, crs, ld, s.K, 1, wd, crs, dyb, lddy, 0, dcol, ld)
		d.col2im(t, sc, dxd, dcol, s, bl)
	})
	return nil
}

// convBlk is one product of a convolution: images n0…n0+b−1, or, when a
// single image's column matrix is too big for the budget, the band of its
// output rows p0…p1−1 (b is then 1). Bands of an image come in order, in
// one worker.
type convBlk struct{ n0, b, p0, p1 int }

// cols is the width of the block's column matrix.
func (bl convBlk) cols(s gpu.ConvShape) int { return bl.b * (bl.p1 - bl.p0) * s.Q() }

// gather returns the block's part of v (N, K, P, Q) as a matrix of K rows
// and its leading dimension: one image's rows (a band of them) are in v
// already, several images are copied into *scratch.
func (bl convBlk) gather(t int, scratch *[]float32, v []float32, s gpu.ConvShape) ([]float32, int) {
	pq := s.P() * s.Q()
	if bl.b == 1 {
		return v[bl.n0*s.K*pq+bl.p0*s.Q():], pq
	}
	return gatherBlock(t, scratch, v, s.K, pq, bl.n0, bl.b), bl.b * pq
}

// convBands calls fn on the block of images n0…n0+nb−1 (fewer at the
// batch's end) of convBlock's nb and rows, band after band of rows output
// rows.
func convBands(s gpu.ConvShape, nb, rows, n0 int, fn func(bl convBlk)) {
	for p0 := 0; p0 < s.P(); p0 += rows {
		fn(convBlk{n0, min(nb, s.N-n0), p0, min(p0+rows, s.P())})
	}
}

// byBlocks runs fn on every block of a convolution: on whole blocks of
// images per thread, fn told to use one thread and the worker's scratch,
// when there are at least as many blocks of images as threads, else block
// after block, fn told to use all the threads. The bands of an image run
// one after the other on one worker.
func (d *Device) byBlocks(s gpu.ConvShape, fn func(t int, sc *convScratch, bl convBlk)) {
	t := d.flopThreads(s.FLOPs())
	nb, rows := d.convBlock(s)
	blocks := (s.N + nb - 1) / nb
	bands := func(t int, sc *convScratch, n0 int) {
		convBands(s, nb, rows, n0, func(bl convBlk) { fn(t, sc, bl) })
	}
	if t > 1 && blocks >= t {
		parallelWorkers(blocks, t, func(wk, lo, hi int) {
			for i := lo; i < hi; i++ {
				bands(1, &d.convs[wk], i*nb)
			}
		})
		return
	}
	for n0 := 0; n0 < s.N; n0 += nb {
		bands(t, &d.convs[0], n0)
	}
}

// convScratch is one worker's memory for a block of a convolution: the
// column matrix, the block of y or dy, the phases of strided inputs and
// the masks of stride-1 taps;
// worker 0's parts holds ConvBackwardFilter's partial sums.
type convScratch struct {
	col, tmp, phases, parts, masks []float32
	maskOf                         maskKey   // what masks holds
	lw                             []float32 // worker 0's: the lane convolution's weights
	taps                           []tap
	tapsOf                         maskKey // what taps holds
}

// maskKey names the masks of tapMasks: a shape and band (the block's
// images do not change them); the zero key, a shape of no taps, none.
type maskKey struct {
	s      gpu.ConvShape
	p0, p1 int
}

// grow returns the first n values of *p, reallocated if it is shorter.
func grow(p *[]float32, n int) []float32 {
	if cap(*p) < n {
		*p = make([]float32, n)
	}
	return (*p)[:n]
}

// ConvBackwardFilter computes dw (K, C, R, S) = Σ_n dy[n]·col[n]ᵀ from
// dy (N, K, P, Q) and x (N, C, H, W), one product per block of images.
// The blocks fall into at most convFilterGroups groups of consecutive
// blocks, a function of the shape alone; each group's products accumulate
// in block order into a sum of its own, and the groups' sums are added in
// group order. With at least as many groups as threads each thread takes
// whole groups, otherwise the threads share each product; either way the
// sums are the same bits. With few filters (K ≤ convFilterTransposeK) each
// product is computed transposed, dwᵀ (C·R·S, K) = col·dyᵀ, which OpenBLAS
// runs about 1.2 times faster when K is the small side (alexnet-small's
// 32 and 48 filters), and the total is transposed into dw; with many, the
// transposes would cost more than they save (alexnet's 128 and 192).
func (d *Device) ConvBackwardFilter(dw, dy, x gpu.Buffer, s gpu.ConvShape) error {
	validate(s)
	dwd := d.data("dw", dw, s.WLen()) // (K, C, R, S)
	dyd := d.data("dy", dy, s.YLen()) // (N, K, P, Q)
	xd := d.data("x", x, s.XLen())    // (N, C, H, W)
	if laneConvOK(s) {
		d.laneFilter(d.flopThreads(s.FLOPs()), dwd, dyd, xd, s)
		return nil
	}
	crs, kc := s.C*s.R*s.S, s.WLen()
	t := d.flopThreads(s.FLOPs())
	nb, rows := d.convBlock(s)
	blocks := (s.N + nb - 1) / nb
	groups := min(blocks, convFilterGroups)
	trans := s.K <= convFilterTransposeK
	// Group g's sum: parts[g] (C·R·S, K) when trans, else dw for g = 0
	// and parts[g−1] (K, C, R, S).
	parts := grow(&d.convs[0].parts, groups*kc)
	sumOf := func(g int) []float32 {
		switch {
		case trans:
			return parts[g*kc : (g+1)*kc]
		case g == 0:
			return dwd
		}
		return parts[(g-1)*kc : g*kc]
	}
	group := func(t int, sc *convScratch, g int) {
		sum := sumOf(g)
		first := g * blocks / groups
		for i := first; i < (g+1)*blocks/groups; i++ {
			convBands(s, nb, rows, i*nb, func(bl convBlk) {
				ld := bl.cols(s)
				dyb, lddy := bl.gather(t, &sc.tmp, dyd, s) // (K, B·P·Q) or a band's
				col := d.im2col(t, sc, xd, s, bl)          // (C·R·S, B·P·Q)
				beta := float32(1)
				if i == first && bl.p0 == 0 {
					beta = 0
				}
				if trans {
					d.gemm(t, false, true, crs, s.K, ld, 1, col, ld, dyb, lddy, beta, sum, s.K)
				} else {
					d.gemm(t, false, true, s.K, crs, ld, 1, dyb, lddy, col, ld, beta, sum, crs)
				}
			})
		}
	}
	if t > 1 && groups >= t {
		parallelWorkers(groups, t, func(wk, lo, hi int) {
			for g := lo; g < hi; g++ {
				group(1, &d.convs[wk], g)
			}
		})
	} else {
		for g := range groups {
			group(t, &d.convs[0], g)
		}
	}
	te := d.elemThreads(int64(groups * kc))
	if groups > 1 {
		total := sumOf(0)
		parallelFor(kc, te, func(lo, hi int) {
			for g := 1; g < groups; g++ {
				addTo(total[lo:hi], sumOf(g)[lo:hi])
			}
		})
	}
	if trans {
		parallelFor(crs, te, func(lo, hi int) { transposeInto(dwd, parts[:kc], crs, s.K, lo, hi) })
	}
	return nil
}

// convFilterTransposeK is the most filters for which ConvBackwardFilter
// computes its products transposed.
const convFilterTransposeK = 64

// transposeInto sets rows lo…hi−1 of m (rows, cols), stored row-major,
// into columns lo…hi−1 of dst (cols, rows), in tiles of 16×16 so that
// both sides are read and written a cache line at a time.
func transposeInto(dst, m []float32, rows, cols, lo, hi int) {
	const tile = 16
	for i0 := lo; i0 < hi; i0 += tile {
		i1 := min(i0+tile, hi)
		for j0 := 0; j0 < cols; j0 += tile {
			j1 := min(j0+tile, cols)
			for i := i0; i < i1; i++ {
				row := m[i*cols+j0 : i*cols+j1]
				for j, v := range row {
					dst[(j0+j)*rows+i] = v
				}
			}
		}
	}
}

// convFilterGroups is the most partial sums ConvBackwardFilter splits a
// batch into: enough for the threads of a small machine to share whole
// groups, few enough that the sums (K·C·R·S values each) cost little
// memory and one short pass to add.
const convFilterGroups = 8

// convBlockFloats is the column matrix's size a block of images aims at:
// 1 MiB, so that the matrix, written by im2col and read by the GEMM right
// after, stays in a core's L2 cache, while the block is still wide enough
// to keep the GEMM near its peak. (On the 2-core Xeon of bench/results,
// 1 MiB beat 2, 4 and 8 MiB on every layer of alexnet-small.)
const convBlockFloats = 1 << 18

// convMinDepth is the fewest rows of the column matrix (C·R·S) for which
// a convolution takes several images per product.
const convMinDepth = 64

// convMinBandCols is the fewest columns of a band of output rows: a
// product narrower than that loses more rate than the band's column
// matrix, kept in L2, gains.
const convMinBandCols = 512

// convBlock returns how many images one product of a convolution covers,
// as many as fit the device's column budget, at least one, spread evenly
// over the blocks, and how many rows of the output one product covers:
// all P, unless one image's column matrix alone is over the budget and the
// image is wide enough to be cut into bands of at least convMinBandCols
// columns (alexnet's conv1: 363 × 3025 values, 4.4 MB, cut into five
// bands of 11 rows, each written by im2col and read by the GEMM while it
// is in the L2 cache). Both depend on the shape and the budget alone,
// never on the thread count.
func (d *Device) convBlock(s gpu.ConvShape) (nb, rows int) {
	crs, pq := s.C*s.R*s.S, s.P()*s.Q()
	if crs < convMinDepth {
		// Products this shallow gain nothing from width, and lose the
		// block's extra passes (alexnet-small's conv1: 25 taps).
		return 1, s.P()
	}
	per := crs * pq
	if per > d.colBudget {
		bands := min((per+d.colBudget-1)/d.colBudget, pq/convMinBandCols)
		if bands <= 1 {
			return 1, s.P()
		}
		return 1, (s.P() + bands - 1) / bands
	}
	nb = max(1, min(s.N, d.colBudget/max(1, per)))
	blocks := (s.N + nb - 1) / nb
	return (s.N + blocks - 1) / blocks, s.P()
}

// im2col returns the column matrix (C·R·S, b·P·Q) of block bl's images
// n0…n0+b−1 of x (N, C, H, W), or of the band of output rows p0…p1−1 of
// its one image, in sc, its rows split over t threads.
func (d *Device) im2col(t int, sc *convScratch, xd []float32, s gpu.ConvShape, bl convBlk) []float32 {
	crs, xs := s.C*s.R*s.S, s.C*s.H*s.W
	n0, b := bl.n0, bl.b
	ld := bl.cols(s)
	col := grow(&sc.col, crs*ld)
	if s.Stride > 1 {
		// Each input row split by column phase first, so that every row
		// of the column matrix is copied, not gathered element by element;
		// only the input rows the band's output rows meet.
		st, hw := s.Stride, s.H*s.W
		l := (s.W + st - 1) / st
		ps := s.H * st * l
		h0 := max(0, bl.p0*st-s.Pad)
		h1 := max(h0, min(s.H, (bl.p1-1)*st+s.R-s.Pad))
		de := grow(&sc.phases, b*s.C*ps) // (b, C, H, Stride, l)
		parallelFor(b*s.C, t, func(lo, hi int) {
			for u := lo; u < hi; u++ {
				at := (n0+u/s.C)*xs + u%s.C*hw
				splitPhases(de[u*ps+h0*st*l:(u+1)*ps], xd[at+h0*s.W:at+h1*s.W], s.W, st, l)
			}
		})
		tp := tapTable(sc, s, bl.p0, bl.p1)
		parallelFor(crs, t, func(lo, hi int) {
			im2colPhases(col[lo*ld:], ld, de[:b*s.C*ps], tp, s, l, lo, hi, bl.p0, bl.p1)
		})
		return col
	}
	masks, tp := tapMasks(sc, s, bl), tapTable(sc, s, bl.p0, bl.p1)
	parallelFor(crs, t, func(lo, hi int) {
		im2colRows(col[lo*ld:], ld, xd, n0*xs, b, masks, tp, s, lo, hi, bl.p0, bl.p1)
	})
	return col
}

// tapRows returns the output rows [plo, phi) of the band p0…p1−1 and the
// output columns [qlo, qhi) whose input pixel under tap (r, t) lies inside
// the plane, not in the padding.
func tapRows(s gpu.ConvShape, r, t, p0, p1 int) (plo, phi, qlo, qhi int) {
	qlo, qhi = validRange(t-s.Pad, s.Stride, s.W, s.Q())
	plo, phi = validRange(r-s.Pad, s.Stride, s.H, s.P())
	plo = min(max(plo, p0), p1)
	return plo, min(max(phi, plo), p1), qlo, qhi
}

// tapShift returns, for a stride-1 convolution with Q = W, where tap
// (r, t)'s input lies: position i of the band p0…p1−1 (counted from its
// first row) reads the plane's pixel i+off, and the positions [lo, hi)
// are those of the valid rows [plo, phi) whose pixel is inside the plane
// (columns wrapped around a row's end still among them).
func tapShift(s gpu.ConvShape, r, t, p0, plo, phi int) (off, lo, hi int) {
	q := s.Q()
	off = (r-s.Pad)*s.W + t - s.Pad + p0*q
	return off, max((plo-p0)*q, -off), min((phi-p0)*q, s.H*s.W-off)
}

// tap is where tap (r, t) of a convolution reads for a band of output
// rows: tapRows' valid rows [plo, phi) and columns [qlo, qhi) and, for
// stride 1, tapShift's offset and valid positions [lo, hi).
type tap struct{ plo, phi, qlo, qhi, off, lo, hi int }

// tapTable returns the R·S taps of shape s for the band p0…p1−1, tap
// (r, t) at r·S+t, kept in sc for the next block of the same shape and
// band. The rows of a block look their tap up: working it out for every
// row of every block (four divisions and a copy of the shape each) was a
// twentieth of alexnet-small's step.
func tapTable(sc *convScratch, s gpu.ConvShape, p0, p1 int) []tap {
	key := maskKey{s, p0, p1}
	key.s.N = 0
	if sc.tapsOf == key {
		return sc.taps
	}
	sc.taps = sc.taps[:0]
	for rt := range s.R * s.S {
		r, t := rt/s.S, rt%s.S
		var tp tap
		tp.plo, tp.phi, tp.qlo, tp.qhi = tapRows(s, r, t, p0, p1)
		if s.Stride == 1 {
			tp.off, tp.lo, tp.hi = tapShift(s, r, t, p0, tp.plo, tp.phi)
		}
		sc.taps = append(sc.taps, tp)
	}
	sc.tapsOf = key
	return sc.taps
}

// splitPhasesGo writes plane (H, W) to de (H, stride, l): row h's
// columns ph, ph+stride, ph+2·stride, … at de[(h·stride+ph)·l:], from the
// k0-th of each phase on. Entries past a phase's last column are left as
// they are; nothing reads them. It is the reference for splitPhases'
// assembly, which runs the first values of each phase with stride 4.
func splitPhasesGo(de, plane []float32, w, stride, l, k0 int) {
	for h := range len(plane) / w {
		row := plane[h*w : (h+1)*w]
		for ph := range stride {
			out := de[(h*stride+ph)*l : (h*stride+ph+1)*l]
			for k := k0; k < len(out); k++ {
				if ph+k*stride >= w {
					break
				}
				out[k] = row[ph+k*stride]
			}
		}
	}
}

// im2colPhases is im2colRows for Stride > 1, reading the images split by
// splitPhases into de (b, C, H, Stride, l): tap (r, t)'s output row i is
// input row i·Stride+r−Pad at columns q·Stride+t−Pad, which is one phase
// of that row, (t−Pad) mod Stride, from column ⌊(t−Pad)/Stride⌋ + q on.
func im2colPhases(col []float32, ld int, de []float32, taps []tap, s gpu.ConvShape, l, j0, j1, p0, p1 int) {
	q, st := s.Q(), s.Stride
	bq := (p1 - p0) * q
	ps := s.H * st * l
	b := len(de) / (s.C * ps)
	rs := s.R * s.S
	for j := j0; j < j1; j++ {
		c := j / rs
		r, t := (j-c*rs)/s.S, (j-c*rs)%s.S
		tp := &taps[j-c*rs]
		plo, phi, qlo, qhi := tp.plo, tp.phi, tp.qlo, tp.qhi
		ph := ((t-s.Pad)%st + st) % st
		off := (t - s.Pad - ph) / st
		for n := range b {
			dst := col[(j-j0)*ld+n*bq : (j-j0)*ld+(n+1)*bq]
			dn := de[(n*s.C+c)*ps : (n*s.C+c+1)*ps]
			clear(dst[:(plo-p0)*q])
			clear(dst[(phi-p0)*q:])
			if phi <= plo {
				continue
			}
			// Output row i reads phase row (i·Stride+r−Pad)·Stride+ph:
			// the rows are Stride² phase rows apart.
			h := plo*st + r - s.Pad
			copyRows(dst[(plo-p0)*q+qlo:], q, dn[(h*st+ph)*l+qlo+off:], st*st*l, phi-plo, qhi-qlo)
			zeroColumns(dst, q, plo-p0, phi-p0, qlo, qhi)
		}
	}
}

// col2im adds block bl's column matrix dcol (C·R·S, b·P·Q), or its
// band's, into images n0…n0+b−1 of dx (N, C, H, W), which it first zeros
// unless the band is not the image's first, its channels split over t
// threads: channel c's rows of dcol land only in channel c of dx.
func (d *Device) col2im(t int, sc *convScratch, dxd, dcol []float32, s gpu.ConvShape, bl convBlk) {
	rs, hw := s.R*s.S, s.H*s.W
	ld := bl.cols(s)
	masks, tp := tapMasks(sc, s, bl), tapTable(sc, s, bl.p0, bl.p1)
	parallelFor(s.C, t, func(lo, hi int) {
		dxb := dxd[bl.n0*s.C*hw : (bl.n0+bl.b)*s.C*hw]
		if bl.p0 == 0 {
			for i := range bl.b {
				clear(dxb[(i*s.C+lo)*hw : (i*s.C+hi)*hw])
			}
		}
		col2imRows(dxb, dcol[lo*rs*ld:], ld, masks, tp, s, lo*rs, hi*rs, bl.p0, bl.p1)
	})
}

// gatherBlock returns images n0…n0+b−1 of v (N, K, PQ) as a matrix
// (K, b·PQ): one image is that matrix already, several are copied into
// *scratch, rows split over t threads.
func gatherBlock(t int, scratch *[]float32, v []float32, k, pq, n0, b int) []float32 {
	if b == 1 {
		return v[n0*k*pq : (n0+1)*k*pq]
	}
	ld := b * pq
	m := grow(scratch, k*ld)
	parallelFor(k, t, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			for i := range b {
				at := ((n0+i)*k + r) * pq
				copy(m[r*ld+i*pq:r*ld+(i+1)*pq], v[at:at+pq])
			}
		}
	})
	return m
}

// scatterBlock is gatherBlock's inverse: it copies m (K, b·PQ) into
// images n0…n0+b−1 of v (N, K, PQ).
func scatterBlock(t int, v, m []float32, k, pq, n0, b int) {
	ld := b * pq
	parallelFor(k, t, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			for i := range b {
				at := ((n0+i)*k + r) * pq
				copy(v[at:at+pq], m[r*ld+i*pq:r*ld+(i+1)*pq])
			}
		}
	})
}

// validRange returns the output indices [lo, hi) among 0…n−1 whose input
// index i·stride + off falls inside 0…size−1.
func validRange(off, stride, size, n int) (lo, hi int) {
	if off < 0 {
		lo = (-off + stride - 1) / stride
	}
	if size-off > 0 {
		hi = (size - off + stride - 1) / stride
	}
	lo = min(lo, n)
	hi = min(max(hi, lo), n)
	return lo, hi
}

// im2colRows writes rows j0…j1−1 of the column matrix of the b images
// of xd (N, C, H, W) from xd[x0:] on into col, row j−j0 at
// col[(j−j0)·ld:], image n's P·Q values (of the band p0…p1−1) at n·P·Q
// on. Each row's tap and ranges are worked out once for all b images: for
// alexnet-small's 7×7 layers that bookkeeping (divisions, mostly) cost
// more than the 49 values it placed. With masks (see tapMasks) a
// stride-1 row is one masked copy for all the images.
func im2colRows(col []float32, ld int, xd []float32, x0, b int, masks []float32, taps []tap, s gpu.ConvShape, j0, j1, p0, p1 int) {
	q, hw := s.Q(), s.H*s.W
	pq, xs := (p1-p0)*q, s.C*hw
	xb := xd[x0 : x0+b*xs]
	rs := s.R * s.S
	for j := j0; j < j1; j++ {
		c := j / rs
		rt := j - c*rs
		tp := &taps[rt]
		plo, phi, qlo, qhi := tp.plo, tp.phi, tp.qlo, tp.qhi
		drow := col[(j-j0)*ld : (j-j0)*ld+b*pq]
		if s.Stride == 1 && q == s.W {
			// Row i of the tap is row i+r−Pad of the plane shifted by
			// t−Pad: one copy of the valid rows, then zeros where the
			// shift wrapped around a row's end. Positions count from
			// the band's first row.
			off, lo, hi := tp.off, tp.lo, tp.hi
			// Images m0…m1−1 in one masked copy: the positions' zeros
			// are one mask of the tap, the same for every image.
			m0, m1 := 0, 0
			if masks != nil && hi > lo {
				// Image n reads xd[at+n·xs:][:pq], its neighbours' values
				// (masked) included: all but the batch's first and last
				// images stay inside xd.
				at := x0 + c*hw + off
				if at < 0 {
					m0 = (-at + xs - 1) / xs
				}
				if end := len(xd) - at - pq; end >= 0 {
					m1 = min(b, end/xs+1)
				}
				if m0 < m1 {
					maskRows(drow[m0*pq:], xd[at+m0*xs:], masks[rt*pq:(rt+1)*pq], xs, m1-m0)
				}
			}
			for n := range b {
				if m0 <= n && n < m1 {
					continue
				}
				dst := drow[n*pq : (n+1)*pq]
				if hi <= lo {
					clear(dst)
					continue
				}
				clear(dst[:lo])
				copy(dst[lo:hi], xb[n*xs+c*hw+lo+off:n*xs+c*hw+hi+off])
				clear(dst[hi:])
				zeroColumns(dst, q, plo-p0, phi-p0, qlo, qhi)
			}
			continue
		}
		r, t := rt/s.S, rt%s.S
		for n := range b {
			plane := xb[n*xs+c*hw : n*xs+(c+1)*hw]
			dst := drow[n*pq : (n+1)*pq]
			clear(dst[:(plo-p0)*q])
			clear(dst[(phi-p0)*q:])
			for i := plo; i < phi; i++ {
				row := dst[(i-p0)*q : (i-p0+1)*q]
				src := plane[(i*s.Stride+r-s.Pad)*s.W:]
				clear(row[:qlo])
				clear(row[qhi:])
				iw := qlo*s.Stride + t - s.Pad
				if s.Stride == 1 {
					copy(row[qlo:qhi], src[iw:])
					continue
				}
				for k := qlo; k < qhi; k++ {
					row[k] = src[iw]
					iw += s.Stride
				}
			}
		}
	}
}

// zeroColumns zeros columns [0, qlo) and [qhi, q) of rows plo…phi−1 of
// m, a matrix of rows of q values. Row i's last columns and row i+1's
// first are one run of q−qhi+qlo values, so it zeros one run per row.
func zeroColumns(m []float32, q, plo, phi, qlo, qhi int) {
	if (qlo == 0 && qhi == q) || phi <= plo {
		return
	}
	m = m[plo*q : phi*q]
	clear(m[:qlo])
	// The runs are short (one or two values for AlexNet's paddings of 1
	// and 2): stored one by one, not through clear's call.
	switch gap := q - qhi + qlo; gap {
	case 1:
		for at := qhi; at < len(m); at += q {
			m[at] = 0
		}
	case 2:
		for at := qhi; at+1 < len(m); at += q {
			m[at+1] = 0
			m[at] = 0
		}
	default:
		for at := qhi; at+gap <= len(m); at += q {
			z := m[at : at+gap]
			for k := range z {
				z[k] = 0
			}
		}
	}
	clear(m[len(m)-(q-qhi):])
}

// col2imRows adds rows j0…j1−1 of a column matrix, row j−j0 at
// dcol[(j−j0)·ld:], image n's P·Q values at n·P·Q on, to the pixels of the
// images dxb (b, C, H, W) they came from, each pixel's terms in the order
// of j. With stride 1 and Q = W it zeros the entries of dcol that fall in
// the padding, which it may then overwrite.
func col2imRows(dxb, dcol []float32, ld int, masks []float32, taps []tap, s gpu.ConvShape, j0, j1, p0, p1 int) {
	q, hw := s.Q(), s.H*s.W
	pq, xs := (p1-p0)*q, s.C*hw
	b := len(dxb) / xs
	rs := s.R * s.S
	for j := j0; j < j1; j++ {
		c := j / rs
		rt := j - c*rs
		tp := &taps[rt]
		plo, phi, qlo, qhi := tp.plo, tp.phi, tp.qlo, tp.qhi
		srow := dcol[(j-j0)*ld : (j-j0)*ld+b*pq]
		if s.Stride == 1 && q == s.W {
			// im2colRows' shifted copy in reverse: the entries that
			// wrapped around a row's end are zeroed, so one add over the
			// valid rows adds nothing there.
			off, lo, hi := tp.off, tp.lo, tp.hi
			if masks != nil {
				// The same through the tap's mask, all the block's
				// images in one call.
				if hi > lo {
					maskAddRows(dxb[c*hw+lo+off:], srow[lo:], masks[rt*pq+lo:rt*pq+hi], xs, pq, b)
				}
				continue
			}
			for n := range b {
				src := srow[n*pq : (n+1)*pq]
				zeroColumns(src, q, plo-p0, phi-p0, qlo, qhi)
				if hi > lo {
					addTo(dxb[n*xs+c*hw+lo+off:n*xs+c*hw+hi+off], src[lo:hi])
				}
			}
			continue
		}
		r, t := rt/s.S, rt%s.S
		for n := range b {
			plane := dxb[n*xs+c*hw : n*xs+(c+1)*hw]
			src := srow[n*pq : (n+1)*pq]
			for i := plo; i < phi; i++ {
				row := src[(i-p0)*q : (i-p0+1)*q]
				dst := plane[(i*s.Stride+r-s.Pad)*s.W:]
				iw := qlo*s.Stride + t - s.Pad
				if s.Stride == 1 {
					addTo(dst[iw:iw+qhi-qlo], row[qlo:qhi])
					continue
				}
				for k := qlo; k < qhi; k++ {
					dst[iw] += row[k]
					iw += s.Stride
				}
			}
		}
	}
}

// addToGo sets dst[i] += src[i] for every i of dst: the reference for
// addTo's assembly.
func addToGo(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] += v
	}
}

// copyRowsGo copies rows rows of width values, row i from src[i·lds:] to
// dst[i·ldd:]: the reference for copyRows' assembly.
func copyRowsGo(dst []float32, ldd int, src []float32, lds, rows, width int) {
	for i := range rows {
		copy(dst[i*ldd:i*ldd+width], src[i*lds:i*lds+width])
	}
}

// tapMask sets mask (a row of positions of q columns each) to all ones
// bits at positions lo…hi−1 whose column is in qlo…qhi−1, zero elsewhere:
// which of a stride-1 tap's shifted values are pixels, not padding.
func tapMask(mask []float32, q, lo, hi, qlo, qhi int) {
	ones := math.Float32frombits(^uint32(0))
	for i := range len(mask) / q {
		row := mask[i*q : (i+1)*q]
		for c := range row {
			row[c] = 0
			if pos := i*q + c; pos >= lo && pos < hi && c >= qlo && c < qhi {
				row[c] = ones
			}
		}
	}
}

// tapMasks returns, for a stride-1 convolution with Q = W, the masks of
// tapMask of block bl's taps, tap (r, t) at (r·S+t)·(p1−p0)·Q, in sc: one
// pattern of zeros over an image's positions, the same for every channel
// and image of the block. It returns nil where the masked loops do not
// run: other shapes, rows of fewer than eight values, fewer than four
// planes a block (alexnet-small's conv1, one plane of 32×32 an image,
// ran its backward pass slower through the masks), no assembly. The masks
// stay in sc for the next block of the same shape and band.
func tapMasks(sc *convScratch, s gpu.ConvShape, bl convBlk) []float32 {
	pq := (bl.p1 - bl.p0) * s.Q()
	if !fastMaskRows || s.Stride != 1 || s.Q() != s.W || pq < 8 || bl.b*s.C < 4 {
		return nil
	}
	key := maskKey{s, bl.p0, bl.p1}
	key.s.N = 0
	masks := grow(&sc.masks, s.R*s.S*pq)
	if sc.maskOf == key {
		return masks
	}
	sc.maskOf = key
	for rt, tp := range tapTable(sc, s, bl.p0, bl.p1) {
		tapMask(masks[rt*pq:(rt+1)*pq], s.Q(), tp.lo, tp.hi, tp.qlo, tp.qhi)
	}
	return masks
}

// maskRowsGo sets row i of dst (n rows of len(mask) values, one after
// the other) to the bits of src[i·lds:] and those of mask: the reference
// for maskRows' assembly.
func maskRowsGo(dst, src, mask []float32, lds, n int) {
	w := len(mask)
	for i := range n {
		d, s := dst[i*w:(i+1)*w], src[i*lds:i*lds+w]
		for k, m := range mask {
			d[k] = math.Float32frombits(math.Float32bits(s[k]) & math.Float32bits(m))
		}
	}
}

// maskAddRowsGo adds to row i of dst, at dst[i·ldd:], the bits of
// src[i·lds:] and those of mask, len(mask) values a row: the reference
// for maskAddRows' assembly.
func maskAddRowsGo(dst, src, mask []float32, ldd, lds, n int) {
	for i := range n {
		d, s := dst[i*ldd:i*ldd+len(mask)], src[i*lds:i*lds+len(mask)]
		for k, m := range mask {
			d[k] += math.Float32frombits(math.Float32bits(s[k]) & math.Float32bits(m))
		}
	}
}

// convRows8Go sets 32 outputs of one output row of eight filters,
// filter i's at y[i·ldy:][:32], from the zero-padded input x (rows of wp
// values, planes of hwp) and the eight filters' weights interleaved,
// w[(c·R+r)·S+t][i]: y[q] = Σ over c, r, t in that order of
// x[c·hwp + r·wp + t + q]·w[c,r,t], each term one fused multiply-add. It
// is the reference for convRows8's assembly.
func convRows8Go(y, x, w []float32, ldy, c, r, s, wp, hwp int) {
	var acc [8][32]float32
	for ci := range c {
		for ri := range r {
			for t := range s {
				wi := w[((ci*r+ri)*s+t)*8:][:8]
				row := x[ci*hwp+ri*wp+t:][:32]
				for i, wv := range wi {
					for q, v := range row {
						acc[i][q] = fma32(v, wv, acc[i][q])
					}
				}
			}
		}
	}
	for i := range acc {
		copy(y[i*ldy:i*ldy+32], acc[i][:])
	}
}
