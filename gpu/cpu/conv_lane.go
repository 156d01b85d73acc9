package cpu

import (
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// The lane convolution: a convolution with the images of a block of
// lanes side by side in the lanes of an AVX-512 vector. The
// block's input is laid out (C, H+2·Pad, W+2·Pad, lanes), zero padded, so
// that tap (c, r, t) of output position (p, q) for all the block's images
// is one vector at a fixed offset from the position's window; each
// weight is then one broadcast and a fused multiply-add into each of the
// positions it meets (laneConv8x3: eight filters at three positions).
// There is no column matrix and nothing to pack: the products read the
// input where it lies, at the cost of one pass to lay it out and one to
// lay the output back.

// lanes is how many images a lane convolution computes at once: the
// float32 lanes of an AVX-512 vector.
const lanes = 16

// laneConv8x3Go sets, for filters j = 0…7 and positions i = 0…2,
// y[yo[i] + j·ldy:][:lanes] to the sum over the taps m = (c·R+r)·S+t, in
// that order, of x[xo[i] + c·ldplane + r·ldrow + lanes·t:][:lanes]·w[m·k+j],
// each term one fused multiply-add starting from zero, or with add from
// the value y holds. It is the reference for laneConv8x3's assembly.
func laneConv8x3Go(y []float32, yo [3]int, x []float32, xo [3]int, w []float32, ldy, k, c, r, s, ldrow, ldplane int, add bool) {
	var acc [8][3][lanes]float32
	if add {
		for j := range 8 {
			for i := range 3 {
				copy(acc[j][i][:], y[yo[i]+j*ldy:][:lanes])
			}
		}
	}
	m := 0
	for ci := range c {
		for ri := range r {
			for t := range s {
				for i := range 3 {
					v := x[xo[i]+ci*ldplane+ri*ldrow+lanes*t:][:lanes]
					for j := range 8 {
						wv := w[m*k+j]
						for l, xv := range v {
							acc[j][i][l] = fma32(xv, wv, acc[j][i][l])
						}
					}
				}
				m++
			}
		}
	}
	for j := range 8 {
		for i := range 3 {
			copy(y[yo[i]+j*ldy:][:lanes], acc[j][i][:])
		}
	}
}

// fma32 is a·b + c rounded once to float32, as a fused multiply-add
// instruction computes it: the product is exact in float64, and the sum
// is rounded to odd in float64 (its last bit set where it is inexact), so
// that rounding it to float32 rounds the exact value.
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	s := p + float64(c)
	if math.IsInf(s, 0) || math.IsNaN(s) {
		return float32(s)
	}
	// The error of the float64 sum (Knuth's TwoSum).
	bv := s - p
	e := (p - (s - bv)) + (float64(c) - bv)
	if bits := math.Float64bits(s); e != 0 && bits&1 == 0 {
		if (e > 0) == (s > 0) {
			bits++
		} else {
			bits--
		}
		s = math.Float64frombits(bits)
	}
	return float32(s)
}

// Convolutions says how the CPU device computes convolutions on this
// processor, for logs and `trainer devices`.
func Convolutions() string {
	if fastLane {
		return "lane convolutions (AVX-512), im2col and BLAS for the shapes they do not take"
	}
	return "im2col and BLAS (the lane convolutions need AVX-512)"
}

// laneConvOK says whether Conv and ConvBackwardFilter run shape s as a
// lane convolution: filters in eights, deep enough to be worth a product
// (the shallow ones are directConv's), on a processor with the assembly.
// Any stride: a position's window starts Stride pixels from the last.
func laneConvOK(s gpu.ConvShape) bool {
	return fastLane && s.K%8 == 0 && s.C*s.R*s.S >= convMinDepth && laneFull(s.N)
}

// laneFull says whether n images fill more than half of the blocks of
// lanes they take: a lane convolution costs a whole block for the last
// few images of a batch. Measured (alexnet's conv1 and conv2 and
// alexnet-small's conv2, forward, one thread), a lane convolution took,
// against im2col, 6.5–14 times as long at 1 image, 1.1–1.8 times at 8,
// 0.9–1.4 at 10, 0.6–1.45 at 17 and 0.5–0.8 at 16: batches of a few
// images (predicting a photo, an evaluation's last images) go through
// im2col; every batch of 9 images or more takes the lane path (past 16
// the blocks are always more than half full), so that replicas with 10,
// 15 or 30 images each compute the same way.
func laneFull(n int) bool {
	blocks := (n + lanes - 1) / lanes
	return 2*n > lanes*blocks
}

