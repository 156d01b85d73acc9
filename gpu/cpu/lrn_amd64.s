#include "textflag.h"

// AVX versions of the LRN loops of lrn.go, four float64 lanes (eight
// float32 lanes for mul32Asm and pow34AVX) at a time. Each is called by its
// Go dispatcher (lrn_amd64.go) on a length that is a multiple of its lane
// count, with every slice at least as long as the first; the dispatcher
// runs the tail in Go. Every lane does the reference's operations in the
// reference's order, without fused multiply-adds: products, sums,
// quotients, square roots and float64→float32 conversions are each
// correctly rounded in both, so the bits are the same.

// func lrnScaleAsm(f []float32, sum []float64, k, alpha float64)
TEXT ·lrnScaleAsm(SB), NOSPLIT, $0-64
	MOVQ f_base+0(FP), DI
	MOVQ f_len+8(FP), CX
	MOVQ sum_base+24(FP), SI
	VBROADCASTSD k+48(FP), Y6
	VBROADCASTSD alpha+56(FP), Y7
	SHRQ $2, CX
	JZ   scaleDone

scaleLoop:
	VMULPD     (SI), Y7, Y0 // alpha·sum
	VADDPD     Y0, Y6, Y0   // k + alpha·sum
	VCVTPD2PSY Y0, X1
	VMOVUPS    X1, (DI)
	ADDQ       $32, SI
	ADDQ       $16, DI
	DECQ       CX
	JNZ        scaleLoop

scaleDone:
	VZEROUPPER
	RET

// func lrnRatioAsm(p []float32, r, sum []float64, dy, y []float32, k, alpha float64)
TEXT ·lrnRatioAsm(SB), NOSPLIT, $0-136
	MOVQ p_base+0(FP), DI
	MOVQ p_len+8(FP), CX
	MOVQ r_base+24(FP), R8
	MOVQ sum_base+48(FP), SI
	MOVQ dy_base+72(FP), R9
	MOVQ y_base+96(FP), R10
	VBROADCASTSD k+120(FP), Y6
	VBROADCASTSD alpha+128(FP), Y7
	SHRQ $2, CX
	JZ   ratioDone

ratioLoop:
	VMULPD     (SI), Y7, Y0 // alpha·sum
	VADDPD     Y0, Y6, Y0   // scale = k + alpha·sum
	VCVTPD2PSY Y0, X1
	VMOVUPS    X1, (DI)
	VCVTPS2PD  (R9), Y2     // dy
	VCVTPS2PD  (R10), Y3    // y
	VMULPD     Y3, Y2, Y2   // dy·y
	VDIVPD     Y0, Y2, Y2   // dy·y / scale
	VMOVUPD    Y2, (R8)
	ADDQ       $16, DI
	ADDQ       $32, R8
	ADDQ       $32, SI
	ADDQ       $16, R9
	ADDQ       $16, R10
	DECQ       CX
	JNZ        ratioLoop

ratioDone:
	VZEROUPPER
	RET

// func slideSquaresAsm(sum []float64, a, b []float32)
TEXT ·slideSquaresAsm(SB), NOSPLIT, $0-72
	MOVQ sum_base+0(FP), SI
	MOVQ sum_len+8(FP), CX
	MOVQ a_base+24(FP), R8
	MOVQ b_base+48(FP), R9
	SHRQ $2, CX
	JZ   squaresDone

squaresLoop:
	VCVTPS2PD (R8), Y1
	VMULPD    Y1, Y1, Y1   // a²
	VCVTPS2PD (R9), Y2
	VMULPD    Y2, Y2, Y2   // b²
	VADDPD    (SI), Y1, Y0 // sum + a²
	VSUBPD    Y2, Y0, Y0   // (sum + a²) − b²
	VMOVUPD   Y0, (SI)
	ADDQ      $32, SI
	ADDQ      $16, R8
	ADDQ      $16, R9
	DECQ      CX
	JNZ       squaresLoop

squaresDone:
	VZEROUPPER
	RET

// func slide64Asm(sum, a, b []float64)
TEXT ·slide64Asm(SB), NOSPLIT, $0-72
	MOVQ sum_base+0(FP), SI
	MOVQ sum_len+8(FP), CX
	MOVQ a_base+24(FP), R8
	MOVQ b_base+48(FP), R9
	SHRQ $2, CX
	JZ   slideDone

