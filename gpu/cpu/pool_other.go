//go:build !amd64

package cpu

import "github.com/alexnet-go/trainer/gpu"

// pool3 is false without the assembly: the Go code pools every shape.
func pool3(gpu.PoolShape) bool { return false }

func maxPool3Asm(y, x []float32, w, p, q int) { panic("cpu: no pooling assembly") }

func poolRouteAsm(m, x, y, dy []float32, w, p, q, l int) int {
	panic("cpu: no pooling assembly")
}

func poolScatterAsm(dx, m []float32, w, h, p, l int) { panic("cpu: no pooling assembly") }
