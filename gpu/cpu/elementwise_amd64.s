#include "textflag.h"

// AVX versions of loops of elementwise.go, for lengths that are multiples
// of the lane count (the dispatchers in elementwise_amd64.go run the
// tails in Go), with the reference's operations in its order.

// func addConstAsm(v []float32, c float32)
//
// v[i] += c, eight at a time.
TEXT ·addConstAsm(SB), NOSPLIT, $0-28
	MOVQ v_base+0(FP), DI
	MOVQ v_len+8(FP), CX
	VBROADCASTSS c+24(FP), Y7
	SHRQ $3, CX
	JZ   constDone

constLoop:
	VMOVUPS (DI), Y0
	VADDPS  Y7, Y0, Y0 // v + c
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	DECQ    CX
	JNZ     constLoop

constDone:
	VZEROUPPER
	RET

// func sum64Asm(v []float32) (s0, s1, s2, s3 float64)
//
// sum64's four interleaved partial sums: lane l adds v[l], v[l+4], … in
// float64, in order.
TEXT ·sum64Asm(SB), NOSPLIT, $0-56
	MOVQ   v_base+0(FP), SI
	MOVQ   v_len+8(FP), CX
	VXORPD Y0, Y0, Y0
	SHRQ   $2, CX
	JZ     sumDone

sumLoop:
	VCVTPS2PD (SI), Y1
	VADDPD    Y1, Y0, Y0 // s + v
	ADDQ      $16, SI
	DECQ      CX
	JNZ       sumLoop

sumDone:
	VMOVUPD Y0, s0+24(FP)
	VZEROUPPER
	RET

// func reluAsm(y, x []float32)
//
// y = max(x, 0) as Go's builtin max computes it on amd64, so that NaNs
// and signed zeros come out the same: max(x, y) = −min(−x, −y), and
// min(a, b) = m | MIN(m, a) with m = MIN(a, b), MIN(p, q) = p < q ? p : q
// (MINPS). Eight at a time.
TEXT ·reluAsm(SB), NOSPLIT, $0-48
	MOVQ y_base+0(FP), DI
	MOVQ y_len+8(FP), CX
	MOVQ x_base+24(FP), SI
	MOVL $0x80000000, AX // the sign bit, also −0
	VMOVD AX, X7
	VSHUFPS $0, X7, X7, X7
	VINSERTF128 $1, X7, Y7, Y7
	SHRQ $3, CX
	JZ   reluDone

reluLoop:
	VMOVUPS (SI), Y0
	VXORPS  Y7, Y0, Y0 // a = −x
	VMINPS  Y7, Y0, Y1 // m = MIN(a, −0)
	VMINPS  Y0, Y1, Y2 // MIN(m, a)
	VORPS   Y1, Y2, Y2 // min(a, −0)
	VXORPS  Y7, Y2, Y2 // −min(−x, −0)
	VMOVUPS Y2, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     reluLoop

reluDone:
	VZEROUPPER
	RET

// func reluBackwardAsm(dx, dy, y []float32)
//
// dx = dy where y > 0 (an ordered compare: false for a NaN), else +0.
TEXT ·reluBackwardAsm(SB), NOSPLIT, $0-72
	MOVQ dx_base+0(FP), DI
	MOVQ dx_len+8(FP), CX
	MOVQ dy_base+24(FP), SI
	MOVQ y_base+48(FP), R8
	VXORPS Y7, Y7, Y7
	SHRQ $3, CX
	JZ   rbDone

rbLoop:
	VMOVUPS (R8), Y0
	VCMPPS  $0x1e, Y7, Y0, Y1 // y > 0 (GT_OQ)
	VANDPS  (SI), Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	ADDQ    $32, R8
	DECQ    CX
	JNZ     rbLoop

rbDone:
	VZEROUPPER
	RET

// func sgdAsm(w, v, g []float32, mom, decay, lr float32)
//
// v = (mom·v − decay·w) − lr·g, w += v, each product rounded on its own.
TEXT ·sgdAsm(SB), NOSPLIT, $0-84
	MOVQ w_base+0(FP), DI
	MOVQ w_len+8(FP), CX
	MOVQ v_base+24(FP), SI
	MOVQ g_base+48(FP), R8
	VBROADCASTSS mom+72(FP), Y5
	VBROADCASTSS decay+76(FP), Y6
	VBROADCASTSS lr+80(FP), Y7
	SHRQ $3, CX
	JZ   sgdDone

sgdLoop:
	VMOVUPS (DI), Y0     // w
	VMULPS  (SI), Y5, Y1 // mom·v
	VMULPS  Y0, Y6, Y2   // decay·w
	VSUBPS  Y2, Y1, Y1
	VMULPS  (R8), Y7, Y3 // lr·g
	VSUBPS  Y3, Y1, Y1   // v
	VMOVUPS Y1, (SI)
	VADDPS  Y1, Y0, Y0   // w + v
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	ADDQ    $32, R8
	DECQ    CX
	JNZ     sgdLoop

sgdDone:
	VZEROUPPER
	RET

// func maxIntoAsm(dst, src []float32)
//
// dst = max(dst, src) as Go's builtin max computes it on amd64 (see
// reluAsm), eight at a time.
TEXT ·maxIntoAsm(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI
	MOVL $0x80000000, AX // the sign bit
	VMOVD AX, X7
	VSHUFPS $0, X7, X7, X7
	VINSERTF128 $1, X7, Y7, Y7
	SHRQ $3, CX
	JZ   maxDone

maxLoop:
	VXORPS  (DI), Y7, Y0 // a = −dst
	VXORPS  (SI), Y7, Y3 // b = −src
	VMINPS  Y3, Y0, Y1   // m = MIN(a, b)
	VMINPS  Y0, Y1, Y2   // MIN(m, a)
	VORPS   Y1, Y2, Y2   // min(a, b)
	VXORPS  Y7, Y2, Y2   // −min(−dst, −src)
	VMOVUPS Y2, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     maxLoop

maxDone:
	VZEROUPPER
	RET
