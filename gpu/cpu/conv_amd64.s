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

// func copyRowsAsm(dst, src []float32, width, ldd, lds, rows int)
//
// Copies rows rows of width values, row i from src[i·lds:] to
// dst[i·ldd:], width ≥ 8: eight values at a time with AVX, the row's last
// eight last (overlapping the one before when width is not a multiple of
// eight). The Go wrapper in conv_amd64.go checks the bounds.
TEXT ·copyRowsAsm(SB), NOSPLIT, $0-80
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ width+48(FP), CX
	MOVQ ldd+56(FP), R8
	SHLQ $2, R8
	MOVQ lds+64(FP), R9
	SHLQ $2, R9
	MOVQ rows+72(FP), R10
	LEAQ -32(CX*4), R11
	TESTQ R10, R10
	JZ   copyDone

copyRow:
	XORQ AX, AX

copyVec:
	CMPQ AX, R11
	JAE  copyLast
	VMOVUPS (SI)(AX*1), Y0
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ $32, AX
	JMP  copyVec

copyLast:
	VMOVUPS (SI)(R11*1), Y0
	VMOVUPS Y0, (DI)(R11*1)
	ADDQ R8, DI
	ADDQ R9, SI
	DECQ R10
	JNZ  copyRow

copyDone:
	VZEROUPPER
	RET

// The order of the values 0, 2, 4, 6, 1, 3, 5, 7 that the unpacks below
// leave in a register: VPERMPS by it puts them back in 0…7.
DATA splitPerm<>+0(SB)/4, $0
DATA splitPerm<>+4(SB)/4, $4
DATA splitPerm<>+8(SB)/4, $1
DATA splitPerm<>+12(SB)/4, $5
DATA splitPerm<>+16(SB)/4, $2
DATA splitPerm<>+20(SB)/4, $6
DATA splitPerm<>+24(SB)/4, $3
DATA splitPerm<>+28(SB)/4, $7
GLOBL splitPerm<>(SB), RODATA|NOPTR, $32

// func splitPhases4Asm(de, plane []float32, w, l, rows int)
//
// For rows rows of w values of plane, row h's columns 4k+ph for k <
// 8·⌊w/32⌋ go to de[(4h+ph)·l+k]: 32 columns (a 4×8 transpose of groups of
// four) at a time. The Go wrapper in conv_amd64.go checks the bounds and
// writes the rest of each phase.
TEXT ·splitPhases4Asm(SB), NOSPLIT, $0-72
	MOVQ de_base+0(FP), DI
	MOVQ plane_base+24(FP), SI
	MOVQ w+48(FP), R8
	MOVQ R8, R11
	SHRQ $5, R11
	SHLQ $2, R8
	MOVQ l+56(FP), R9
	SHLQ $2, R9
	MOVQ rows+64(FP), R10
	VMOVUPS splitPerm<>(SB), Y15
	TESTQ R11, R11
	JZ   splitDone
	TESTQ R10, R10
	JZ   splitDone

splitRow:
	MOVQ SI, AX
	MOVQ DI, BX
	LEAQ (BX)(R9*1), R12
	LEAQ (R12)(R9*1), R13
	LEAQ (R13)(R9*1), R14
	MOVQ R11, CX

splitChunk:
	VMOVUPS (AX), Y0
	VMOVUPS 32(AX), Y1
	VMOVUPS 64(AX), Y2
	VMOVUPS 96(AX), Y3
	VUNPCKLPS Y1, Y0, Y4
	VUNPCKHPS Y1, Y0, Y5
	VUNPCKLPS Y3, Y2, Y6
	VUNPCKHPS Y3, Y2, Y7
	VUNPCKLPD Y6, Y4, Y0
	VUNPCKHPD Y6, Y4, Y1
	VUNPCKLPD Y7, Y5, Y2
	VUNPCKHPD Y7, Y5, Y3
	VPERMPS Y0, Y15, Y0
	VPERMPS Y1, Y15, Y1
	VPERMPS Y2, Y15, Y2
	VPERMPS Y3, Y15, Y3
	VMOVUPS Y0, (BX)
	VMOVUPS Y1, (R12)
	VMOVUPS Y2, (R13)
	VMOVUPS Y3, (R14)
	ADDQ $128, AX
	ADDQ $32, BX
	ADDQ $32, R12
	ADDQ $32, R13
	ADDQ $32, R14
	DECQ CX
	JNZ  splitChunk

	ADDQ R8, SI
	LEAQ (DI)(R9*4), DI
	DECQ R10
	JNZ  splitRow

splitDone:
	VZEROUPPER
	RET

// func maskRowsAsm(dst, src, mask []float32, lds, n int)
//
// For n rows, row i of dst (len(mask) ≥ 8 values, rows one after the
// other) is src[i·lds:] AND mask, bit by bit: eight values at a time,
// the row's last eight last (overlapping the one before). The Go wrapper
// in conv_amd64.go checks the bounds.
TEXT ·maskRowsAsm(SB), NOSPLIT, $0-88
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ mask_base+48(FP), DX
	MOVQ mask_len+56(FP), CX
	MOVQ lds+72(FP), R9
	SHLQ $2, R9
	MOVQ n+80(FP), R10
	LEAQ -32(CX*4), R11
	SHLQ $2, CX
	TESTQ R10, R10
	JZ   maskDone

maskRow:
	XORQ AX, AX

maskVec:
	CMPQ AX, R11
	JAE  maskLast
	VMOVUPS (SI)(AX*1), Y0
	VANDPS  (DX)(AX*1), Y0, Y0
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ $32, AX
	JMP  maskVec