// laneDataShape is the convolution ConvBackwardData computes for shape s:
// dx (N, C, H, W) is dy (N, K, P, Q), padded by R−1−Pad, convolved with
// the filters turned by half a turn and transposed (C filters of K
// channels), which is a stride-1 convolution when s is one with square
// filters and a padding of at most R−1.
func laneDataShape(s gpu.ConvShape) gpu.ConvShape {
	return gpu.ConvShape{N: s.N, C: s.K, H: s.P(), W: s.Q(), K: s.C, R: s.R, S: s.S, Stride: 1, Pad: s.R - 1 - s.Pad}
}

// laneDataOK says whether ConvBackwardData runs shape s as a lane
// convolution (of laneDataShape).
func laneDataOK(s gpu.ConvShape) bool {
	return s.Stride == 1 && s.R == s.S && s.Pad <= s.R-1 && laneConvOK(laneDataShape(s))
}

// laneWeights lays w (K, C, R, S) out as wl (C, R, S, K), the weights of a
// tap's filters side by side; with flip, as the weights of laneDataShape
// (K, R, S, C): wl[((k·R+r)·S+t)·C+c] = w[k, c, R−1−r, S−1−t].
func laneWeights(wl, wd []float32, s gpu.ConvShape, flip bool) {
	crs, rs := s.C*s.R*s.S, s.R*s.S
	for k := range s.K {
		for j, v := range wd[k*crs : (k+1)*crs] {
			if !flip {
				wl[j*s.K+k] = v
				continue
			}
			c, rt := j/rs, j%rs
			wl[(k*rs+rs-1-rt)*s.C+c] = v
		}
	}
}

// toLanes lays images n0…n0+lanes−1 of x (N, C, H, W) out as xl
// (C, H+2·pad, W+2·pad, lanes), zero in the padding and in the lanes of
// images past the batch's end, nimg: a block of sixteen images a plane at
// a time in assembly (laneIn), fewer in Go.
func toLanes(xl, xd []float32, c, h, w, pad, n0, nimg int) {
	hp, wp := h+2*pad, w+2*pad
	clear(xl[:c*hp*wp*lanes])
	n := min(lanes, nimg-n0)
	if fastLane && n == lanes {
		for ci := range c {
			laneIn(xl[((ci*hp+pad)*wp+pad)*lanes:], xd[(n0*c+ci)*h*w:], w, h, c*h*w, w, wp*lanes)
		}
		return
	}
	for ci := range c {
		for y := range h {
			row := xl[((ci*hp+y+pad)*wp+pad)*lanes:][:w*lanes]
			for l := range n {
				src := xd[((n0+l)*c+ci)*h*w+y*w:][:w]
				for x, v := range src {
					row[x*lanes+l] = v
				}
			}
		}
	}
}

// fromLanes lays yl (K, PQ, lanes) back into images n0… of y (N, K, PQ),
// those before the batch's end, nimg: a block of sixteen images sixteen
// positions at a time in assembly (laneOut), the rest in Go.
func fromLanes(yd, yl []float32, k, pq, n0, nimg int) {
	n := min(lanes, nimg-n0)
	i0 := 0
	if fastLane && n == lanes {
		blocks := k * pq / lanes
		laneOut(yd[n0*k*pq:], yl, blocks, k*pq)
		i0 = blocks * lanes
	}
	for l := range n {
		img := yd[(n0+l)*k*pq:][:k*pq]
		for i := i0; i < len(img); i++ {
			img[i] = yl[i*lanes+l]
		}
	}
}

// laneConv sets y (N, K, P, Q) = x ⋆ w for a shape laneConvOK accepts,
// with the weights laid out by laneWeights, wl (C, R, S, K): a block of
// lanes images at a time, whole blocks per thread when there are at least
// as many as threads, else each block's products split over the threads.
// Every output is one sum in one order whatever the split.
func (d *Device) laneConv(t int, yd, xd, wl []float32, s gpu.ConvShape) {
	blocks := (s.N + lanes - 1) / lanes
	if t > 1 && blocks >= t {
		parallelWorkers(blocks, t, func(wk, lo, hi int) {
			for i := lo; i < hi; i++ {
				laneBlock(1, &d.convs[wk], yd, xd, wl, s, i*lanes)
			}
		})
		return
	}
	for n0 := 0; n0 < s.N; n0 += lanes {
		laneBlock(t, &d.convs[0], yd, xd, wl, s, n0)
	}
}

