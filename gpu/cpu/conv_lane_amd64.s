#include "textflag.h"

// ZERO24 sets the 24 accumulators of the lane kernels, Z0…Z23, to zero.
#define ZERO24 \
	VPXORD Z0, Z0, Z0; \
	VPXORD Z1, Z1, Z1; \
	VPXORD Z2, Z2, Z2; \
	VPXORD Z3, Z3, Z3; \
	VPXORD Z4, Z4, Z4; \
	VPXORD Z5, Z5, Z5; \
	VPXORD Z6, Z6, Z6; \
	VPXORD Z7, Z7, Z7; \
	VPXORD Z8, Z8, Z8; \
	VPXORD Z9, Z9, Z9; \
	VPXORD Z10, Z10, Z10; \
	VPXORD Z11, Z11, Z11; \
	VPXORD Z12, Z12, Z12; \
	VPXORD Z13, Z13, Z13; \
	VPXORD Z14, Z14, Z14; \
	VPXORD Z15, Z15, Z15; \
	VPXORD Z16, Z16, Z16; \
	VPXORD Z17, Z17, Z17; \
	VPXORD Z18, Z18, Z18; \
	VPXORD Z19, Z19, Z19; \
	VPXORD Z20, Z20, Z20; \
	VPXORD Z21, Z21, Z21; \
	VPXORD Z22, Z22, Z22; \
	VPXORD Z23, Z23, Z23

// FMA3 adds the products of v and the three vectors Z24, Z25, Z26 to a,
// b and c: one broadcast weight (or one filter's dy) against the three
// positions (or taps) of a lane kernel's block.
#define FMA3(v, a, b, c) \
	VFMADD231PS Z24, v, a; \
	VFMADD231PS Z25, v, b; \
	VFMADD231PS Z26, v, c

// func laneConv8x3Asm(y0, y1, y2, x0, x1, x2, w *float32, ldy, k, c, r, s, ldrow, ldplane, add int)
//
// The lane convolution's block with AVX-512: eight filters at three
// output positions, sixteen images in the lanes of each vector. Filter j
// at position i is stored at y_i[j·ldy:][:16]; position i's window starts
// at x_i, tap (c, r, t) at x_i[c·ldplane + r·ldrow + 16·t:][:16]; the
// weight of filter j at tap number m = (c·R+r)·S+t is w[m·k + j]. Each
// output is the sum over the taps in that order, one fused multiply-add
// each, starting from zero, or from the value in y if add is not 0.
TEXT ·laneConv8x3Asm(SB), NOSPLIT, $0-120
	MOVQ add+112(FP), AX
	TESTQ AX, AX
	JNZ  lcLoad
	ZERO24
	JMP  lcStart

lcLoad:
	MOVQ ldy+56(FP), DI
	SHLQ $2, DI
	MOVQ y0+0(FP), AX
	MOVQ y1+8(FP), BX
	MOVQ y2+16(FP), CX
	VMOVUPS (AX), Z0
	VMOVUPS (BX), Z1
	VMOVUPS (CX), Z2
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS (AX), Z3
	VMOVUPS (BX), Z4
	VMOVUPS (CX), Z5
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS (AX), Z6
	VMOVUPS (BX), Z7
	VMOVUPS (CX), Z8
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS (AX), Z9
	VMOVUPS (BX), Z10
	VMOVUPS (CX), Z11
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS (AX), Z12
	VMOVUPS (BX), Z13
	VMOVUPS (CX), Z14
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS (AX), Z15
	VMOVUPS (BX), Z16
	VMOVUPS (CX), Z17
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS (AX), Z18
	VMOVUPS (BX), Z19
	VMOVUPS (CX), Z20
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS (AX), Z21
	VMOVUPS (BX), Z22
	VMOVUPS (CX), Z23

lcStart:
	MOVQ x0+24(FP), SI
	MOVQ x1+32(FP), BX
	SUBQ SI, BX // position 1's offset from position 0, bytes
	MOVQ x2+40(FP), CX
	SUBQ SI, CX
	MOVQ w+48(FP), R8
	MOVQ k+64(FP), R9
	SHLQ $2, R9 // from one tap's weights to the next, bytes
	MOVQ c+72(FP), R10
	MOVQ ldrow+96(FP), R13
	SHLQ $2, R13
	MOVQ ldplane+104(FP), R14
	SHLQ $2, R14
lcPlane:
	MOVQ SI, DX
	MOVQ r+80(FP), R11

lcRow:
	MOVQ DX, AX
	MOVQ s+88(FP), R12