slideLoop:
	VMOVUPD (R8), Y1
	VADDPD  (SI), Y1, Y0 // sum + a
	VSUBPD  (R9), Y0, Y0 // (sum + a) − b
	VMOVUPD Y0, (SI)
	ADDQ    $32, SI
	ADDQ    $32, R8
	ADDQ    $32, R9
	DECQ    CX
	JNZ     slideLoop

slideDone:
	VZEROUPPER
	RET

// func lrnDxAsm(dx, dy, p, x []float32, sum []float64, coef float64)
TEXT ·lrnDxAsm(SB), NOSPLIT, $0-128
	MOVQ dx_base+0(FP), DI
	MOVQ dx_len+8(FP), CX
	MOVQ dy_base+24(FP), R8
	MOVQ p_base+48(FP), R9
	MOVQ x_base+72(FP), R10
	MOVQ sum_base+96(FP), SI
	VBROADCASTSD coef+120(FP), Y7
	SHRQ $2, CX
	JZ   dxDone

dxLoop:
	VCVTPS2PD  (R8), Y1
	VCVTPS2PD  (R9), Y2
	VMULPD     Y2, Y1, Y1   // dy·p
	VCVTPS2PD  (R10), Y3
	VMULPD     Y3, Y7, Y3   // coef·x
	VMULPD     (SI), Y3, Y3 // coef·x·sum
	VSUBPD     Y3, Y1, Y1   // dy·p − coef·x·sum
	VCVTPD2PSY Y1, X1
	VMOVUPS    X1, (DI)
	ADDQ       $16, DI
	ADDQ       $16, R8
	ADDQ       $16, R9
	ADDQ       $16, R10
	ADDQ       $32, SI
	DECQ       CX
	JNZ        dxLoop

dxDone:
	VZEROUPPER
	RET

// func mul32Asm(y, x, f []float32)
TEXT ·mul32Asm(SB), NOSPLIT, $0-72
	MOVQ f_base+48(FP), SI
	MOVQ f_len+56(FP), CX
	MOVQ y_base+0(FP), DI
	MOVQ x_base+24(FP), R8
	SHRQ $3, CX
	JZ   mulDone

mulLoop:
	VMOVUPS (SI), Y0
	VMULPS  (R8), Y0, Y0 // f·x
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	ADDQ    $32, R8
	DECQ    CX
	JNZ     mulLoop

mulDone:
	VZEROUPPER
	RET

// func pow34AVX(v []float32)
TEXT ·pow34AVX(SB), NOSPLIT, $0-24
	MOVQ v_base+0(FP), SI
	MOVQ v_len+8(FP), CX
	MOVL $0x3f800000, AX // 1.0
	VMOVD AX, X3
	VSHUFPS $0, X3, X3, X3
	VINSERTF128 $1, X3, Y3, Y3
	SHRQ $3, CX
	JZ   powDone

powLoop:
	VMOVUPS (SI), Y0
	VSQRTPS Y0, Y1     // r = √v
	VSQRTPS Y1, Y2     // √r
	VMULPS  Y1, Y2, Y2 // r·√r
	VDIVPS  Y2, Y3, Y0 // 1/(r·√r)
	VMOVUPS Y0, (SI)
	ADDQ    $32, SI
	DECQ    CX
	JNZ     powLoop

powDone:
	VZEROUPPER
	RET

// func addSquaresAsm(sum []float64, v []float32, sign float64)
TEXT ·addSquaresAsm(SB), NOSPLIT, $0-56
	MOVQ sum_base+0(FP), SI
	MOVQ sum_len+8(FP), CX
	MOVQ v_base+24(FP), R8
	VBROADCASTSD sign+48(FP), Y7
	SHRQ $2, CX
	JZ   addSqDone

addSqLoop:
	VCVTPS2PD (R8), Y1
	VMULPD    Y1, Y1, Y1 // v²
	VMULPD    Y1, Y7, Y1 // sign·v²
	VMOVUPD   (SI), Y0
	VADDPD    Y1, Y0, Y0 // sum + sign·v²
	VMOVUPD   Y0, (SI)
	ADDQ      $32, SI
	ADDQ      $16, R8
	DECQ      CX
	JNZ       addSqLoop

addSqDone:
	VZEROUPPER
	RET