// laneBlock is laneConv's block of images n0…n0+lanes−1 on t threads,
// laid out in sc: the channels in chunks (laneChannels), and for each
// chunk position after position, three at a time, all the filters of one
// triple before the next, so that the input and the weights the chunk
// reads stay in L2 while every filter reads them. A chunk goes on from
// the sums the one before stored, which gives the bits of one pass.
func laneBlock(t int, sc *convScratch, yd, xd, wl []float32, s gpu.ConvShape, n0 int) {
	pq := s.P() * s.Q()
	hp, wp := s.H+2*s.Pad, s.W+2*s.Pad
	xl := grow(&sc.phases, s.C*hp*wp*lanes)
	yl := grow(&sc.tmp, s.K*pq*lanes)
	toLanes(xl, xd, s.C, s.H, s.W, s.Pad, n0, s.N)
	groups, triples := s.K/8, (pq+2)/3
	cc := laneChannels(s)
	for c0 := 0; c0 < s.C; c0 += cc {
		nc := min(cc, s.C-c0)
		parallelFor(groups*triples, t, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				tr, g := i/groups, i%groups
				var xo, yo [3]int
				for j := range 3 {
					pos := min(3*tr+j, pq-1)
					p, q := pos/s.Q(), pos%s.Q()
					xo[j] = (c0*hp*wp + p*s.Stride*wp + q*s.Stride) * lanes
					yo[j] = (g*8*pq + pos) * lanes
				}
				laneConv8x3(yl, yo, xl, xo, wl[c0*s.R*s.S*s.K+g*8:], pq*lanes, s.K, nc, s.R, s.S, wp*lanes, hp*wp*lanes, c0 > 0)
			}
		})
	}
	fromLanes(yd, yl, s.K, pq, n0, s.N)
}

// laneL2 is the most bytes of input and weights a chunk of a lane
// convolution's channels reads: half of a 2 MiB L2, the other half left
// to the output and what else is there. alexnet's conv3 (256 channels of
// 15×15 padded, 3.7 MB a block, and 1.8 MB of weights) ran at 0.8 of
// OpenBLAS's rate in one chunk.
const laneL2 = 1 << 20

// laneChannels is how many channels a chunk of laneBlock covers: as many
// as keep the chunk's weights, which every triple of positions reads, and
// the rows of its input planes that a row of positions reads (R+Stride
// of them: the triples go along the rows) within laneL2, at least one.
// Counting whole planes cut alexnet's conv1 (three planes of 3.3 MB) into
// three chunks, each going over the block's 9 MB of output again: its
// forward pass took 25.7–27.8 ms at batch 32 against 25.0–26.5 in one
// chunk (alternated).
func laneChannels(s gpu.ConvShape) int {
	per := ((s.R+s.Stride)*(s.W+2*s.Pad)*lanes + s.R*s.S*s.K) * 4
	return max(1, min(s.C, laneL2/per))
}

// laneFilter8x3Go adds to acc[(3j+i)·lanes:][:lanes], for filters j = 0…7
// and taps i = 0…2, the products of filter j's dy, dy[j·lddy:] (rows·q
// positions of lanes values, one after the other), and tap i's input,
// x[xo[i] + row·ldrow + step·col:] at position (row, col), position after
// position, one fused multiply-add a term; without add the sums start
// from zero. It is the reference for laneFilter8x3's assembly.
func laneFilter8x3Go(acc, x []float32, xo [3]int, dy []float32, lddy, rows, q, ldrow, step int, add bool) {
	if !add {
		clear(acc[:24*lanes])
	}
	for row := range rows {
		for col := range q {
			for j := range 8 {
				dv := dy[j*lddy+(row*q+col)*lanes:][:lanes]
				for i := range 3 {
					xv := x[xo[i]+row*ldrow+col*step:][:lanes]
					a := acc[(3*j+i)*lanes:][:lanes]
					for l := range a {
						a[l] = fma32(xv[l], dv[l], a[l])
					}
				}
			}
		}
	}
}

