#include "textflag.h"

#define BCAST(k, X, Y) MOVL $k, AX; VMOVD AX, X; VSHUFPS $0, X, X, X; VINSERTF128 $1, X, Y, Y

// func firstMax3Asm(first, x0, x1, x2, me []float32)
//
// For every position c of 0…len(first)−1 (a multiple of eight; every x row
// holds at least two more values), first[c] is set to the bits of the
// int32 k, 0 ≤ k < 9, of the first value in row-major order of the 3×3
// window x0[c:c+3], x1[c:c+3], x2[c:c+3] that equals me[c], or 9 if none
// does (a NaN). Eight windows at a time: k is chosen from 8 down to 0, so
// the earliest match is the one that stays. Equality is ordered, as Go's ==.
TEXT ·firstMax3Asm(SB), NOSPLIT, $0-120
	MOVQ first_base+0(FP), DI
	MOVQ first_len+8(FP), CX
	MOVQ x0_base+24(FP), R8
	MOVQ x1_base+48(FP), R9
	MOVQ x2_base+72(FP), R10
	MOVQ me_base+96(FP), SI
	BCAST(1, X8, Y8)
	BCAST(2, X9, Y9)
	BCAST(3, X10, Y10)
	BCAST(4, X11, Y11)
	BCAST(5, X12, Y12)
	BCAST(6, X13, Y13)
	BCAST(7, X14, Y14)
	BCAST(8, X15, Y15)
	BCAST(9, X4, Y4)
	VXORPS Y5, Y5, Y5
	SHRQ $3, CX
	JZ   firstDone

firstLoop:
	VMOVUPS (SI), Y7
	VMOVUPS Y4, Y6
	VCMPPS    $0, 8(R10), Y7, Y0
	VBLENDVPS Y0, Y15, Y6, Y6
	VCMPPS    $0, 4(R10), Y7, Y0
	VBLENDVPS Y0, Y14, Y6, Y6
	VCMPPS    $0, (R10), Y7, Y0
	VBLENDVPS Y0, Y13, Y6, Y6
	VCMPPS    $0, 8(R9), Y7, Y0
	VBLENDVPS Y0, Y12, Y6, Y6
	VCMPPS    $0, 4(R9), Y7, Y0
	VBLENDVPS Y0, Y11, Y6, Y6
	VCMPPS    $0, (R9), Y7, Y0
	VBLENDVPS Y0, Y10, Y6, Y6
	VCMPPS    $0, 8(R8), Y7, Y0
	VBLENDVPS Y0, Y9, Y6, Y6
	VCMPPS    $0, 4(R8), Y7, Y0
	VBLENDVPS Y0, Y8, Y6, Y6
	VCMPPS    $0, (R8), Y7, Y0
	VBLENDVPS Y0, Y5, Y6, Y6
	VMOVUPS Y6, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, R8
	ADDQ $32, R9
	ADDQ $32, R10
	DECQ CX
	JNZ  firstLoop

firstDone:
	VZEROUPPER
	RET
