package gputest

import "github.com/alexnet-go/trainer/gpu"

// Failures runs the named check of the suite (e.g. "ReLU") on dev and
// returns its failures instead of reporting them to a testing.T, so that
// the suite's own tests can show it fails a broken device.
func Failures(dev gpu.Device, name string) []string {
	var fails []string
	root := &checker{dev: dev, fails: &fails}
	for _, op := range suite {
		if op.name == name {
			root.run(op.name, op.check)
			return fails
		}
	}
	panic("gputest: no check named " + name)
}

// Compare exposes compare.
var Compare = compare

// SplitMix64 and DropoutKeepRef expose the dropout reference, to be checked
// against SplitMix64's published outputs.
var (
	SplitMix64     = splitMix64
	DropoutKeepRef = dropoutKeepRef
)
