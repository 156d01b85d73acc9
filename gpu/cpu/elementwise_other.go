//go:build !amd64

package cpu

// addConst sets v[i] += c.
func addConst(v []float32, c float32) { addConstGo(v, c) }

// sum64 returns Σ v in float64 (see sum64Go).
func sum64(v []float32) float64 { return sum64Go(v) }
