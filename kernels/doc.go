// Package kernels holds the network's custom CUDA operations: every op of
// gpu.Ops that cuDNN and cuBLAS do not do for the CUDA device. Chief among
// them are local response normalization across channels (the paper, §3.3) and
// overlapping max pooling (§3.4), which the vendor libraries do not provide
// in exactly the form this project specifies: cuDNN's LRN divides α by n
// (our gpu.LRNShape takes α as it stands, so both conventions are one code
// path), and its max pooling does not promise which of several equal maxima
// receives the gradient, where ours routes it to the first in row-major
// order.
//
// Two things live here:
//
//   - the CUDA C sources, embedded with go:embed and compiled by NVRTC when
//     a CUDA device starts, so that the build needs no CUDA toolkit (package
//     gpu/cuda loads and launches them). Thirteen files, twenty-five kernels:
//     lrn.cu (lrn_forward, lrn_backward, and relu_lrn_forward,
//     relu_lrn_backward: the LRN of max(0, x), the same template), pool.cu (maxpool_forward,
//     maxpool_backward), relu.cu and tanh.cu (the activations and their
//     backward passes), bias.cu (bias_add, bias_backward), dropout.cu
//     (dropout_forward, dropout_backward), softmax.cu (softmax_xent and its
//     backward pass), sgd.cu (sgd_update, the paper's §5 update, and sgd_multi, the
//     same over many tensors in one launch), concat.cu
//     (concat_rows, split_rows: the cross-tower joins), add.cu
//     (add_inplace), augment.cu (augment: crops, flips, colour noise and
//     the mean image on the device), fused.cu (bias_relu,
//     relu_bias_backward: the ReLU folded into the bias's pass, the same
//     bits as the unfused kernels) and bf16.cu (round_bf16: the bf16 precision's
//     rounding, package gpu/bf16);
//   - float64 references for LRN and max pooling (LRN, LRNBackward,
//     MaxPool, MaxPoolBackward), written straight from the formula in their
//     doc comments, slow and obvious. They define that math: the CPU device,
//     the CUDA kernels and the conformance suite in package gpu/gputest are
//     all checked against them; the other kernels are checked against the
//     conformance suite's own float64 references.
//
// Tensors are NCHW as in package gpu: N images, C channels, H rows, W
// columns, W fastest. The references take and return flat slices in that
// order.
package kernels
