package cpu

import "github.com/alexnet-go/trainer/gpu"

// Convolution is lowered to matrix products (im2col). For one image the
// column matrix col (C·R·S, P·Q) holds in row (c,r,s) the input pixels that
// tap (r,s) of channel c meets at every output position, zero in the
// padding. Then, per image n,
//
//	y[n] (K, P·Q)      = w (K, C·R·S) · col[n]
//	dcol (C·R·S, P·Q)  = wᵀ · dy[n],   dx[n] = col2im(dcol)
//	dw (K, C·R·S)     += dy[n] · col[n]ᵀ
//
// A 1×1 convolution with stride 1 and no padding needs no lowering: col[n]
// is x[n] itself.

// Conv computes y (N, K, P, Q) = x (N, C, H, W) ⋆ w (K, C, R, S), the
// cross-correlation documented on gpu.Ops, one image per thread or, with
// fewer images than threads, each image split over the threads. With at
// least as many images as threads, the result is the same, bit for bit,
// for any thread count.
func (d *Device) Conv(y, x, w gpu.Buffer, s gpu.ConvShape) error {
	validate(s)
	yd := d.data("y", y, s.YLen()) // (N, K, P, Q)
	xd := d.data("x", x, s.XLen()) // (N, C, H, W)
	wd := d.data("w", w, s.WLen()) // (K, C, R, S)
	crs, pq := s.C*s.R*s.S, s.P()*s.Q()
	xs, ys := s.C*s.H*s.W, s.K*pq
	direct := isPointwise(s)
	t := d.flopThreads(s.FLOPs())
	if byImage(s.N, t) {
		parallelWorkers(s.N, t, func(wk, lo, hi int) {
			for n := lo; n < hi; n++ {
				col := xd[n*xs : (n+1)*xs]
				if !direct {
					col = d.buf32(wk, crs*pq)
					im2colRows(col, xd[n*xs:(n+1)*xs], s, 0, crs)
				}
				sgemm(d.blas, false, false, s.K, pq, crs, 1, wd, crs, col, pq, 0, yd[n*ys:(n+1)*ys], pq)
			}
		})
		return nil
	}
	for n := range s.N {
		col := xd[n*xs : (n+1)*xs]
		if !direct {
			col = d.buf32(0, crs*pq)
			xn := xd[n*xs : (n+1)*xs]
			parallelFor(crs, t, func(lo, hi int) { im2colRows(col[lo*pq:hi*pq], xn, s, lo, hi) })
		}
		d.Sgemm(false, false, s.K, pq, crs, 1, wd, crs, col, pq, 0, yd[n*ys:(n+1)*ys], pq)
	}
	return nil
}

// ConvBackwardData computes dx (N, C, H, W) from dy (N, K, P, Q) and
// w (K, C, R, S): dx[n] = col2im(wᵀ·dy[n]), summing where taps overlap.
// It splits the work as Conv does.
func (d *Device) ConvBackwardData(dx, dy, w gpu.Buffer, s gpu.ConvShape) error {
	validate(s)
	dxd := d.data("dx", dx, s.XLen()) // (N, C, H, W)
	dyd := d.data("dy", dy, s.YLen()) // (N, K, P, Q)
	wd := d.data("w", w, s.WLen())    // (K, C, R, S)
	crs, pq, rs := s.C*s.R*s.S, s.P()*s.Q(), s.R*s.S
	xs, ys := s.C*s.H*s.W, s.K*pq
	direct := isPointwise(s)
	t := d.flopThreads(s.FLOPs())
	if byImage(s.N, t) {
		parallelWorkers(s.N, t, func(wk, lo, hi int) {
			for n := lo; n < hi; n++ {
				dxn := dxd[n*xs : (n+1)*xs]
				if direct {
					sgemm(d.blas, true, false, crs, pq, s.K, 1, wd, crs, dyd[n*ys:(n+1)*ys], pq, 0, dxn, pq)
					continue
				}
				dcol := d.buf32(wk, crs*pq)
				sgemm(d.blas, true, false, crs, pq, s.K, 1, wd, crs, dyd[n*ys:(n+1)*ys], pq, 0, dcol, pq)
				clear(dxn)
				col2imRows(dxn, dcol, s, 0, crs)
			}
		})
		return nil
	}
	for n := range s.N {
		dxn := dxd[n*xs : (n+1)*xs]
		if direct {
			d.Sgemm(true, false, crs, pq, s.K, 1, wd, crs, dyd[n*ys:(n+1)*ys], pq, 0, dxn, pq)
			continue
		}
		dcol := d.buf32(0, crs*pq)
		d.Sgemm(true, false, crs, pq, s.K, 1, wd, crs, dyd[n*ys:(n+1)*ys], pq, 0, dcol, pq)
		// Channel c's rows of dcol land only in channel c of dx.
		parallelFor(s.C, t, func(lo, hi int) {
			clear(dxn[lo*s.H*s.W : hi*s.H*s.W])
			col2imRows(dxn, dcol[lo*rs*pq:hi*rs*pq], s, lo*rs, hi*rs)
		})
	}
	return nil
}

