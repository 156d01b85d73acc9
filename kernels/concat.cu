// Concatenation per image, where the towers' maps join along channels at
// conv3 and the fully-connected layers (the paper, §3.2, Figure 2):
//
//   concat_rows: dst[n·row + offset + j] = src[n·size + j]
//   split_rows:  dst[n·size + j] = src[n·row + offset + j]
//
// for n < N, j < size: one source (or destination) of gpu.Ops.Concat
// (Split) at a time, row = Σ sizes, offset = Σ of the sizes before it.
//
// Layout: src of concat_rows and dst of split_rows (N, size); the joined
// buffer (N, row). One thread per value copied, grid-stride.

extern "C" __global__ void concat_rows(int N, int size, int row, int offset, float* dst, const float* src) {
	long long total = (long long)N * size;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		long long n = t / size, j = t % size;
		dst[n * row + offset + j] = src[t];
	}
}

extern "C" __global__ void split_rows(int N, int size, int row, int offset, float* dst, const float* src) {
	long long total = (long long)N * size;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		long long n = t / size, j = t % size;
		dst[t] = src[n * row + offset + j];
	}
}
