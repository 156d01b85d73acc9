// Data augmentation on the device (the paper, §2, §4.1), gpu.Ops.Augment:
//
//   dst[n,c,y,x] = ((float)src[n,c,Y+y,X+x'] − mean[c,Y+y,X+x']) + off[n,c]
//
// with x' = crop−1−x if flip, else x; (X, Y, flip, off[0…C)) = params[n],
// and both operations rounded to float in this order (no fused ops), so
// the result equals the CPU device's bit for bit.
//
// Layout: src is the N·C·size·size bytes of the N images (C, size, size)
// back to back, packed four per 32-bit word, little-endian (gpu.PackBytes:
// byte j in bits 8·(j mod 4) of word j/4); mean (C, size, size);
// params (N, 3+C); dst (N, C, crop, crop). One thread per output value.

extern "C" __global__ void augment(int N, int C, int size, int crop, float* dst, const unsigned int* src,
                                   const float* mean, const float* params) {
	long long total = (long long)N * C * crop * crop;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		int x = (int)(t % crop);
		int y = (int)(t / crop % crop);
		int c = (int)(t / ((long long)crop * crop) % C);
		long long n = t / ((long long)crop * crop * C);
		const float* p = params + n * (3 + C);
		int x0 = (int)p[0], y0 = (int)p[1];
		int xs = p[2] == 1.0f ? crop - 1 - x : x;
		long long at = ((long long)c * size + y0 + y) * size + x0 + xs;
		long long j = n * (long long)C * size * size + at;
		unsigned int b = (src[j >> 2] >> (8 * (int)(j & 3))) & 0xffu;
		float v = __fsub_rn((float)b, mean[at]);
		dst[t] = __fadd_rn(v, p[3 + c]);
	}
}
