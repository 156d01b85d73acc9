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
// The ReLU follows every conv and FC layer but fc8 (the paper, §3.1); LRN
// follows the ReLU of conv1 and conv2 (§3.3), which then stores its output
// before the ReLU: max(0, x) > 0 exactly where x > 0, so that output is
// all the backward pass needs.
//
// Layout: y, dy, dx (N, C, inner), NCHW, inner = H·W for a convolution and
// 1 for a fully-connected layer (then C is Out); b, db (C); the LRN's as in
// lrn.cu (hw = H·W). bias_relu and the LRN kernels: one thread per value,
// grid-stride. relu_bias_backward: one block per channel, each thread
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

// fused_negpow is lrn.cu's lrn_negpow: s^−beta.
__device__ static float fused_negpow(float s, float beta) {
	if (beta == 0.75f) {
		float r = sqrtf(s);
		return 1.0f / (r * sqrtf(r));
	}
	if (beta == 0.5f) return 1.0f / sqrtf(s);
	if (beta == 1.0f) return 1.0f / s;
	return powf(s, -beta);
}

// fused_relu is relu.cu's max(0, v).
__device__ static float fused_relu(float v) { return v > 0.0f ? v : 0.0f; }

// fused_lrn_scale is lrn.cu's lrn_scale on max(0, x).
__device__ static float fused_lrn_scale(const float* x, int c, int C, int hw, int half, float alpha, float k) {
	int lo = max(c - half, 0), hi = min(c + half, C - 1);
	float sum = 0.0f;
	for (int j = lo; j <= hi; j++) {
		float v = fused_relu(x[j * hw]);
		sum += v * v;
	}
	return k + alpha * sum;
}

extern "C" __global__ void relu_lrn_forward(int N, int C, int hw, int size, float alpha, float beta, float k,
                                            float* y, const float* x) {
	long long total = (long long)N * C * hw;
	int half = size / 2;
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
		int pix = (int)(i % hw);
		int c = (int)(i / hw % C);
		long long n = i / ((long long)hw * C);
		const float* xi = x + n * (long long)C * hw + pix;
		float s = fused_lrn_scale(xi, c, C, hw, half, alpha, k);
		y[i] = fused_relu(x[i]) * fused_negpow(s, beta);
	}
}

extern "C" __global__ void relu_lrn_backward(int N, int C, int hw, int size, float alpha, float beta, float k,
                                             float* dx, const float* dy, const float* x, const float* y) {
	long long total = (long long)N * C * hw;
	int half = size / 2;
	float coef = 2.0f * alpha * beta;
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
		int pix = (int)(i % hw);
		int c = (int)(i / hw % C);
		long long base = i / ((long long)hw * C) * (long long)C * hw + pix;
		const float* xi = x + base;
		int lo = max(c - half, 0), hi = min(c + half, C - 1);
		float acc = 0.0f;
		for (int j = lo; j <= hi; j++) {
			float sj = fused_lrn_scale(xi, j, C, hw, half, alpha, k);
			acc += dy[base + (long long)j * hw] * y[base + (long long)j * hw] / sj;
		}
		float sc = fused_lrn_scale(xi, c, C, hw, half, alpha, k);
		float xr = fused_relu(x[i]);
		float g = dy[i] * fused_negpow(sc, beta) - coef * xr * acc;
		dx[i] = xr > 0.0f ? g : 0.0f;
	}
}