// ConvBackwardFilter computes dw (K, C, R, S) = Σ_n dy[n]·col[n]ᵀ from
// dy (N, K, P, Q) and x (N, C, H, W). dw's columns (c,r,s) are cut into
// blocks that depend on the shape alone; each thread owns some blocks and
// sums the images into them in order. There is no reduction between
// threads, and the result is the same, bit for bit, for any thread count.
func (d *Device) ConvBackwardFilter(dw, dy, x gpu.Buffer, s gpu.ConvShape) error {
	validate(s)
	dwd := d.data("dw", dw, s.WLen()) // (K, C, R, S)
	dyd := d.data("dy", dy, s.YLen()) // (N, K, P, Q)
	xd := d.data("x", x, s.XLen())    // (N, C, H, W)
	crs, pq := s.C*s.R*s.S, s.P()*s.Q()
	xs, ys := s.C*s.H*s.W, s.K*pq
	direct := isPointwise(s)
	t := d.flopThreads(s.FLOPs())
	tiles := filterTiles(crs)
	parallelWorkers(tiles, t, func(wk, lo, hi int) {
		var col []float32
		if !direct {
			col = d.buf32(wk, (crs/tiles+1)*pq)
		}
		for n := range s.N {
			xn, dyn := xd[n*xs:(n+1)*xs], dyd[n*ys:(n+1)*ys]
			beta := float32(1)
			if n == 0 {
				beta = 0
			}
			for i := lo; i < hi; i++ {
				j0, j1 := i*crs/tiles, (i+1)*crs/tiles
				if direct {
					col = xn[j0*pq:]
				} else {
					im2colRows(col, xn, s, j0, j1)
				}
				sgemm(d.blas, false, true, s.K, j1-j0, pq, 1, dyn, pq, col, pq, beta, dwd[j0:], crs)
			}
		}
	})
	return nil
}

// filterTiles is the number of blocks of columns ConvBackwardFilter splits
// dw into: a function of the shape alone, so that every thread count
// computes the same products and so the same bits.
func filterTiles(crs int) int {
	return max(1, min(maxTiles, crs/32))
}

// byImage reports whether n images go one per thread over t threads rather
// than each image split over all t. Per image, the product is then one call
// whatever t is, and gives the same bits for any thread count.
func byImage(n, t int) bool { return n >= t }

// isPointwise reports a 1×1 convolution with stride 1 and no padding, for
// which the column matrix of an image is the image.
func isPointwise(s gpu.ConvShape) bool {
	return s.R == 1 && s.S == 1 && s.Stride == 1 && s.Pad == 0
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

// im2colRows writes rows j0…j1−1 of image xn's column matrix to col
// ((j1−j0), P·Q). xn is one image (C, H, W).
func im2colRows(col, xn []float32, s gpu.ConvShape, j0, j1 int) {
	p, q, hw := s.P(), s.Q(), s.H*s.W
	for j := j0; j < j1; j++ {
		c, r, t := j/(s.R*s.S), j/s.S%s.R, j%s.S
		plane := xn[c*hw : (c+1)*hw]
		dst := col[(j-j0)*p*q : (j-j0+1)*p*q]
		qlo, qhi := validRange(t-s.Pad, s.Stride, s.W, q)
		plo, phi := validRange(r-s.Pad, s.Stride, s.H, p)
		clear(dst[:plo*q])
		clear(dst[phi*q:])
		for i := plo; i < phi; i++ {
			row := dst[i*q : (i+1)*q]
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

// col2imRows adds rows j0…j1−1 of a column matrix, dcol ((j1−j0), P·Q), to
// the pixels of image dxn (C, H, W) they came from.
func col2imRows(dxn, dcol []float32, s gpu.ConvShape, j0, j1 int) {
	p, q, hw := s.P(), s.Q(), s.H*s.W
	for j := j0; j < j1; j++ {
		c, r, t := j/(s.R*s.S), j/s.S%s.R, j%s.S
		plane := dxn[c*hw : (c+1)*hw]
		src := dcol[(j-j0)*p*q : (j-j0+1)*p*q]
		qlo, qhi := validRange(t-s.Pad, s.Stride, s.W, q)
		plo, phi := validRange(r-s.Pad, s.Stride, s.H, p)
		for i := plo; i < phi; i++ {
			row := src[i*q : (i+1)*q]
			dst := plane[(i*s.Stride+r-s.Pad)*s.W:]
			iw := qlo*s.Stride + t - s.Pad
			if s.Stride == 1 {
				dst := dst[iw : iw+qhi-qlo]
				for k, v := range row[qlo:qhi] {
					dst[k] += v
				}
				continue
			}
			for k := qlo; k < qhi; k++ {
				dst[iw] += row[k]
				iw += s.Stride
			}
		}
	}
}
