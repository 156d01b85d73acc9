#include "textflag.h"

// func pow34Asm(v []float32)
//
// v[i] = 1/(√v[i]·√√v[i]) = v[i]^−¾, four at a time with SSE (every
// amd64 has it), then one at a time. Square root, product and quotient are
// each correctly rounded, so the bits are those of pow34Go.
TEXT ·pow34Asm(SB), NOSPLIT, $0-24
	MOVQ v_base+0(FP), SI
	MOVQ v_len+8(FP), CX
	MOVL $0x3f800000, AX // 1.0
	MOVD AX, X3
	SHUFPS $0, X3, X3

loop4:
	CMPQ CX, $4
	JLT tail
	MOVUPS (SI), X0
	SQRTPS X0, X1
	SQRTPS X1, X2
	MULPS X1, X2
	MOVAPS X3, X0
	DIVPS X2, X0
	MOVUPS X0, (SI)
	ADDQ $16, SI
	SUBQ $4, CX
	JMP loop4

tail:
	CMPQ CX, $0
	JEQ done
	MOVSS (SI), X0
	SQRTSS X0, X1
	SQRTSS X1, X2
	MULSS X1, X2
	MOVSS X3, X0
	DIVSS X2, X0
	MOVSS X0, (SI)
	ADDQ $4, SI
	DECQ CX
	JMP tail

done:
	RET
