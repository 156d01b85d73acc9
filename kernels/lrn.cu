// Local response normalization across channels (the paper, §3.3).
//
// With half = size/2 and the window clipped to the channels 0…C−1:
//
//   scale[c] = k + alpha·Σ_{j=c−half}^{c+half} x[j]²
//   y[c]     = x[c] · scale[c]^−beta
//   dx[c]    = dy[c]·scale[c]^−beta − 2·alpha·beta·x[c]·Σ_{j=c−half}^{c+half} dy[j]·y[j]/scale[j]
//
// (the window is symmetric, so the channels whose window holds c are again
// c−half…c+half). alpha multiplies the sum as it stands: gpu.LRNShape's
// convention; a Caffe-style net passes alpha/size.
//
// Layout: x, y, dx, dy are NCHW, N images, C channels, hw = H·W pixels per
// channel, pixel fastest. One thread per pixel (n, pixel) and run of span
// channels (all C, or fewer where N·hw threads would not fill the GPU:
// gpu/cuda's lrnSpan). It walks down its channels, hw apart, so that the
// threads of a warp read neighbouring pixels of one channel together, and
// keeps what the window needs in registers: forward, the 2·half+1 values
// of x around c; backward, the 2·half+1 values of x from c to c+2·half
// (for scale[c+half]), the ratios dy·y/scale of c's window, and the
// scales and dy from c to c+half. So each value of x, dy and y is read
// from DRAM once, and a run re-reads only the half (forward) or 2·half
// (backward) channels its window reaches beyond it, which its neighbour
// has just read; each step loads the next step's values before it
// computes, so that a thread keeps two steps' loads in flight. All in
// float32, each sum in the order of j with zeros for the channels outside
// 0…C−1 (which add nothing: the sums are never −0), so the bits are those
// of a direct sum per value; the CPU device sums the same squares in the
// same order, so its scales are these bit for bit, and its y and dx, which
// take the power and the ratio another way (gpu/cpu/lrn.go), agree to an
// ulp or two (gpu/cuda's TestKernelsMatchCPUDevice). half ≤ 2 (size ≤ 5: the paper's) is a
// template, its windows unrolled into registers; a larger half sums
// directly, one output at a time, re-reading x from the cache, as the
// kernels did before. (A kernel gets the registers of its largest
// branch, so each template case costs every size occupancy.)

__device__ static float lrn_negpow(float s, float beta) {
	if (beta == 0.75f) {
		float r = sqrtf(s);
		return 1.0f / (r * sqrtf(r));
	}
	if (beta == 0.5f) return 1.0f / sqrtf(s);
	if (beta == 1.0f) return 1.0f / s;
	return powf(s, -beta);
}

// lrn_in is the LRN's input value: x, or max(0, x) for ReLU+LRN (R), the
// ReLU applied as x is read (fused.cu's relu_lrn_* are these kernels with
// R: the same operations in the same order as relu.cu then lrn.cu).
template <bool R>
__device__ static float lrn_in(float v) {
	return R ? (v > 0.0f ? v : 0.0f) : v;
}

// lrn_at is channel j of the pixel x points at (channel 0), as lrn_in
// reads it, 0 outside the C channels.
template <bool R>
__device__ static float lrn_at(const float* x, int j, int C, int hw) {
	return j >= 0 && j < C ? lrn_in<R>(x[(long long)j * hw]) : 0.0f;
}

// lrn_ahead loads what step c of lrn_backward_run takes in: x[c+2h]
// into *nx and, where channel j = c+h has a ratio (from, on), dy[j] and
// y[j] into *ndy and *ny.
template <bool R>
__device__ static void lrn_ahead(const float* x, const float* dy, const float* y, int c, int from, int C, int hw, int h,
                                 float* nx, float* ndy, float* ny) {
	*nx = lrn_at<R>(x, c + 2 * h, C, hw);
	int j = c + h;
	if (j >= from && j >= 0 && j < C) {
		long long o = (long long)j * hw;
		*ndy = dy[o];
		*ny = y[o];
	}
}

