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
// scatters: each input pixel visits the windows that contain it in
// row-major (i, j) order and adds dy where it is the window's first
// maximum, so the sum is deterministic, needs no atomics, and adds in the
// same order as the CPU device. To read x once, a block takes a band of
// band output rows of one plane (the whole plane where it fits:
// gpu/cuda's poolBand), copies the rows of x its windows cover into
// shared memory, finds each window's first maximum there, then writes dx
// for the band's input rows. A band shares its top rows with the windows
// of the band above, whose copy reads them again, from the cache. A plane
// whose one output row does not fit (band = 0: size·W > POOL_TILE) is
// done a pixel a thread with y = MaxPool(x) telling each window's
// maximum: a pixel whose value is not y[i,j] is not the argmax; one that
// is must be the first, which the window's pixels before it, read from
// the cache, decide.

// POOL_TILE is the shared memory a block uses for x (floats) and
// POOL_WINDOWS for the windows' argmax (ints): 20 KB.
#define POOL_TILE 4096
#define POOL_WINDOWS 1024

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

// pool_first_row is the first window whose rows hold row h.
__device__ static int pool_first_row(int h, int size, int stride) {
	return h - size + 1 > 0 ? (h - size + stride) / stride : 0;
}

// maxpool_backward_pixels is maxpool_backward for band = 0: a pixel a
// thread, the maxima from y.
__device__ static void maxpool_backward_pixels(int planes, int H, int W, int P, int Q, int size, int stride,
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
		int i0 = pool_first_row(h, size, stride), i1 = min(h / stride, P - 1);
		int j0 = pool_first_row(w, size, stride), j1 = min(w / stride, Q - 1);
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

extern "C" __global__ void maxpool_backward(int planes, int H, int W, int P, int Q, int size, int stride, int band,
                                            float* dx, const float* dy, const float* x, const float* y) {
	if (band == 0) {
		maxpool_backward_pixels(planes, H, W, P, Q, size, stride, dx, dy, x, y);
		return;
	}
	__shared__ float tile[POOL_TILE];
	__shared__ int arg[POOL_WINDOWS];
	int bands = (P + band - 1) / band;
	for (long long u = blockIdx.x; u < (long long)planes * bands; u += gridDim.x) {
		long long pl = u / bands;
		int b = (int)(u % bands);
		// Input rows h0…h1−1, in windows ia…ib, which cover rows xa…xb−1.
		int h0 = b * band * stride, h1 = b == bands - 1 ? H : (b + 1) * band * stride;
		int ia = pool_first_row(h0, size, stride), ib = min((h1 - 1) / stride, P - 1);
		int xa = ia * stride, xb = ib * stride + size;
		const float* xp = x + pl * H * W;
		for (int e = threadIdx.x; e < (xb - xa) * W; e += blockDim.x) tile[e] = xp[xa * W + e];
		__syncthreads();
		for (int e = threadIdx.x; e < (ib - ia + 1) * Q; e += blockDim.x) {
			int i = ia + e / Q, j = e % Q;
			arg[e] = pool_argmax(tile, W, size, stride, i - ia, j);
		}
		__syncthreads();
		const float* dyp = dy + pl * P * Q;
		float* dxp = dx + pl * H * W;
		for (int e = threadIdx.x; e < (h1 - h0) * W; e += blockDim.x) {
			int h = h0 + e / W, w = e % W;
			int self = (h - xa) * W + w;
			int i0 = pool_first_row(h, size, stride), i1 = min(h / stride, P - 1);
			int j0 = pool_first_row(w, size, stride), j1 = min(w / stride, Q - 1);
			float acc = 0.0f;
			for (int i = i0; i <= i1; i++) {
				for (int j = j0; j <= j1; j++) {
					if (arg[(i - ia) * Q + j] == self) acc += dyp[i * Q + j];
				}
			}
			dxp[h * W + w] = acc;
		}
		// No barrier: the next band's copy writes tile, which this loop
		// does not read, and its windows write arg only after the copy's
		// barrier, which every thread reaches when done here.
	}
}
