//go:build !linux

package cpu

// adviseHugePages does nothing outside Linux.
func adviseHugePages(v []float32) {}
