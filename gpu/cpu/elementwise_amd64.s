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
