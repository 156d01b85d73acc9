// The saturating activation the paper compares ReLU with (the paper, §3.1,
// Figure 1):
//
//   y  = tanh(x)
//   dx = dy·(1 − y²)
//
// Layout: flat, n values; y may alias x, dx may alias dy. One thread per
// value, grid-stride.

extern "C" __global__ void tanh_forward(int n, float* y, const float* x) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		y[i] = tanhf(x[i]);
	}
}

extern "C" __global__ void tanh_backward(int n, float* dx, const float* dy, const float* y) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		float v = y[i];
		dx[i] = dy[i] * (1.0f - v * v);
	}
}
