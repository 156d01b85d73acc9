//go:build !amd64

package cpu

// pow34 replaces each v[i] by v[i]^−¾.
func pow34(v []float32) { pow34Go(v) }
