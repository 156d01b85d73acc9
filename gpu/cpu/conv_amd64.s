#include "textflag.h"

// func addToAsm(dst, src []float32)
//
// dst[i] += src[i], eight at a time with AVX, for a length that is a
// multiple of eight (the Go dispatcher in conv_amd64.go runs the tail):
// one correctly rounded sum per value, the bits of addToGo.
TEXT ·addToAsm(SB), NOSPLIT, $0-48
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src_base+24(FP), SI
	SHRQ $3, CX
	JZ   addDone

addLoop:
	VMOVUPS (DI), Y0
	VADDPS  (SI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	DECQ    CX
	JNZ     addLoop

addDone:
	VZEROUPPER
	RET
