// Kernels that are wrong on a GPU, for the host GPU's own test
// (TestHostGPUCatchesBarrierMistakes): the host GPU must report or expose
// what a GPU would get wrong.

// selftest_divergent: thread 0 returns while the others wait at a
// barrier; on a GPU this hangs or corrupts.
extern "C" __global__ void selftest_divergent(float* y) {
	if (threadIdx.x == 0) return;
	__syncthreads();
	y[threadIdx.x] = 1.0f;
}

// selftest_sum: out[b] = Σ x over block b, by a shared-memory tree; with
// barrier = 0 the tree lacks the barrier between its levels, so a thread
// may read a partial sum before the thread that writes it has.
extern "C" __global__ void selftest_sum(int barrier, float* out, const float* x) {
	__shared__ float part[1024];
	part[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
	__syncthreads();
	for (int s = blockDim.x / 2; s > 0; s >>= 1) {
		if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
		if (barrier) __syncthreads();
	}
	if (threadIdx.x == 0) out[blockIdx.x] = part[0];
}

// selftest_past_end reads the value just past the end of x, n values.
extern "C" __global__ void selftest_past_end(int n, float* y, const float* x) {
	if (threadIdx.x == 0) y[0] = x[n];
}