lcTap:
	VMOVUPS (AX), Z24
	VMOVUPS (AX)(BX*1), Z25
	VMOVUPS (AX)(CX*1), Z26
	VBROADCASTSS (R8), Z27
	VBROADCASTSS 4(R8), Z28
	FMA3(Z27, Z0, Z1, Z2)
	VBROADCASTSS 8(R8), Z29
	FMA3(Z28, Z3, Z4, Z5)
	VBROADCASTSS 12(R8), Z30
	FMA3(Z29, Z6, Z7, Z8)
	VBROADCASTSS 16(R8), Z31
	FMA3(Z30, Z9, Z10, Z11)
	VBROADCASTSS 20(R8), Z27
	FMA3(Z31, Z12, Z13, Z14)
	VBROADCASTSS 24(R8), Z28
	FMA3(Z27, Z15, Z16, Z17)
	VBROADCASTSS 28(R8), Z29
	FMA3(Z28, Z18, Z19, Z20)
	FMA3(Z29, Z21, Z22, Z23)
	ADDQ $64, AX
	ADDQ R9, R8
	DECQ R12
	JNZ  lcTap

	ADDQ R13, DX
	DECQ R11
	JNZ  lcRow

	ADDQ R14, SI
	DECQ R10
	JNZ  lcPlane

	MOVQ ldy+56(FP), DI
	SHLQ $2, DI
	MOVQ y0+0(FP), AX
	MOVQ y1+8(FP), BX
	MOVQ y2+16(FP), CX
	VMOVUPS Z0, (AX)
	VMOVUPS Z1, (BX)
	VMOVUPS Z2, (CX)
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS Z3, (AX)
	VMOVUPS Z4, (BX)
	VMOVUPS Z5, (CX)
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS Z6, (AX)
	VMOVUPS Z7, (BX)
	VMOVUPS Z8, (CX)
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS Z9, (AX)
	VMOVUPS Z10, (BX)
	VMOVUPS Z11, (CX)
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS Z12, (AX)
	VMOVUPS Z13, (BX)
	VMOVUPS Z14, (CX)
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS Z15, (AX)
	VMOVUPS Z16, (BX)
	VMOVUPS Z17, (CX)
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS Z18, (AX)
	VMOVUPS Z19, (BX)
	VMOVUPS Z20, (CX)
	ADDQ DI, AX
	ADDQ DI, BX
	ADDQ DI, CX
	VMOVUPS Z21, (AX)
	VMOVUPS Z22, (BX)
	VMOVUPS Z23, (CX)
	VZEROUPPER
	RET

// func laneFilter8x3Asm(acc, x0, x1, x2, dy *float32, lddy, rows, q, ldrow, step, add int)
//
// The lane convolution's filter gradient block with AVX-512: for eight
// filters j and three taps i, acc[(3j+i)·16:][:16] (sixteen images'
// partial sums, one a lane) is added, position after position of rows
// rows of q, the product of filter j's dy (dy[j·lddy:], positions one
// after the other) and tap i's input (x_i, positions step apart within a
// row, rows ldrow apart): one fused multiply-add a term, in position
// order; with add 0 the sums start from zero instead of acc.
TEXT ·laneFilter8x3Asm(SB), NOSPLIT, $0-88
	MOVQ acc+0(FP), DI
	MOVQ add+80(FP), AX
	TESTQ AX, AX
	JNZ  lfLoad
	ZERO24
	JMP  lfStart

lfLoad:
	VMOVUPS 0(DI), Z0
	VMOVUPS 64(DI), Z1
	VMOVUPS 128(DI), Z2
	VMOVUPS 192(DI), Z3
	VMOVUPS 256(DI), Z4
	VMOVUPS 320(DI), Z5
	VMOVUPS 384(DI), Z6
	VMOVUPS 448(DI), Z7
	VMOVUPS 512(DI), Z8
	VMOVUPS 576(DI), Z9
	VMOVUPS 640(DI), Z10
	VMOVUPS 704(DI), Z11
	VMOVUPS 768(DI), Z12
	VMOVUPS 832(DI), Z13
	VMOVUPS 896(DI), Z14
	VMOVUPS 960(DI), Z15
	VMOVUPS 1024(DI), Z16
	VMOVUPS 1088(DI), Z17
	VMOVUPS 1152(DI), Z18
	VMOVUPS 1216(DI), Z19
	VMOVUPS 1280(DI), Z20
	VMOVUPS 1344(DI), Z21
	VMOVUPS 1408(DI), Z22
	VMOVUPS 1472(DI), Z23

