// Bias of a convolution or fully-connected layer (the paper, §5 initializes
// it; gpu.Ops.AddBias and BiasBackward define it):
//
//   y[n,c,i] += b[c]
//   db[c]     = Σ_{n,i} dy[n,c,i]
//
// Layout: y, dy (N, C, inner), NCHW with inner = H·W for a convolution
// and 1 for a fully-connected layer; b, db (C). bias_add: one thread per
// value. bias_backward: one block per channel, each thread summing a
// strided share in double, then a shared-memory tree; launch with 256
// threads per block.

extern "C" __global__ void bias_add(int N, int C, int inner, float* y, const float* b) {
	long long total = (long long)N * C * inner;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		y[t] += b[(int)(t / inner % C)];
	}
}

extern "C" __global__ void bias_backward(int N, int C, int inner, float* db, const float* dy) {
	__shared__ double part[256];
	int c = blockIdx.x;
	long long per = (long long)N * inner;
	double acc = 0.0;
	for (long long t = threadIdx.x; t < per; t += blockDim.x) {
		long long n = t / inner, i = t % inner;
		acc += (double)dy[(n * C + c) * inner + i];
	}
	part[threadIdx.x] = acc;
	__syncthreads();
	for (int s = blockDim.x / 2; s > 0; s >>= 1) {
		if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
		__syncthreads();
	}
	if (threadIdx.x == 0) db[c] = (float)part[0];
}
