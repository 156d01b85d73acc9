package gputest

import (
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// The float64 references below are written straight from the formulas in
// the doc comments of gpu.Ops, as loops over every index: slow and obvious.
// LRN and max pooling have theirs in package kernels.

// at4 is the flat offset of [a,b,c,d] in a dense tensor of shape (·,B,C,D).
func at4(B, C, D, a, b, c, d int) int { return ((a*B+b)*C+c)*D + d }

// convRef is y[n,k,p,q] = Σ_{c,r,s} w[k,c,r,s]·x[n,c,p·Stride+r−Pad,q·Stride+s−Pad],
// zero outside the image.
func convRef(x, w []float64, s gpu.ConvShape) []float64 {
	P, Q := s.P(), s.Q()
	y := make([]float64, s.YLen())
	for n := range s.N {
		for k := range s.K {
			for p := range P {
				for q := range Q {
					sum := 0.0
					for c := range s.C {
						for r := range s.R {
							for t := range s.S {
								h, v := p*s.Stride+r-s.Pad, q*s.Stride+t-s.Pad
								if h < 0 || h >= s.H || v < 0 || v >= s.W {
									continue
								}
								sum += w[at4(s.C, s.R, s.S, k, c, r, t)] * x[at4(s.C, s.H, s.W, n, c, h, v)]
							}
						}
					}
					y[at4(s.K, P, Q, n, k, p, q)] = sum
				}
			}
		}
	}
	return y
}

// convBackwardRef returns dx = ∂L/∂x and dw = ∂L/∂w for y = convRef(x, w):
// each term w[k,c,r,s]·x[n,c,h,v] of y[n,k,p,q] sends dy[n,k,p,q]·w to
// dx[n,c,h,v] and dy[n,k,p,q]·x to dw[k,c,r,s].
func convBackwardRef(dy, x, w []float64, s gpu.ConvShape) (dx, dw []float64) {
	P, Q := s.P(), s.Q()
	dx = make([]float64, s.XLen())
	dw = make([]float64, s.WLen())
	for n := range s.N {
		for k := range s.K {
			for p := range P {
				for q := range Q {
					g := dy[at4(s.K, P, Q, n, k, p, q)]
					for c := range s.C {
						for r := range s.R {
							for t := range s.S {
								h, v := p*s.Stride+r-s.Pad, q*s.Stride+t-s.Pad
								if h < 0 || h >= s.H || v < 0 || v >= s.W {
									continue
								}
								xi, wi := at4(s.C, s.H, s.W, n, c, h, v), at4(s.C, s.R, s.S, k, c, r, t)
								dx[xi] += g * w[wi]
								dw[wi] += g * x[xi]
							}
						}
					}
				}
			}
		}
	}
	return dx, dw
}

// addBiasRef is y[n,c,i] + b[c].
func addBiasRef(y, b []float64, s gpu.BiasShape) []float64 {
	out := make([]float64, s.Len())
	for n := range s.N {
		for c := range s.C {
			for i := range s.Inner {
				j := (n*s.C+c)*s.Inner + i
				out[j] = y[j] + b[c]
			}
		}
	}
	return out
}

// biasBackwardRef is db[c] = Σ_{n,i} dy[n,c,i].
func biasBackwardRef(dy []float64, s gpu.BiasShape) []float64 {
	db := make([]float64, s.C)
	for n := range s.N {
		for c := range s.C {
			for i := range s.Inner {
				db[c] += dy[(n*s.C+c)*s.Inner+i]
			}
		}
	}
	return db
}

// linearRef is y[n,o] = Σ_i x[n,i]·w[o,i] + b[o].
func linearRef(x, w, b []float64, s gpu.LinearShape) []float64 {
	y := make([]float64, s.N*s.Out)
	for n := range s.N {
		for o := range s.Out {
			sum := b[o]
			for i := range s.In {
				sum += x[n*s.In+i] * w[o*s.In+i]
			}
			y[n*s.Out+o] = sum
		}
	}
	return y
}

// linearBackwardRef is dx[n,i] = Σ_o dy[n,o]·w[o,i], dw[o,i] = Σ_n dy[n,o]·x[n,i]
// and db[o] = Σ_n dy[n,o].
func linearBackwardRef(dy, x, w []float64, s gpu.LinearShape) (dx, dw, db []float64) {
	dx = make([]float64, s.N*s.In)
	dw = make([]float64, s.Out*s.In)
	db = make([]float64, s.Out)
	for n := range s.N {
		for o := range s.Out {
			g := dy[n*s.Out+o]
			db[o] += g
			for i := range s.In {
				dx[n*s.In+i] += g * w[o*s.In+i]
				dw[o*s.In+i] += g * x[n*s.In+i]
			}
		}
	}
	return dx, dw, db
}

// softmaxRef is prob[n,j] = exp(z[n,j]) / Σ_k exp(z[n,k]) and
// loss[n] = −log prob[n,label[n]] = log Σ_k exp(z[n,k]) − z[n,label[n]],
// with the row's maximum taken out of the exponentials so that no logit
// overflows.
func softmaxRef(z, labels []float64, s gpu.SoftmaxShape) (prob, loss []float64) {
	prob = make([]float64, s.N*s.Classes)
	loss = make([]float64, s.N)
	for n := range s.N {
		row := z[n*s.Classes : (n+1)*s.Classes]
		m := math.Inf(-1)
		for _, v := range row {
			m = max(m, v)
		}
		sum := 0.0
		for _, v := range row {
			sum += math.Exp(v - m)
		}
		for j, v := range row {
			prob[n*s.Classes+j] = math.Exp(v-m) / sum
		}
		loss[n] = m + math.Log(sum) - row[int(labels[n])]
	}
	return prob, loss
}

// softmaxBackwardRef is dz[n,j] = (prob[n,j] − [j = label[n]]) / N.
func softmaxBackwardRef(prob, labels []float64, s gpu.SoftmaxShape) []float64 {
	dz := make([]float64, s.N*s.Classes)
	for n := range s.N {
		for j := range s.Classes {
			g := prob[n*s.Classes+j]
			if j == int(labels[n]) {
				g--
			}
			dz[n*s.Classes+j] = g / float64(s.N)
		}
	}
	return dz
}

// concatRef is dst[n] = src0[n] ‖ src1[n] ‖ …, src i holding rows of Sizes[i].
func concatRef(srcs [][]float64, s gpu.ConcatShape) []float64 {
	var dst []float64
	for n := range s.N {
		for i, size := range s.Sizes {
			dst = append(dst, srcs[i][n*size:(n+1)*size]...)
		}
	}
	return dst
}

// splitRef is concatRef's inverse.
func splitRef(src []float64, s gpu.ConcatShape) [][]float64 {
	dsts := make([][]float64, len(s.Sizes))
	off := 0
	for range s.N {
		for i, size := range s.Sizes {
			dsts[i] = append(dsts[i], src[off:off+size]...)
			off += size
		}
	}
	return dsts
}

// sgdRef is v ← Momentum·v − WeightDecay·LR·w − LR·dw; w ← w + v.
func sgdRef(w, v, dw []float64, s gpu.SGDShape) (w2, v2 []float64) {
	lr, mom, wd := float64(s.LR), float64(s.Momentum), float64(s.WeightDecay)
	w2 = make([]float64, s.N)
	v2 = make([]float64, s.N)
	for i := range s.N {
		v2[i] = mom*v[i] - wd*lr*w[i] - lr*dw[i]
		w2[i] = w[i] + v2[i]
	}
	return w2, v2
}

// splitMix64 returns output k ≥ 1 of SplitMix64 (Vigna's splitmix64.c)
// started from state seed: the state advanced k times by the golden-ratio
// increment γ, then mixed.
func splitMix64(seed, k uint64) uint64 {
	const γ = 0x9E3779B97F4A7C15
	z := seed + k*γ
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}

// dropoutKeepRef is the rule gpu.DropoutKeep's doc comment states: element
// i is kept when the top 24 bits of output i+1 of SplitMix64 from state
// seed, read as a fraction in [0, 1), are at least p. It is written from
// that comment and does not call gpu.DropoutKeep, so that the devices that
// do call it are checked against something that can disagree.
func dropoutKeepRef(seed uint64, i int, p float32) bool {
	u := float64(splitMix64(seed, uint64(i)+1)>>40) / (1 << 24)
	return u >= float64(p)
}
