// The paper's update rule (the paper, §5), over n parameters:
//
//   v ← momentum·v − decay·w − lr·dw,  decay = weightDecay·lr (host, float32)
//   w ← w + v
//
// Each product is rounded on its own: compiled with --fmad=false, so the
// result equals the CPU device's bit for bit.
//
// Layout: w, v, dw flat, n values. One thread per parameter, grid-stride.

extern "C" __global__ void sgd_update(int n, float lr, float momentum, float decay, float* w, float* v, const float* dw) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		float x = w[i];
		float vi = momentum * v[i] - decay * x - lr * dw[i];
		v[i] = vi;
		w[i] = x + vi;
	}
}

// sgd_multi is sgd_update over many tensors in one launch, with the same
// arithmetic, so the same bits. The tensors are laid end to end in one
// index space of total values; table holds four words per tensor t:
//
//   table[4t]    the address of w_t     table[4t+1]  the address of v_t
//   table[4t+2]  the address of dw_t    table[4t+3]  start_t | bits(decay_t) << 32
//
// where start_t = Σ_{u<t} n_u is tensor t's first index in that space and
// decay_t = weightDecay_t·lr rounded to float32 on the host. Index i
// belongs to the last tensor whose start is ≤ i (a binary search over a
// table small enough to stay in cache; an empty tensor shares its start
// with the next one and is skipped). One thread per value, grid-stride.
extern "C" __global__ void sgd_multi(int tensors, int total, float lr, float momentum, const unsigned long long* table) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
		int lo = 0, hi = tensors - 1;
		while (lo < hi) {
			int mid = (lo + hi + 1) / 2;
			if ((int)(table[4 * mid + 3] & 0xffffffffull) <= i) {
				lo = mid;
			} else {
				hi = mid - 1;
			}
		}
		unsigned long long meta = table[4 * lo + 3];
		int j = i - (int)(meta & 0xffffffffull);
		float decay = __int_as_float((int)(meta >> 32));
		float* w = (float*)table[4 * lo];
		float* v = (float*)table[4 * lo + 1];
		const float* dw = (const float*)table[4 * lo + 2];
		float x = w[j];
		float vi = momentum * v[j] - decay * x - lr * dw[j];
		v[j] = vi;
		w[j] = x + vi;
	}
}
