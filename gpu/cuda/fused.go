package cuda

import "github.com/alexnet-go/trainer/gpu"

// The fused operations (kernels/fused.cu; ReLULRN and its backward are in
// ops.go, beside LRN, as their kernels are lrn.cu's): each launches one
// kernel where its unfused sequence launches two, with the same bits. The FC layers'
// bias and ReLU are a kernel after cuBLAS's product, not a cuBLASLt
// epilogue (CUBLASLT_EPILOGUE_RELU_BIAS, DRELU_BGRAD): the same single
// pass over y, without binding cuBLASLt. The convolutions' likewise follow
// cudnnConvolutionForward rather than using
// cudnnConvolutionBiasActivationForward, which with a ReLU accepts only
// the IMPLICIT_PRECOMP_GEMM algorithm, not the one cudnnFind picked.

// BiasReLU sets y = max(0, y + b[c]); y (N,C,Inner), b (C).
func (d *Device) BiasReLU(y, b gpu.Buffer, s gpu.BiasShape) error {
	checkBias(s)
	yb, bb := d.buf("y", y, s.Len()), d.buf("b", b, s.C)
	return d.launch("bias_relu", d.grid(s.Len()), threads, s.N, s.C, s.Inner, yb, bb)
}

// ReLUBiasBackward sets dx = dy where y > 0, else 0, and db[c] = Σ dx
// over n and i, summed in double.
func (d *Device) ReLUBiasBackward(dx, db, dy, y gpu.Buffer, s gpu.BiasShape) error {
	checkBias(s)
	n := s.Len()
	return d.launch("relu_bias_backward", s.C, threads, s.N, s.C, s.Inner,
		d.buf("dx", dx, n), d.buf("db", db, s.C), d.buf("dy", dy, n), d.buf("y", y, n))
}

// LinearReLU sets y (N,Out) = max(0, x (N,In)·wᵀ + b): cuBLAS, then
// bias_relu.
func (d *Device) LinearReLU(y, x, w, b gpu.Buffer, s gpu.LinearShape) error {
	yb := d.buf("y", y, s.N*s.Out)
	xp, wp := d.ptr("x", x, s.N*s.In), d.ptr("w", w, s.Out*s.In)
	bb := d.buf("b", b, s.Out)
	if err := d.sgemm(false, true, s.N, s.Out, s.In, xp, s.In, wp, s.In, yb.ptr, s.Out); err != nil {
		return err
	}
	return d.launch("bias_relu", d.grid(s.N*s.Out), threads, s.N, s.Out, 1, yb, bb)
}

// LinearReLUBackward masks dy in place and sums it into db
// (relu_bias_backward), then sets dw = dyᵀ·x and, unless dx is nil,
// dx = dy·w with cuBLAS.
func (d *Device) LinearReLUBackward(dx, dw, db, dy, x, w, y gpu.Buffer, s gpu.LinearShape) error {
	dwp := d.ptr("dw", dw, s.Out*s.In)
	dbb, dyb, yb := d.buf("db", db, s.Out), d.buf("dy", dy, s.N*s.Out), d.buf("y", y, s.N*s.Out)
	xp, wp := d.ptr("x", x, s.N*s.In), d.ptr("w", w, s.Out*s.In)
	var dxp uint64
	if dx != nil {
		dxp = d.ptr("dx", dx, s.N*s.In)
	}
	if err := d.launch("relu_bias_backward", s.Out, threads, s.N, s.Out, 1, dyb, dbb, dyb, yb); err != nil {
		return err
	}
	if err := d.sgemm(true, false, s.Out, s.In, s.N, dyb.ptr, s.Out, xp, s.In, dwp, s.In); err != nil {
		return err
	}
	if dx == nil {
		return nil
	}
	return d.sgemm(false, false, s.N, s.In, s.Out, dyb.ptr, s.Out, wp, s.In, dxp, s.In)
}
