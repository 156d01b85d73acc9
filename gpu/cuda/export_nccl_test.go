package cuda

import "errors"

// NewNCCLGroupCopies makes the group of devs as if NCCL refused them: with
// device copies where they share one GPU (ncclgpu_test.go).
func NewNCCLGroupCopies(devs []*Device) (*NCCLGroup, error) {
	return newNCCLGroup(devs, nil, errors.New("NCCL left out by the test"), func(string) string { return "" })
}