lfStart:
	MOVQ x0+8(FP), SI
	MOVQ x1+16(FP), BX
	SUBQ SI, BX // tap 1's offset from tap 0, bytes
	MOVQ x2+24(FP), CX
	SUBQ SI, CX
	MOVQ dy+32(FP), DX
	MOVQ lddy+40(FP), R9
	SHLQ $2, R9 // from one filter's dy to the next, bytes
	LEAQ (R9)(R9*2), R12
	LEAQ (DX)(R9*4), R10 // filters 4 to 7
	MOVQ rows+48(FP), R11
	MOVQ step+72(FP), R14
	SHLQ $2, R14 // from one position's input to the next, bytes
	MOVQ ldrow+64(FP), R13
	SHLQ $2, R13
	MOVQ q+56(FP), AX
	IMULQ R14, AX
	SUBQ AX, R13 // from a row's end to the next row, bytes

lfRow:
	MOVQ q+56(FP), R8

lfPos:
	VMOVUPS (SI), Z24
	VMOVUPS (SI)(BX*1), Z25
	VMOVUPS (SI)(CX*1), Z26
	VMOVUPS (DX), Z27
	FMA3(Z27, Z0, Z1, Z2)
	VMOVUPS (DX)(R9*1), Z28
	FMA3(Z28, Z3, Z4, Z5)
	VMOVUPS (DX)(R9*2), Z29
	FMA3(Z29, Z6, Z7, Z8)
	VMOVUPS (DX)(R12*1), Z30
	FMA3(Z30, Z9, Z10, Z11)
	VMOVUPS (R10), Z31
	FMA3(Z31, Z12, Z13, Z14)
	VMOVUPS (R10)(R9*1), Z27
	FMA3(Z27, Z15, Z16, Z17)
	VMOVUPS (R10)(R9*2), Z28
	FMA3(Z28, Z18, Z19, Z20)
	VMOVUPS (R10)(R12*1), Z29
	FMA3(Z29, Z21, Z22, Z23)
	ADDQ R14, SI
	ADDQ $64, DX
	ADDQ $64, R10
	DECQ R8
	JNZ  lfPos

	ADDQ R13, SI
	DECQ R11
	JNZ  lfRow

	VMOVUPS Z0, 0(DI)
	VMOVUPS Z1, 64(DI)
	VMOVUPS Z2, 128(DI)
	VMOVUPS Z3, 192(DI)
	VMOVUPS Z4, 256(DI)
	VMOVUPS Z5, 320(DI)
	VMOVUPS Z6, 384(DI)
	VMOVUPS Z7, 448(DI)
	VMOVUPS Z8, 512(DI)
	VMOVUPS Z9, 576(DI)
	VMOVUPS Z10, 640(DI)
	VMOVUPS Z11, 704(DI)
	VMOVUPS Z12, 768(DI)
	VMOVUPS Z13, 832(DI)
	VMOVUPS Z14, 896(DI)
	VMOVUPS Z15, 960(DI)
	VMOVUPS Z16, 1024(DI)
	VMOVUPS Z17, 1088(DI)
	VMOVUPS Z18, 1152(DI)
	VMOVUPS Z19, 1216(DI)
	VMOVUPS Z20, 1280(DI)
	VMOVUPS Z21, 1344(DI)
	VMOVUPS Z22, 1408(DI)
	VMOVUPS Z23, 1472(DI)
	VZEROUPPER
	RET