// laneFilterRows is how many rows of positions a call of laneFilter8x3
// covers: as many as keep eight filters' dy for them within 32 KiB (8192
// values), so that they stay in L1 while every tap of the filters reads
// them (16 KiB ran alexnet-small's conv2 filter gradient at 98 GFLOP/s
// against 125, 48 KiB at 113).
func laneFilterRows(q int) int { return max(1, 8192/(8*q*lanes)) }

// laneFilter sets dw (K, C, R, S) = Σ over images and positions of
// dy ⊗ x for a shape laneConvOK accepts. Each block of lanes images is
// laid out as laneConv lays it, dy as (K, P, Q, lanes); each weight's
// sixteen lanes gather its terms, image n's in lane n mod lanes, block
// after block and position after position, and the lanes are added
// pairwise at the end (laneSum). The filters' groups of eight (each group's taps
// cut into parts when there are more threads than groups) are split over
// t threads, which leaves every sum in the same order.
func (d *Device) laneFilter(t int, dwd, dyd, xd []float32, s gpu.ConvShape) {
	crs, pq := s.C*s.R*s.S, s.P()*s.Q()
	hp, wp := s.H+2*s.Pad, s.W+2*s.Pad
	groups, triples := s.K/8, (crs+2)/3
	sc := &d.convs[0]
	acc := grow(&sc.parts, groups*triples*24*lanes)
	xl := grow(&sc.phases, s.C*hp*wp*lanes)
	dyl := grow(&sc.tmp, s.K*pq*lanes)
	// Where tap m = (c·R+r)·S+t reads, from the window of position
	// (0, 0); the last triple's missing taps repeat the last.
	taps := make([]int, 3*triples)
	for m := range taps {
		c, r, t := min(m, crs-1)/(s.R*s.S), min(m, crs-1)/s.S%s.R, min(m, crs-1)%s.S
		taps[m] = ((c*hp+r)*wp + t) * lanes
	}
	parts := max(1, (2*t+groups-1)/groups)
	rows := laneFilterRows(s.Q())
	// The taps in chunks whose input rows (those a chunk of rows of
	// positions reads) stay in L2 while every filter's group reads them
	// (the groups in the chunk's loop).
	chunk := max(1, max(1, laneL2/((s.R+s.Stride*rows)*wp*lanes*4))*s.R*s.S/3)
	for n0 := 0; n0 < s.N; n0 += lanes {
		toLanes(xl, xd, s.C, s.H, s.W, s.Pad, n0, s.N)
		toLanes(dyl, dyd, s.K, s.P(), s.Q(), 0, n0, s.N)
		for c0 := 0; c0 < triples; c0 += chunk {
			c1 := min(c0+chunk, triples)
			parallelFor(groups*parts, t, func(lo, hi int) {
				for task := lo; task < hi; task++ {
					g, part := task/parts, task%parts
					tr0, tr1 := c0+part*(c1-c0)/parts, c0+(part+1)*(c1-c0)/parts
					for p0 := 0; p0 < s.P(); p0 += rows {
						nr := min(rows, s.P()-p0)
						dy := dyl[(g*8*pq+p0*s.Q())*lanes:]
						at := p0 * s.Stride * wp * lanes
						for tr := tr0; tr < tr1; tr++ {
							xo := [3]int{taps[3*tr] + at, taps[3*tr+1] + at, taps[3*tr+2] + at}
							laneFilter8x3(acc[(g*triples+tr)*24*lanes:], xl, xo, dy, pq*lanes, nr, s.Q(), s.Stride*wp*lanes, s.Stride*lanes, n0 > 0 || p0 > 0)
						}
					}
				}
			})
		}
	}
	for f := range s.K {
		g, j := f/8, f%8
		for m := range crs {
			tr, i := m/3, m%3
			dwd[f*crs+m] = laneSum((*[lanes]float32)(acc[((g*triples+tr)*24+3*j+i)*lanes:]))
		}
	}
}

// laneSum is the sum of v's lanes, halves added pairwise: v[k] + v[k+8],
// then the same on the eight sums, and so on to one.
func laneSum(v *[lanes]float32) float32 {
	var h [8]float32
	for k := range h {
		h[k] = v[k] + v[k+8]
	}
	a0, a1, a2, a3 := h[0]+h[4], h[1]+h[5], h[2]+h[6], h[3]+h[7]
	b0, b1 := a0+a2, a1+a3
	return b0 + b1
}
