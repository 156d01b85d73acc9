package cpu

import "github.com/alexnet-go/trainer/gpu"

//go:noescape
func maxPool3Asm(y, x []float32, w, p, q int)

//go:noescape
func poolRouteAsm(m, x, y, dy []float32, w, p, q, l int) (miss int)

//go:noescape
func poolScatterAsm(dx, m []float32, w, h, p, l int)

// pool3 reports whether the assembly pools s, a plane per call: 3×3
// windows every two pixels, AlexNet's overlapping pooling, with AVX.
func pool3(s gpu.PoolShape) bool { return useAVX && s.Size == 3 && s.Stride == 2 }
