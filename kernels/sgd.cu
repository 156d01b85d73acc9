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
