// Softmax cross-entropy, the loss of the 1000-way softmax (the paper, §3.5):
//
//   prob[n,j] = exp(z[n,j] − m − lse),  m = max_j z[n,j],
//   lse       = log Σ_j exp(z[n,j] − m)
//   loss[n]   = lse − (z[n,label[n]] − m)      (= −log prob[n,label[n]])
//   dlogits[n,j] = (prob[n,j] − [j = label[n]]) / N
//
// in double from the row's maximum, as the CPU device, so that neither
// overflows and a tiny probability's loss stays accurate. Labels are class
// indices stored as float; a label that is not one gives loss = NaN (the
// host checks labels before they reach the device).
//
// Layout: logits, prob, dlogits (N, classes), classes fastest; loss,
// labels (N). softmax_xent: one block of 256 threads per row, a
// shared-memory max and sum; softmax_xent_backward: one thread per value.

extern "C" __global__ void softmax_xent(int N, int classes, float* prob, float* loss, const float* logits, const float* labels) {
	__shared__ double red[256];
	int n = blockIdx.x;
	if (n >= N) return;
	const float* z = logits + (long long)n * classes;
	float* p = prob + (long long)n * classes;
	double m = (double)z[0];
	for (int j = threadIdx.x; j < classes; j += blockDim.x) m = fmax(m, (double)z[j]);
	red[threadIdx.x] = m;
	__syncthreads();
	for (int s = blockDim.x / 2; s > 0; s >>= 1) {
		if ((int)threadIdx.x < s) red[threadIdx.x] = fmax(red[threadIdx.x], red[threadIdx.x + s]);
		__syncthreads();
	}
	m = red[0];
	__syncthreads();
	double sum = 0.0;
	for (int j = threadIdx.x; j < classes; j += blockDim.x) sum += exp((double)z[j] - m);
	red[threadIdx.x] = sum;
	__syncthreads();
	for (int s = blockDim.x / 2; s > 0; s >>= 1) {
		if ((int)threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
		__syncthreads();
	}
	double lse = log(red[0]);
	for (int j = threadIdx.x; j < classes; j += blockDim.x) p[j] = (float)exp((double)z[j] - m - lse);
	if (threadIdx.x == 0) {
		float l = labels[n];
		int li = (int)l;
		if (l >= 0.0f && l < (float)classes && (float)li == l) {
			loss[n] = (float)(lse - ((double)z[li] - m));
		} else {
			loss[n] = __int_as_float(0x7fc00000);
		}
	}
}

extern "C" __global__ void softmax_xent_backward(int N, int classes, float* dlogits, const float* prob, const float* labels) {
	long long total = (long long)N * classes;
	float nf = (float)N;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		int j = (int)(t % classes);
		int n = (int)(t / classes);
		float v = prob[t];
		if ((float)j == labels[n]) v = v - 1.0f;
		dlogits[t] = v / nf;
	}
}
