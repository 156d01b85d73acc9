package kernels

import (
	"fmt"
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// LRN is local response normalization across channels (the paper, §3.3):
//
//	y[n,c,h,w] = x[n,c,h,w] / D[n,c,h,w]^Beta,
//	D[n,c,h,w] = K + Alpha · Σ_{j=max(0,c−Size/2)}^{min(C−1,c+Size/2)} x[n,j,h,w]²
//
// with Size/2 rounded down. Alpha is used as it stands (see gpu.LRNShape).
// x and the result are (N, C, H, W).
func LRN(x []float64, s gpu.LRNShape) []float64 {
	mustLRN("LRN", s, x)
	y := make([]float64, len(x))
	beta := float64(s.Beta)
	for n := range s.N {
		for c := range s.C {
			for h := range s.H {
				for w := range s.W {
					i := index(s.C, s.H, s.W, n, c, h, w)
					y[i] = x[i] / math.Pow(lrnDenom(x, s, n, c, h, w), beta)
				}
			}
		}
	}
	return y
}

// LRNBackward returns dx = ∂L/∂x given dy = ∂L/∂y for y = LRN(x), the exact
// derivative. With D[c] as in LRN and W(c) = [c−Size/2, c+Size/2] ∩ [0, C−1]
// the channels in c's sum (at one n, h, w),
//
//	∂y[c]/∂x[i] = [i=c]·D[c]^−Beta − 2·Alpha·Beta·x[c]·x[i]·D[c]^(−Beta−1)·[i∈W(c)],
//
// so
//
//	dx[i] = dy[i]·D[i]^−Beta − 2·Alpha·Beta·x[i]·Σ_{c: i∈W(c)} dy[c]·x[c]·D[c]^(−Beta−1).
//
// dy, x and the result are (N, C, H, W).
func LRNBackward(dy, x []float64, s gpu.LRNShape) []float64 {
	mustLRN("LRNBackward", s, x)
	mustLen("LRNBackward: dy", dy, s.Len())
	dx := make([]float64, len(x))
	alpha, beta := float64(s.Alpha), float64(s.Beta)
	for n := range s.N {
		for i := range s.C {
			for h := range s.H {
				for w := range s.W {
					xi := index(s.C, s.H, s.W, n, i, h, w)
					g := dy[xi] * math.Pow(lrnDenom(x, s, n, i, h, w), -beta)
					for c := range s.C {
						if lo, hi := lrnWindow(s, c); i < lo || i > hi {
							continue
						}
						xc := index(s.C, s.H, s.W, n, c, h, w)
						d := lrnDenom(x, s, n, c, h, w)
						g -= 2 * alpha * beta * x[xi] * dy[xc] * x[xc] * math.Pow(d, -beta-1)
					}
					dx[xi] = g
				}
			}
		}
	}
	return dx
}

// lrnWindow returns the first and last channel in channel c's sum.
func lrnWindow(s gpu.LRNShape, c int) (lo, hi int) {
	return max(0, c-s.Size/2), min(s.C-1, c+s.Size/2)
}

// lrnDenom returns D = K + Alpha·Σ x[j]² over channel c's window at (n, h, w).
func lrnDenom(x []float64, s gpu.LRNShape, n, c, h, w int) float64 {
	lo, hi := lrnWindow(s, c)
	sum := 0.0
	for j := lo; j <= hi; j++ {
		v := x[index(s.C, s.H, s.W, n, j, h, w)]
		sum += v * v
	}
	return float64(s.K) + float64(s.Alpha)*sum
}

// MaxPool is max pooling over Size×Size windows every Stride pixels, without
// padding (the paper, §3.4; overlapping when Stride < Size):
//
//	y[n,c,p,q] = max_{0≤r<Size, 0≤t<Size} x[n,c,p·Stride+r,q·Stride+t]
//
// x is (N, C, H, W), the result (N, C, P, Q) with P = (H−Size)/Stride + 1 and
// Q = (W−Size)/Stride + 1, rounded down: rows and columns that no window
// reaches are ignored.
func MaxPool(x []float64, s gpu.PoolShape) []float64 {
	mustPool("MaxPool", s, x)
	P, Q := s.P(), s.Q()
	y := make([]float64, s.YLen())
	for n := range s.N {
		for c := range s.C {
			for p := range P {
				for q := range Q {
					y[index(s.C, P, Q, n, c, p, q)] = x[poolArgmax(x, s, n, c, p, q)]
				}
			}
		}
	}
	return y
}

// MaxPoolBackward returns dx = ∂L/∂x given dy = ∂L/∂y for y = MaxPool(x):
//
//	dx[n,c,h,w] = Σ_{p,q: (h,w) = m(n,c,p,q)} dy[n,c,p,q]
//
// where m(n,c,p,q) is the position of the window's maximum. On ties the
// first maximum in a row-major scan of the window wins (r outer, t inner);
// where windows overlap, a pixel that is the maximum of several collects the
// sum of their gradients. Pixels that are no window's maximum get 0.
// dy is (N, C, P, Q), x and the result (N, C, H, W).
func MaxPoolBackward(dy, x []float64, s gpu.PoolShape) []float64 {
	mustPool("MaxPoolBackward", s, x)
	mustLen("MaxPoolBackward: dy", dy, s.YLen())
	P, Q := s.P(), s.Q()
	dx := make([]float64, len(x))
	for n := range s.N {
		for c := range s.C {
			for p := range P {
				for q := range Q {
					dx[poolArgmax(x, s, n, c, p, q)] += dy[index(s.C, P, Q, n, c, p, q)]
				}
			}
		}
	}
	return dx
}

// poolArgmax returns the flat index in x of the first maximum of window
// (p, q) of image n, channel c, scanning the window row by row.
func poolArgmax(x []float64, s gpu.PoolShape, n, c, p, q int) int {
	best := -1
	for r := range s.Size {
		for t := range s.Size {
			i := index(s.C, s.H, s.W, n, c, p*s.Stride+r, q*s.Stride+t)
			if best < 0 || x[i] > x[best] {
				best = i
			}
		}
	}
	return best
}

// index is the flat offset of [n,c,h,w] in an NCHW tensor of C×H×W images.
func index(C, H, W, n, c, h, w int) int {
	return ((n*C+c)*H+h)*W + w
}

func mustLRN(op string, s gpu.LRNShape, x []float64) {
	if err := s.Validate(); err != nil {
		panic("kernels: " + op + ": " + err.Error())
	}
	mustLen(op+": x", x, s.Len())
}

func mustPool(op string, s gpu.PoolShape, x []float64) {
	if err := s.Validate(); err != nil {
		panic("kernels: " + op + ": " + err.Error())
	}
	mustLen(op+": x", x, s.XLen())
}

// mustLen panics unless v holds exactly n values: the references take
// tensors of exactly their shape.
func mustLen(name string, v []float64, n int) {
	if len(v) != n {
		panic(fmt.Sprintf("kernels: %s holds %d values, the shape needs %d", name, len(v), n))
	}
}
