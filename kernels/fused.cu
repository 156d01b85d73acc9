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

// fused_lrn_at is lrn.cu's lrn_at on max(0, x).
__device__ static float fused_lrn_at(const float* x, int j, int C, int hw) {
	return j >= 0 && j < C ? fused_relu(x[(long long)j * hw]) : 0.0f;
}

// fused_lrn_ahead is lrn.cu's lrn_ahead, x through fused_lrn_at.
__device__ static void fused_lrn_ahead(const float* x, const float* dy, const float* y, int c, int from, int C, int hw, int h,
                                       float* nx, float* ndy, float* ny) {
	*nx = fused_lrn_at(x, c + 2 * h, C, hw);
	int j = c + h;
	if (j >= from && j >= 0 && j < C) {
		long long o = (long long)j * hw;
		*ndy = dy[o];
		*ny = y[o];
	}
}

// fused_lrn_scale is lrn.cu's lrn_scale on max(0, x).
__device__ static float fused_lrn_scale(const float* x, int c, int C, int hw, int half, float alpha, float k) {
	float sum = 0.0f;
	for (int j = max(c - half, 0); j <= min(c + half, C - 1); j++) {
		float v = fused_relu(x[(long long)j * hw]);
		sum += v * v;
	}
	return k + alpha * sum;
}

// fused_lrn_forward_run is lrn.cu's lrn_forward_run on max(0, x).
template <int H>
__device__ static void fused_lrn_forward_run(float* y, const float* x, int c0, int c1, int C, int hw, float alpha, float beta, float k) {
	float v[2 * H + 1];
#pragma unroll
	for (int i = 0; i <= 2 * H; i++) v[i] = 0.0f;
	float next = fused_lrn_at(x, c0 - H, C, hw);
	for (int c = c0 - 2 * H; c < c1; c++) {
#pragma unroll
		for (int i = 0; i < 2 * H; i++) v[i] = v[i + 1];
		v[2 * H] = next;
		if (c + 1 < c1) next = fused_lrn_at(x, c + 1 + H, C, hw);
		if (c < c0) continue;
		float sum = 0.0f;
#pragma unroll
		for (int i = 0; i <= 2 * H; i++) sum += v[i] * v[i];
		y[(long long)c * hw] = v[H] * fused_negpow(k + alpha * sum, beta);
	}
}

// fused_lrn_backward_run is lrn.cu's lrn_backward_run on max(0, x):
// v holds max(0, x), and dx is 0 where x ≤ 0.
template <int H>
__device__ static void fused_lrn_backward_run(float* dx, const float* dy, const float* x, const float* y, int c0, int c1, int C, int hw,
                                              float alpha, float beta, float k) {
	float v[2 * H + 1], r[2 * H + 1], s[H + 1], g[H + 1];
	float coef = 2.0f * alpha * beta;
#pragma unroll
	for (int i = 0; i <= 2 * H; i++) v[i] = r[i] = 0.0f;
#pragma unroll
	for (int i = 0; i <= H; i++) s[i] = g[i] = 0.0f;
	float nx = 0.0f, ndy = 0.0f, ny = 0.0f;
	fused_lrn_ahead(x, dy, y, c0 - 4 * H, c0 - H, C, hw, H, &nx, &ndy, &ny);
	for (int c = c0 - 4 * H; c < c1; c++) {
#pragma unroll
		for (int i = 0; i < 2 * H; i++) v[i] = v[i + 1], r[i] = r[i + 1];
#pragma unroll
		for (int i = 0; i < H; i++) s[i] = s[i + 1], g[i] = g[i + 1];
		v[2 * H] = nx;
		float dyj = ndy, yj = ny;
		if (c + 1 < c1) fused_lrn_ahead(x, dy, y, c + 1, c0 - H, C, hw, H, &nx, &ndy, &ny);
		int j = c + H; // the channel whose ratio enters c's window
		r[2 * H] = 0.0f;
		if (j >= c0 - H && j >= 0 && j < C) {
			float sum = 0.0f;
#pragma unroll
			for (int i = 0; i <= 2 * H; i++) sum += v[i] * v[i];
			s[H] = k + alpha * sum;
			g[H] = dyj;
			r[2 * H] = dyj * yj / s[H];
		}
		if (c < c0) continue;
		float acc = 0.0f;
#pragma unroll
		for (int i = 0; i <= 2 * H; i++) acc += r[i];
		float d = g[0] * fused_negpow(s[0], beta) - coef * v[0] * acc;
		dx[(long long)c * hw] = v[0] > 0.0f ? d : 0.0f;
	}
}

