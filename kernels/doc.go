// Package kernels holds the network's custom operations: local response
// normalization across channels (PAPER.md §3.3) and overlapping max pooling
// (§3.4). The vendor libraries do not provide them in exactly the form this
// project specifies: cuDNN's LRN divides α by n (our gpu.LRNShape takes α as
// it stands, so both conventions are one code path), and its max pooling
// does not promise which of several equal maxima receives the gradient,
// where ours routes it to the first in row-major order.
//
// Two things live here:
//
//   - the CUDA C sources of those kernels, embedded with go:embed and compiled
//     by NVRTC when a CUDA device starts, so that the build needs no CUDA
//     toolkit (package gpu/cuda loads and launches them);
//   - float64 references for them (LRN, LRNBackward, MaxPool,
//     MaxPoolBackward), written straight from the formula in their doc
//     comments, slow and obvious. They define the math: the CPU device, the
//     CUDA kernels and the conformance suite in package gpu/gputest are all
//     checked against them.
//
// Tensors are NCHW as in package gpu: N images, C channels, H rows, W
// columns, W fastest. The references take and return flat slices in that
// order.
package kernels