// TRANSPOSE16 transposes the 16×16 matrix whose rows are Z0…Z15 into
// Z0…Z15 (Z16…Z31 are scratch): pairs of rows interleaved, then pairs of
// pairs, then the 128-bit quarters gathered in two rounds, so that Zj
// ends as column j, row i in lane i.
#define TRANSPOSE16 \
	VUNPCKLPS Z1, Z0, Z16; \
	VUNPCKHPS Z1, Z0, Z17; \
	VUNPCKLPS Z3, Z2, Z18; \
	VUNPCKHPS Z3, Z2, Z19; \
	VUNPCKLPS Z5, Z4, Z20; \
	VUNPCKHPS Z5, Z4, Z21; \
	VUNPCKLPS Z7, Z6, Z22; \
	VUNPCKHPS Z7, Z6, Z23; \
	VUNPCKLPS Z9, Z8, Z24; \
	VUNPCKHPS Z9, Z8, Z25; \
	VUNPCKLPS Z11, Z10, Z26; \
	VUNPCKHPS Z11, Z10, Z27; \
	VUNPCKLPS Z13, Z12, Z28; \
	VUNPCKHPS Z13, Z12, Z29; \
	VUNPCKLPS Z15, Z14, Z30; \
	VUNPCKHPS Z15, Z14, Z31; \
	VUNPCKLPD Z18, Z16, Z0; \
	VUNPCKHPD Z18, Z16, Z1; \
	VUNPCKLPD Z19, Z17, Z2; \
	VUNPCKHPD Z19, Z17, Z3; \
	VUNPCKLPD Z22, Z20, Z4; \
	VUNPCKHPD Z22, Z20, Z5; \
	VUNPCKLPD Z23, Z21, Z6; \
	VUNPCKHPD Z23, Z21, Z7; \
	VUNPCKLPD Z26, Z24, Z8; \
	VUNPCKHPD Z26, Z24, Z9; \
	VUNPCKLPD Z27, Z25, Z10; \
	VUNPCKHPD Z27, Z25, Z11; \
	VUNPCKLPD Z30, Z28, Z12; \
	VUNPCKHPD Z30, Z28, Z13; \
	VUNPCKLPD Z31, Z29, Z14; \
	VUNPCKHPD Z31, Z29, Z15; \
	VSHUFF32X4 $0x44, Z4, Z0, Z16; \
	VSHUFF32X4 $0xEE, Z4, Z0, Z17; \
	VSHUFF32X4 $0x44, Z12, Z8, Z18; \
	VSHUFF32X4 $0xEE, Z12, Z8, Z19; \
	VSHUFF32X4 $0x44, Z5, Z1, Z20; \
	VSHUFF32X4 $0xEE, Z5, Z1, Z21; \
	VSHUFF32X4 $0x44, Z13, Z9, Z22; \
	VSHUFF32X4 $0xEE, Z13, Z9, Z23; \
	VSHUFF32X4 $0x44, Z6, Z2, Z24; \
	VSHUFF32X4 $0xEE, Z6, Z2, Z25; \
	VSHUFF32X4 $0x44, Z14, Z10, Z26; \
	VSHUFF32X4 $0xEE, Z14, Z10, Z27; \
	VSHUFF32X4 $0x44, Z7, Z3, Z28; \
	VSHUFF32X4 $0xEE, Z7, Z3, Z29; \
	VSHUFF32X4 $0x44, Z15, Z11, Z30; \
	VSHUFF32X4 $0xEE, Z15, Z11, Z31; \
	VSHUFF32X4 $0x88, Z18, Z16, Z0; \
	VSHUFF32X4 $0xDD, Z18, Z16, Z4; \
	VSHUFF32X4 $0x88, Z19, Z17, Z8; \
	VSHUFF32X4 $0xDD, Z19, Z17, Z12; \
	VSHUFF32X4 $0x88, Z22, Z20, Z1; \
	VSHUFF32X4 $0xDD, Z22, Z20, Z5; \
	VSHUFF32X4 $0x88, Z23, Z21, Z9; \
	VSHUFF32X4 $0xDD, Z23, Z21, Z13; \
	VSHUFF32X4 $0x88, Z26, Z24, Z2; \
	VSHUFF32X4 $0xDD, Z26, Z24, Z6; \
	VSHUFF32X4 $0x88, Z27, Z25, Z10; \
	VSHUFF32X4 $0xDD, Z27, Z25, Z14; \
	VSHUFF32X4 $0x88, Z30, Z28, Z3; \
	VSHUFF32X4 $0xDD, Z30, Z28, Z7; \
	VSHUFF32X4 $0x88, Z31, Z29, Z11; \
	VSHUFF32X4 $0xDD, Z31, Z29, Z15

// func laneInAsm(dst, src *float32, w, rows, lds, srcRow, dstRow int)
//
// toLanes' transposition with AVX-512, for sixteen images: row r's w
// values of image l, src[r·srcRow + l·lds:][:w], go to lane l of
// dst[r·dstRow + 16·x:] for x = 0…w−1, sixteen columns at a time
// (masked loads past w).
TEXT ·laneInAsm(SB), NOSPLIT, $0-56
	MOVQ lds+32(FP), R9
	SHLQ $2, R9
	MOVQ srcRow+40(FP), R10
	SHLQ $2, R10
	MOVQ dstRow+48(FP), R11
	SHLQ $2, R11
	MOVQ src+8(FP), SI
	MOVQ dst+0(FP), DI
	MOVQ rows+24(FP), R12

liRow:
	MOVQ SI, R13 // this row's columns x0
	MOVQ DI, DX
	MOVQ w+16(FP), BX // columns left

liBlock:
	MOVQ BX, CX
	CMPQ CX, $16
	JLE  liMask
	MOVQ $16, CX