// fused_lrn_pixel is lrn.cu's lrn_pixel.
__device__ static long long fused_lrn_pixel(long long t, int C, int hw, int span, int* c0, int* c1) {
	int parts = (C + span - 1) / span;
	*c0 = (int)(t / hw % parts) * span;
	*c1 = min(*c0 + span, C);
	return t / ((long long)hw * parts) * C * hw + t % hw;
}

extern "C" __global__ void relu_lrn_forward(int N, int C, int hw, int span, int size, float alpha, float beta, float k,
                                            float* y, const float* x) {
	int half = size / 2;
	long long total = (long long)N * ((C + span - 1) / span) * hw;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		int c0, c1;
		long long p = fused_lrn_pixel(t, C, hw, span, &c0, &c1);
		float* yp = y + p;
		const float* xp = x + p;
		switch (half) {
		case 0: fused_lrn_forward_run<0>(yp, xp, c0, c1, C, hw, alpha, beta, k); break;
		case 1: fused_lrn_forward_run<1>(yp, xp, c0, c1, C, hw, alpha, beta, k); break;
		case 2: fused_lrn_forward_run<2>(yp, xp, c0, c1, C, hw, alpha, beta, k); break;
		default:
			for (int c = c0; c < c1; c++) {
				long long o = (long long)c * hw;
				yp[o] = fused_relu(xp[o]) * fused_negpow(fused_lrn_scale(xp, c, C, hw, half, alpha, k), beta);
			}
		}
	}
}

extern "C" __global__ void relu_lrn_backward(int N, int C, int hw, int span, int size, float alpha, float beta, float k,
                                             float* dx, const float* dy, const float* x, const float* y) {
	int half = size / 2;
	long long total = (long long)N * ((C + span - 1) / span) * hw;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		int c0, c1;
		long long p = fused_lrn_pixel(t, C, hw, span, &c0, &c1);
		float* dxp = dx + p;
		const float *dyp = dy + p, *xp = x + p, *yp = y + p;
		switch (half) {
		case 0: fused_lrn_backward_run<0>(dxp, dyp, xp, yp, c0, c1, C, hw, alpha, beta, k); break;
		case 1: fused_lrn_backward_run<1>(dxp, dyp, xp, yp, c0, c1, C, hw, alpha, beta, k); break;
		case 2: fused_lrn_backward_run<2>(dxp, dyp, xp, yp, c0, c1, C, hw, alpha, beta, k); break;
		default: {
			float coef = 2.0f * alpha * beta;
			for (int c = c0; c < c1; c++) {
				float acc = 0.0f;
				for (int j = max(c - half, 0); j <= min(c + half, C - 1); j++) {
					long long o = (long long)j * hw;
					acc += dyp[o] * yp[o] / fused_lrn_scale(xp, j, C, hw, half, alpha, k);
				}
				long long o = (long long)c * hw;
				float xr = fused_relu(xp[o]);
				float d = dyp[o] * fused_negpow(fused_lrn_scale(xp, c, C, hw, half, alpha, k), beta) - coef * xr * acc;
				dxp[o] = xr > 0.0f ? d : 0.0f;
			}
		}
		}
	}
}
