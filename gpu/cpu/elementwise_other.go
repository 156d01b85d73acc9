//go:build !amd64

package cpu

// addConst sets v[i] += c.
func addConst(v []float32, c float32) { addConstGo(v, c) }

// sum64 returns Σ v in float64 (see sum64Go).
func sum64(v []float32) float64 { return sum64Go(v) }

func relu(y, x []float32) { reluGo(y, x) }

func reluBackward(dx, dy, y []float32) { reluBackwardGo(dx, dy, y) }

func sgd(w, v, g []float32, mom, decay, lr float32) { sgdGo(w, v, g, mom, decay, lr) }

func maxInto(dst, src []float32) { maxIntoGo(dst, src) }
