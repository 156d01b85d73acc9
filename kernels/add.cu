// Accumulation, where two towers' gradients meet (the paper, §3.2):
//
//   y[i] += x[i]
//
// Layout: flat, n values. One thread per value, grid-stride.

extern "C" __global__ void add_inplace(int n, float* y, const float* x) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		y[i] += x[i];
	}
}
