package gputest

import "github.com/alexnet-go/trainer/gpu"

// FailuresBF16 runs the named check of the bf16 pass (e.g. "Conv") on dev
// and returns its failures, as Failures does for Run.
func FailuresBF16(dev gpu.Device, name string) []string {
	var fails []string
	root := &checker{dev: dev, fails: &fails}
	for _, op := range bf16Suite {
		if op.name == name {
			root.run(op.name, op.check)
			return fails
		}
	}
	panic("gputest: no bf16 check named " + name)
}

// BF16Round exposes the bf16 pass's reference rounding.
var BF16Round = bf16Round
