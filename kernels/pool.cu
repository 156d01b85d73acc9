// Overlapping max pooling (the paper, §3.4: size 3, stride 2).
//
//   y[n,c,i,j] = max_{r,s < size} x[n,c, i·stride+r, j·stride+s]
//   dx[n,c,h,w] = Σ_{(i,j): argmax(i,j) = (h,w)} dy[n,c,i,j]
//
// where argmax(i,j) is the FIRST maximum of window (i,j) in row-major
// order (r, then s), as the CPU device and kernels.MaxPool define it, so
// that ties route the gradient the same way on every backend. No padding:
// P = (H−size)/stride+1, Q = (W−size)/stride+1.
//
// Layout: x, dx (planes, H, W) and y, dy (planes, P, Q), planes = N·C,
// NCHW. Forward: one thread per output. Backward gathers rather than
// scatters: one thread per input pixel visits the windows that contain it
// in row-major (i, j) order and adds dy where it is the window's first
// maximum, so the sum is deterministic, needs no atomics, and adds in the
// same order as the CPU device. y = MaxPool(x) tells it each window's
// maximum without scanning the window: a pixel whose value is not y[i,j]
// is not the argmax, which settles all but one pixel of a window with
// distinct values; one that is must still be the first, so only then are
// the window's pixels before it read, from the cache, until an equal one
// is found. Every value of x, y and dy is read once from DRAM and dx
// written once.

__device__ static int pool_argmax(const float* xp, int W, int size, int stride, int i, int j) {
	int at = i * stride * W + j * stride;
	int best = at;
	float v = xp[at];
	for (int r = 0; r < size; r++) {
		for (int s = 0; s < size; s++) {
			int o = at + r * W + s;
			if (xp[o] > v) {
				best = o;
				v = xp[o];
			}
		}
	}
	return best;
}

extern "C" __global__ void maxpool_forward(int planes, int H, int W, int P, int Q, int size, int stride,
                                           float* y, const float* x) {
	long long total = (long long)planes * P * Q;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		int j = (int)(t % Q);
		int i = (int)(t / Q % P);
		long long pl = t / ((long long)P * Q);
		const float* xp = x + pl * H * W;
		y[t] = xp[pool_argmax(xp, W, size, stride, i, j)];
	}
}

// pool_same reports whether v is the window's maximum m, NaN included:
// pool_argmax keeps a NaN only as a window's first value.
__device__ static bool pool_same(float v, float m) { return v == m || (v != v && m != m); }

// pool_first reports whether the pixel at offset self of plane xp, whose
// value is window (i, j)'s maximum m, is the first such in row-major order.
__device__ static bool pool_first(const float* xp, int W, int size, int stride, int i, int j, int self, float m) {
	int at = i * stride * W + j * stride;
	for (int r = 0; r < size; r++) {
		for (int s = 0; s < size; s++) {
			int o = at + r * W + s;
			if (o == self) return true;
			if (pool_same(xp[o], m)) return false;
		}
	}
	return true; // not reached: self is in the window
}

extern "C" __global__ void maxpool_backward(int planes, int H, int W, int P, int Q, int size, int stride,
                                            float* dx, const float* dy, const float* x, const float* y) {
	long long total = (long long)planes * H * W;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		int w = (int)(t % W);
		int h = (int)(t / W % H);
		long long pl = t / ((long long)H * W);
		const float* xp = x + pl * H * W;
		const float* yp = y + pl * P * Q;
		const float* dyp = dy + pl * P * Q;
		int self = h * W + w;
		float v = x[t];
		// Windows i with i·stride ≤ h < i·stride+size.
		int i0 = h - size + 1 > 0 ? (h - size + stride) / stride : 0;
		int i1 = min(h / stride, P - 1);
		int j0 = w - size + 1 > 0 ? (w - size + stride) / stride : 0;
		int j1 = min(w / stride, Q - 1);
		float acc = 0.0f;
		for (int i = i0; i <= i1; i++) {
			for (int j = j0; j <= j1; j++) {
				float m = yp[i * Q + j];
				if (pool_same(v, m) && pool_first(xp, W, size, stride, i, j, self, m)) acc += dyp[i * Q + j];
			}
		}
		dx[t] = acc;
	}
}
