// Fused layers: an activation folded into the pass next to it, so that the
// activations are read and written once instead of twice (gpu.Ops.BiasReLU,
// ReLUBiasBackward, LinearReLU, LinearReLUBackward, ReLULRN,
// ReLULRNBackward). Each computes what its unfused kernels compute, with
// the same float operations in the same order, so the bits are the same:
//
//   bias_relu:          y[n,c,i] = max(0, y[n,c,i] + b[c])        (bias.cu, relu.cu)
//   relu_bias_backward: g = dy where y > 0, else 0; dx = g;
//                       db[c] = Σ_{n,i} g[n,c,i]                  (relu.cu, bias.cu)
//   relu_lrn_forward:   y = LRN(max(0, x))                         (relu.cu, lrn.cu)
//   relu_lrn_backward:  dx = LRNBackward(dy, max(0, x), y) where x > 0, else 0
//
// The two relu_lrn kernels live in lrn.cu, as its kernels with the ReLU
// applied as x is read (one template for both, so that the fused and the
// unfused LRN cannot drift apart).
//
// The ReLU follows every conv and FC layer but fc8 (the paper, §3.1); LRN
// follows the ReLU of conv1 and conv2 (§3.3), which then stores its output
// before the ReLU: max(0, x) > 0 exactly where x > 0, so that output is
// all the backward pass needs.
//
// Layout: y, dy, dx (N, C, inner), NCHW, inner = H·W for a convolution and
// 1 for a fully-connected layer (then C is Out); b, db (C); the LRN's as in
// lrn.cu (hw = H·W). bias_relu: one thread per value, grid-stride; the
// LRN kernels: lrn.cu's walk down the channels, one thread per pixel and
// run of span channels. relu_bias_backward: one block per channel, each thread
// summing a strided share in double, then a shared-memory tree (bias.cu's
// order); launch with 256 threads per block. dx may alias dy.

extern "C" __global__ void bias_relu(int N, int C, int inner, float* y, const float* b) {
	long long total = (long long)N * C * inner;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		float v = y[t] + b[(int)(t / inner % C)];
		y[t] = v > 0.0f ? v : 0.0f;
	}
}

extern "C" __global__ void relu_bias_backward(int N, int C, int inner, float* dx, float* db, const float* dy, const float* y) {
	__shared__ double part[256];
	int c = blockIdx.x;
	long long per = (long long)N * inner;
	double acc = 0.0;
	for (long long t = threadIdx.x; t < per; t += blockDim.x) {
		long long n = t / inner, i = t % inner;
		long long at = (n * C + c) * inner + i;
		float g = y[at] > 0.0f ? dy[at] : 0.0f;
		dx[at] = g;
		acc += (double)g;
	}
	part[threadIdx.x] = acc;
	__syncthreads();
	for (int s = blockDim.x / 2; s > 0; s >>= 1) {
		if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
		__syncthreads();
	}
	if (threadIdx.x == 0) db[c] = (float)part[0];
}
