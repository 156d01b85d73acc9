// Rectified linear units (the paper, §3.1):
//
//   y  = max(0, x)
//   dx = dy where y > 0, else 0
//
// Layout: flat, n values; y may alias x, dx may alias dy. One thread per
// value, grid-stride.

extern "C" __global__ void relu_forward(int n, float* y, const float* x) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		float v = x[i];
		y[i] = v > 0.0f ? v : 0.0f;
	}
}

extern "C" __global__ void relu_backward(int n, float* dx, const float* dy, const float* y) {
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
	}
}