// lrn_scale is scale[c] summed directly, for half > 2.
template <bool R>
__device__ static float lrn_scale(const float* x, int c, int C, int hw, int half, float alpha, float k) {
	float sum = 0.0f;
	for (int j = max(c - half, 0); j <= min(c + half, C - 1); j++) {
		float v = lrn_in<R>(x[(long long)j * hw]);
		sum += v * v;
	}
	return k + alpha * sum;
}

// lrn_forward_run computes y[c0…c1−1] of one pixel, the window in
// registers: v[i] = x[c−H+i]. next is the channel the following step
// takes in, loaded a step ahead so that a thread has two loads in flight.
template <bool R, int H>
__device__ static void lrn_forward_run(float* y, const float* x, int c0, int c1, int C, int hw, float alpha, float beta, float k) {
	float v[2 * H + 1];
#pragma unroll
	for (int i = 0; i <= 2 * H; i++) v[i] = 0.0f;
	float next = lrn_at<R>(x, c0 - H, C, hw);
	for (int c = c0 - 2 * H; c < c1; c++) {
#pragma unroll
		for (int i = 0; i < 2 * H; i++) v[i] = v[i + 1];
		v[2 * H] = next;
		if (c + 1 < c1) next = lrn_at<R>(x, c + 1 + H, C, hw);
		if (c < c0) continue;
		float sum = 0.0f;
#pragma unroll
		for (int i = 0; i <= 2 * H; i++) sum += v[i] * v[i];
		y[(long long)c * hw] = v[H] * lrn_negpow(k + alpha * sum, beta);
	}
}

// lrn_backward_run computes dx[c0…c1−1] of one pixel. At channel c:
// v[i] = x[c+i] (the window of c+H; v[0] is x[c]), r[i] = dy·y/scale at
// c−H+i, s[i] = scale[c+i], g[i] = dy[c+i]. The ratios are needed from
// c0−H on; nx, ndy and ny are the following step's x, dy and y, loaded a
// step ahead. With R, v holds max(0, x) and dx is 0 where x ≤ 0.
template <bool R, int H>
__device__ static void lrn_backward_run(float* dx, const float* dy, const float* x, const float* y, int c0, int c1, int C, int hw,
                                        float alpha, float beta, float k) {
	float v[2 * H + 1], r[2 * H + 1], s[H + 1], g[H + 1];
	float coef = 2.0f * alpha * beta;
#pragma unroll
	for (int i = 0; i <= 2 * H; i++) v[i] = r[i] = 0.0f;
#pragma unroll
	for (int i = 0; i <= H; i++) s[i] = g[i] = 0.0f;
	float nx = 0.0f, ndy = 0.0f, ny = 0.0f;
	lrn_ahead<R>(x, dy, y, c0 - 4 * H, c0 - H, C, hw, H, &nx, &ndy, &ny);
	for (int c = c0 - 4 * H; c < c1; c++) {
#pragma unroll
		for (int i = 0; i < 2 * H; i++) v[i] = v[i + 1], r[i] = r[i + 1];
#pragma unroll
		for (int i = 0; i < H; i++) s[i] = s[i + 1], g[i] = g[i + 1];
		v[2 * H] = nx;
		float dyj = ndy, yj = ny;
		if (c + 1 < c1) lrn_ahead<R>(x, dy, y, c + 1, c0 - H, C, hw, H, &nx, &ndy, &ny);
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
		float d = g[0] * lrn_negpow(s[0], beta) - coef * v[0] * acc;
		dx[(long long)c * hw] = R && !(v[0] > 0.0f) ? 0.0f : d;
	}
}

// lrn_pixel splits thread index t into the pixel's offset (channel 0) and
// its run of channels c0…c1−1.
__device__ static long long lrn_pixel(long long t, int C, int hw, int span, int* c0, int* c1) {
	int parts = (C + span - 1) / span;
	*c0 = (int)(t / hw % parts) * span;
	*c1 = min(*c0 + span, C);
	return t / ((long long)hw * parts) * C * hw + t % hw;
}

