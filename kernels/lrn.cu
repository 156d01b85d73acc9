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
// channel, pixel fastest. One thread per output value (n, c, pixel); the
// sums are direct, O(size) per value forward and O(size²) backward, which
// for the paper's size 5 is cheaper than the memory traffic.

__device__ static float lrn_negpow(float s, float beta) {
	if (beta == 0.75f) {
		float r = sqrtf(s);
		return 1.0f / (r * sqrtf(r));
	}
	if (beta == 0.5f) return 1.0f / sqrtf(s);
	if (beta == 1.0f) return 1.0f / s;
	return powf(s, -beta);
}

// lrn_scale returns scale[c] for the pixel at p (the offset of channel 0).
__device__ static float lrn_scale(const float* x, int p, int c, int C, int hw, int half, float alpha, float k) {
	int lo = max(c - half, 0), hi = min(c + half, C - 1);
	float sum = 0.0f;
	for (int j = lo; j <= hi; j++) {
		float v = x[p + j * hw];
		sum += v * v;
	}
	return k + alpha * sum;
}

extern "C" __global__ void lrn_forward(int N, int C, int hw, int size, float alpha, float beta, float k,
                                       float* y, const float* x) {
	long long total = (long long)N * C * hw;
	int half = size / 2;
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
		int pix = (int)(i % hw);
		int c = (int)(i / hw % C);
		long long n = i / ((long long)hw * C);
		const float* xi = x + n * (long long)C * hw + pix;
		float s = lrn_scale(xi, 0, c, C, hw, half, alpha, k);
		y[i] = x[i] * lrn_negpow(s, beta);
	}
}

extern "C" __global__ void lrn_backward(int N, int C, int hw, int size, float alpha, float beta, float k,
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
			float sj = lrn_scale(xi, 0, j, C, hw, half, alpha, k);
			acc += dy[base + (long long)j * hw] * y[base + (long long)j * hw] / sj;
		}
		float sc = lrn_scale(xi, 0, c, C, hw, half, alpha, k);
		dx[i] = dy[i] * lrn_negpow(sc, beta) - coef * x[i] * acc;
	}
}