maskLast:
	VMOVUPS (SI)(R11*1), Y0
	VANDPS  (DX)(R11*1), Y0, Y0
	VMOVUPS Y0, (DI)(R11*1)
	ADDQ CX, DI
	ADDQ R9, SI
	DECQ R10
	JNZ  maskRow

maskDone:
	VZEROUPPER
	RET

// func maskAddRowsAsm(dst, src, mask []float32, ldd, lds, n int)
//
// For n rows, dst[i·ldd+k] += src[i·lds+k] AND mask[k] for k <
// len(mask): eight values at a time, then one at a time, so that nothing
// outside the rows is written. The Go wrapper in conv_amd64.go checks the
// bounds.
TEXT ·maskAddRowsAsm(SB), NOSPLIT, $0-96
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ mask_base+48(FP), DX
	MOVQ mask_len+56(FP), CX
	MOVQ ldd+72(FP), R8
	SHLQ $2, R8
	MOVQ lds+80(FP), R9
	SHLQ $2, R9
	MOVQ n+88(FP), R10
	MOVQ CX, R11
	ANDQ $-8, R11
	SHLQ $2, R11
	SHLQ $2, CX
	TESTQ R10, R10
	JZ   maddDone

maddRow:
	XORQ AX, AX

maddVec:
	CMPQ AX, R11
	JAE  maddTail
	VMOVUPS (SI)(AX*1), Y0
	VANDPS  (DX)(AX*1), Y0, Y0
	VADDPS  (DI)(AX*1), Y0, Y0
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ $32, AX
	JMP  maddVec

maddTail:
	CMPQ AX, CX
	JAE  maddNext
	VMOVSS (SI)(AX*1), X0
	VMOVSS (DX)(AX*1), X1
	VANDPS X1, X0, X0
	VADDSS (DI)(AX*1), X0, X0
	VMOVSS X0, (DI)(AX*1)
	ADDQ $4, AX
	JMP  maddTail

maddNext:
	ADDQ R8, DI
	ADDQ R9, SI
	DECQ R10
	JNZ  maddRow

maddDone:
	VZEROUPPER
	RET

// func convRows8Asm(y, x, w *float32, ldy, c, r, s, wp, hwp int)
//
// The direct convolution's inner block with AVX-512: 32 outputs of one
// output row for eight filters, filter i's at y[i·ldy:][:32], from the
// zero-padded input x (rows of wp values, planes of hwp) and the eight
// filters' weights interleaved, w[(c·R+r)·S+t][i]: y[q] = Σ over c, r, t
// in that order of x[c·hwp + r·wp + t + q]·w[c,r,t], one fused
// multiply-add per term, starting from zero.
TEXT ·convRows8Asm(SB), NOSPLIT, $0-72
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), R8
	MOVQ c+32(FP), R10
	MOVQ r+40(FP), R11
	MOVQ s+48(FP), R12
	MOVQ wp+56(FP), R13
	SHLQ $2, R13
	MOVQ hwp+64(FP), R14
	SHLQ $2, R14
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15

d8Plane:
	MOVQ SI, DX
	MOVQ R11, BX

d8Row:
	MOVQ DX, AX
	MOVQ R12, CX

d8Tap:
	VMOVUPS (AX), Z16
	VMOVUPS 64(AX), Z17
	VBROADCASTSS (R8), Z18
	VBROADCASTSS 4(R8), Z19
	VBROADCASTSS 8(R8), Z20
	VBROADCASTSS 12(R8), Z21
	VFMADD231PS Z16, Z18, Z0
	VFMADD231PS Z17, Z18, Z1
	VFMADD231PS Z16, Z19, Z2
	VFMADD231PS Z17, Z19, Z3
	VFMADD231PS Z16, Z20, Z4
	VFMADD231PS Z17, Z20, Z5
	VFMADD231PS Z16, Z21, Z6
	VFMADD231PS Z17, Z21, Z7
	VBROADCASTSS 16(R8), Z18
	VBROADCASTSS 20(R8), Z19
	VBROADCASTSS 24(R8), Z20
	VBROADCASTSS 28(R8), Z21
	VFMADD231PS Z16, Z18, Z8
	VFMADD231PS Z17, Z18, Z9
	VFMADD231PS Z16, Z19, Z10
	VFMADD231PS Z17, Z19, Z11
	VFMADD231PS Z16, Z20, Z12
	VFMADD231PS Z17, Z20, Z13
	VFMADD231PS Z16, Z21, Z14
	VFMADD231PS Z17, Z21, Z15
	ADDQ $4, AX
	ADDQ $32, R8
	DECQ CX
	JNZ  d8Tap

	ADDQ R13, DX
	DECQ BX
	JNZ  d8Row

	ADDQ R14, SI
	DECQ R10
	JNZ  d8Plane

	MOVQ y+0(FP), DI
	MOVQ ldy+24(FP), R9
	SHLQ $2, R9
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	ADDQ R9, DI
	VMOVUPS Z2, (DI)
	VMOVUPS Z3, 64(DI)
	ADDQ R9, DI
	VMOVUPS Z4, (DI)
	VMOVUPS Z5, 64(DI)
	ADDQ R9, DI
	VMOVUPS Z6, (DI)
	VMOVUPS Z7, 64(DI)
	ADDQ R9, DI
	VMOVUPS Z8, (DI)
	VMOVUPS Z9, 64(DI)
	ADDQ R9, DI
	VMOVUPS Z10, (DI)
	VMOVUPS Z11, 64(DI)
	ADDQ R9, DI
	VMOVUPS Z12, (DI)
	VMOVUPS Z13, 64(DI)
	ADDQ R9, DI
	VMOVUPS Z14, (DI)
	VMOVUPS Z15, 64(DI)
	VZEROUPPER
	RET
