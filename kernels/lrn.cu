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
// channels (all C, or fewer where N·hw threads would not fill the GPU):
// it walks down its channels, hw apart, so that the threads of a warp read
// neighbouring pixels of one channel together, and each value of x, dy and
// y comes from DRAM once, the few channels the window reaches back again
// from the cache. The window sums slide as the CPU device's do (gpu/cpu
// lrn.go): in double, the first window added channel by channel, then
// (sum + in²) − out² per step; with span = C the sums have its bits, and
// only scale^−beta (float32 here, and not the CPU's pow34) differs.
//
// Backward keeps three sums of squares, at the channel whose ratio
// dy·y/scale enters the ratio window next, at the current channel (for
// scale^−beta), and at the channel whose ratio leaves it: the leaving
// ratio is computed again, with the same bits, rather than kept, so a
// thread needs no storage that grows with size.

__device__ static float lrn_negpow(float s, float beta) {
	if (beta == 0.75f) {
		float r = sqrtf(s);
		return 1.0f / (r * sqrtf(r));
	}
	if (beta == 0.5f) return 1.0f / sqrtf(s);
	if (beta == 1.0f) return 1.0f / s;
	return powf(s, -beta);
}

// lrn_square is x[j]² in double; x points at channel 0 of the pixel.
__device__ static double lrn_square(const float* x, int j, int hw) {
	double v = (double)x[(long long)j * hw];
	return v * v;
}

// lrn_init returns channel c's window sum of squares, the channels added
// in order.
__device__ static double lrn_init(const float* x, int c, int C, int hw, int half) {
	double sum = 0.0;
	for (int j = max(c - half, 0); j <= min(c + half, C - 1); j++) sum += lrn_square(x, j, hw);
	return sum;
}

// lrn_slide moves channel c's window sum of squares to channel c+1: in =
// c+half+1 enters and out = c−half leaves, each if among the C channels.
__device__ static double lrn_slide(double sum, const float* x, int c, int C, int hw, int half) {
	int in = c + half + 1, out = c - half;
	if (in < C && out >= 0) return sum + lrn_square(x, in, hw) - lrn_square(x, out, hw);
	if (in < C) return sum + lrn_square(x, in, hw);
	if (out >= 0) return sum - lrn_square(x, out, hw);
	return sum;
}

// lrn_ratio is dy[j]·y[j]/scale[j], sum being channel j's window sum.
__device__ static double lrn_ratio(const float* dy, const float* y, int j, int hw, double sum, double alpha, double k) {
	long long o = (long long)j * hw;
	return (double)dy[o] * (double)y[o] / (k + alpha * sum);
}

extern "C" __global__ void lrn_forward(int N, int C, int hw, int span, int size, float alpha, float beta, float k,
                                       float* y, const float* x) {
	int half = size / 2, parts = (C + span - 1) / span;
	long long total = (long long)N * parts * hw;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		int pix = (int)(t % hw);
		int c0 = (int)(t / hw % parts) * span, c1 = min(c0 + span, C);
		long long base = t / ((long long)hw * parts) * C * hw + pix;
		const float* xp = x + base;
		float* yp = y + base;
		double sum = lrn_init(xp, c0, C, hw, half);
		for (int c = c0; c < c1; c++) {
			long long o = (long long)c * hw;
			float s = (float)((double)k + (double)alpha * sum);
			yp[o] = xp[o] * lrn_negpow(s, beta);
			sum = lrn_slide(sum, xp, c, C, hw, half);
		}
	}
}

extern "C" __global__ void lrn_backward(int N, int C, int hw, int span, int size, float alpha, float beta, float k,
                                        float* dx, const float* dy, const float* x, const float* y) {
	int half = size / 2, parts = (C + span - 1) / span;
	double a64 = alpha, k64 = k, coef = 2.0 * a64 * (double)beta;
	long long total = (long long)N * parts * hw;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		int pix = (int)(t % hw);
		int c0 = (int)(t / hw % parts) * span, c1 = min(c0 + span, C);
		long long base = t / ((long long)hw * parts) * C * hw + pix;
		const float *xp = x + base, *dyp = dy + base, *yp = y + base;
		float* dxp = dx + base;
		// Window sums of squares at channel in (next ratio to enter), c,
		// and out (next to leave), all from the first channel c0's window
		// of ratios reaches.
		int lo = max(c0 - half, 0), in = lo;
		double sin = lrn_init(xp, lo, C, hw, half), sc = sin, sout = sin;
		for (int j = lo; j < c0; j++) sc = lrn_slide(sc, xp, j, C, hw, half);
		double r = 0.0; // Σ ratio over c's window
		for (; in <= min(c0 + half, C - 1); in++) {
			r += lrn_ratio(dyp, yp, in, hw, sin, a64, k64);
			sin = lrn_slide(sin, xp, in, C, hw, half);
		}
		for (int c = c0; c < c1; c++) {
			long long o = (long long)c * hw;
			float p = lrn_negpow((float)(k64 + a64 * sc), beta);
			dxp[o] = (float)((double)dyp[o] * (double)p - coef * (double)xp[o] * r);
			sc = lrn_slide(sc, xp, c, C, hw, half);
			// c+1's window: in = c+half+1 enters, out = c−half leaves.
			int out = c - half;
			double ri = 0.0, ro = 0.0;
			if (in < C) {
				ri = lrn_ratio(dyp, yp, in, hw, sin, a64, k64);
				sin = lrn_slide(sin, xp, in, C, hw, half);
				in++;
			}
			if (out >= 0) {
				ro = lrn_ratio(dyp, yp, out, hw, sout, a64, k64);
				sout = lrn_slide(sout, xp, out, C, hw, half);
			}
			r = r + ri - ro;
		}
	}
}