liMask:
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX
	KMOVW AX, K1
	MOVQ R13, AX
	VMOVUPS.Z (AX), K1, Z0
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z1
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z2
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z3
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z4
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z5
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z6
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z7
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z8
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z9
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z10
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z11
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z12
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z13
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z14
	ADDQ R9, AX
	VMOVUPS.Z (AX), K1, Z15
	TRANSPOSE16
	VMOVUPS Z0, 0(DX)
	CMPQ CX, $1
	JEQ  liNext
	VMOVUPS Z1, 64(DX)
	CMPQ CX, $2
	JEQ  liNext
	VMOVUPS Z2, 128(DX)
	CMPQ CX, $3
	JEQ  liNext
	VMOVUPS Z3, 192(DX)
	CMPQ CX, $4
	JEQ  liNext
	VMOVUPS Z4, 256(DX)
	CMPQ CX, $5
	JEQ  liNext
	VMOVUPS Z5, 320(DX)
	CMPQ CX, $6
	JEQ  liNext
	VMOVUPS Z6, 384(DX)
	CMPQ CX, $7
	JEQ  liNext
	VMOVUPS Z7, 448(DX)
	CMPQ CX, $8
	JEQ  liNext
	VMOVUPS Z8, 512(DX)
	CMPQ CX, $9
	JEQ  liNext
	VMOVUPS Z9, 576(DX)
	CMPQ CX, $10
	JEQ  liNext
	VMOVUPS Z10, 640(DX)
	CMPQ CX, $11
	JEQ  liNext
	VMOVUPS Z11, 704(DX)
	CMPQ CX, $12
	JEQ  liNext
	VMOVUPS Z12, 768(DX)
	CMPQ CX, $13
	JEQ  liNext
	VMOVUPS Z13, 832(DX)
	CMPQ CX, $14
	JEQ  liNext
	VMOVUPS Z14, 896(DX)
	CMPQ CX, $15
	JEQ  liNext
	VMOVUPS Z15, 960(DX)

liNext:
	ADDQ $64, R13
	ADDQ $1024, DX
	SUBQ CX, BX
	JNZ  liBlock

	ADDQ R10, SI
	ADDQ R11, DI
	DECQ R12
	JNZ  liRow
	VZEROUPPER
	RET

// func laneOutAsm(dst, src *float32, blocks, ldd int)
//
// fromLanes' transposition with AVX-512, for sixteen images: lane l of
// src[16·i:] goes to dst[l·ldd + i], for i = 0…16·blocks−1, sixteen
// positions at a time.
TEXT ·laneOutAsm(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ blocks+16(FP), R12
	MOVQ ldd+24(FP), R9
	SHLQ $2, R9

loBlock:
	VMOVUPS 0(SI), Z0
	VMOVUPS 64(SI), Z1
	VMOVUPS 128(SI), Z2
	VMOVUPS 192(SI), Z3
	VMOVUPS 256(SI), Z4
	VMOVUPS 320(SI), Z5
	VMOVUPS 384(SI), Z6
	VMOVUPS 448(SI), Z7
	VMOVUPS 512(SI), Z8
	VMOVUPS 576(SI), Z9
	VMOVUPS 640(SI), Z10
	VMOVUPS 704(SI), Z11
	VMOVUPS 768(SI), Z12
	VMOVUPS 832(SI), Z13
	VMOVUPS 896(SI), Z14
	VMOVUPS 960(SI), Z15
	TRANSPOSE16
	MOVQ DI, DX
	VMOVUPS Z0, (DX)
	ADDQ R9, DX
	VMOVUPS Z1, (DX)
	ADDQ R9, DX
	VMOVUPS Z2, (DX)
	ADDQ R9, DX
	VMOVUPS Z3, (DX)
	ADDQ R9, DX
	VMOVUPS Z4, (DX)
	ADDQ R9, DX
	VMOVUPS Z5, (DX)
	ADDQ R9, DX
	VMOVUPS Z6, (DX)
	ADDQ R9, DX
	VMOVUPS Z7, (DX)
	ADDQ R9, DX
	VMOVUPS Z8, (DX)
	ADDQ R9, DX
	VMOVUPS Z9, (DX)
	ADDQ R9, DX
	VMOVUPS Z10, (DX)
	ADDQ R9, DX
	VMOVUPS Z11, (DX)
	ADDQ R9, DX
	VMOVUPS Z12, (DX)
	ADDQ R9, DX
	VMOVUPS Z13, (DX)
	ADDQ R9, DX
	VMOVUPS Z14, (DX)
	ADDQ R9, DX
	VMOVUPS Z15, (DX)
	ADDQ $1024, SI
	ADDQ $64, DI
	DECQ R12
	JNZ  loBlock
	VZEROUPPER
	RET