// lrn_forward_all and lrn_backward_all are the kernels' bodies: LRN, or
// with R the LRN of max(0, x) and its backward pass.
template <bool R>
__device__ static void lrn_forward_all(int N, int C, int hw, int span, int size, float alpha, float beta, float k,
                                       float* y, const float* x) {
	int half = size / 2;
	long long total = (long long)N * ((C + span - 1) / span) * hw;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		int c0, c1;
		long long p = lrn_pixel(t, C, hw, span, &c0, &c1);
		float* yp = y + p;
		const float* xp = x + p;
		switch (half) {
		case 0: lrn_forward_run<R, 0>(yp, xp, c0, c1, C, hw, alpha, beta, k); break;
		case 1: lrn_forward_run<R, 1>(yp, xp, c0, c1, C, hw, alpha, beta, k); break;
		case 2: lrn_forward_run<R, 2>(yp, xp, c0, c1, C, hw, alpha, beta, k); break;
		default:
			for (int c = c0; c < c1; c++) {
				long long o = (long long)c * hw;
				yp[o] = lrn_in<R>(xp[o]) * lrn_negpow(lrn_scale<R>(xp, c, C, hw, half, alpha, k), beta);
			}
		}
	}
}

template <bool R>
__device__ static void lrn_backward_all(int N, int C, int hw, int span, int size, float alpha, float beta, float k,
                                        float* dx, const float* dy, const float* x, const float* y) {
	int half = size / 2;
	long long total = (long long)N * ((C + span - 1) / span) * hw;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		int c0, c1;
		long long p = lrn_pixel(t, C, hw, span, &c0, &c1);
		float* dxp = dx + p;
		const float *dyp = dy + p, *xp = x + p, *yp = y + p;
		switch (half) {
		case 0: lrn_backward_run<R, 0>(dxp, dyp, xp, yp, c0, c1, C, hw, alpha, beta, k); break;
		case 1: lrn_backward_run<R, 1>(dxp, dyp, xp, yp, c0, c1, C, hw, alpha, beta, k); break;
		case 2: lrn_backward_run<R, 2>(dxp, dyp, xp, yp, c0, c1, C, hw, alpha, beta, k); break;
		default: {
			float coef = 2.0f * alpha * beta;
			for (int c = c0; c < c1; c++) {
				float acc = 0.0f;
				for (int j = max(c - half, 0); j <= min(c + half, C - 1); j++) {
					long long o = (long long)j * hw;
					acc += dyp[o] * yp[o] / lrn_scale<R>(xp, j, C, hw, half, alpha, k);
				}
				long long o = (long long)c * hw;
				float xr = lrn_in<R>(xp[o]);
				float d = dyp[o] * lrn_negpow(lrn_scale<R>(xp, c, C, hw, half, alpha, k), beta) - coef * xr * acc;
				dxp[o] = R && !(xr > 0.0f) ? 0.0f : d;
			}
		}
		}
	}
}

extern "C" __global__ void lrn_forward(int N, int C, int hw, int span, int size, float alpha, float beta, float k,
                                       float* y, const float* x) {
	lrn_forward_all<false>(N, C, hw, span, size, alpha, beta, k, y, x);
}

extern "C" __global__ void lrn_backward(int N, int C, int hw, int span, int size, float alpha, float beta, float k,
                                        float* dx, const float* dy, const float* x, const float* y) {
	lrn_backward_all<false>(N, C, hw, span, size, alpha, beta, k, dx, dy, x, y);
}

// relu_lrn_forward and relu_lrn_backward are gpu.Ops.ReLULRN and
// ReLULRNBackward: the LRN of max(0, x), x being the layer's output
// before its ReLU (see fused.cu).
extern "C" __global__ void relu_lrn_forward(int N, int C, int hw, int span, int size, float alpha, float beta, float k,
                                            float* y, const float* x) {
	lrn_forward_all<true>(N, C, hw, span, size, alpha, beta, k, y, x);
}

extern "C" __global__ void relu_lrn_backward(int N, int C, int hw, int span, int size, float alpha, float beta, float k,
                                             float* dx, const float* dy, const float* x, const float* y) {
	lrn_backward_all<true>(N, C, hw, span, size, alpha, beta, k, dx, dy, x, y);
}
