#include "textflag.h"

// All bits but the sign.
DATA lrnAbs<>+0(SB)/8, $0x7fffffff7fffffff
DATA lrnAbs<>+8(SB)/8, $0x7fffffff7fffffff
DATA lrnAbs<>+16(SB)/8, $0x7fffffff7fffffff
DATA lrnAbs<>+24(SB)/8, $0x7fffffff7fffffff
GLOBL lrnAbs<>(SB), RODATA|NOPTR, $32

// A row of the backward pass's scratch: lrnBlock = 1024 values (lrn_amd64.go
// fails to compile if lrnBlock changes without these).
#define ROWSHIFT 12
#define ROWBYTES 4096

// The LRN of lrn.go for β = ¾ in AVX, eight pixels (float32 lanes) at a
// time: lrnForwardAsm, and lrnRatioAsm, lrnBothAsm and lrnDxAsm between
// them, do for pixels 0…n−1 of a block (n a positive multiple of 8,
// channel c's pixel i at byte 4·(c·hw + i)) the operations of
// lrnForwardGo and lrnBackwardGo in the same order, without fused
// multiply-adds: products, sums, quotients and square roots are each
// correctly rounded in both, so the bits are the same. The channels are
// the outer loop, the vectors of a block the inner one, so that the rows
// a window reads are in the L1 cache; each vector's stores come after its
// loads, since the rows of the scratch (and of a 32×32 image) lie 4096
// bytes apart and a load after a store to another row at the same offset
// waits on it (4K aliasing). The scratch of the backward pass holds p[c]
// at byte ROWBYTES·c and ratio[c] at ROWBYTES·(C+c).
//
// Held throughout: Y12 = 1, Y13 = MaxFloat32, and for max(0, x) (IN)
// Y14 = Z, Y15 = W: with the fused ReLU Z = 0 and W = 0x7fffffff, so that
// v & W & (v ≰ Z) is Go's max(v, 0) (+0 for v ≤ 0 and −0, v for v > 0, a
// NaN with its sign cleared); without, Z = NaN and W = all ones, so that
// it is v itself.

// IN replaces v by lrnIn(v), t a scratch register: v ≰ Z is NLE_UQ,
// true for a NaN.
#define IN(v, t) \
	VCMPPS $0x16, Y14, v, t; \
	VANDPS Y15, t, t; \
	VANDPS t, v, v

// SQ sets v to the window term of the value at mem: |lrnIn(x)²|, as
// |MAX(Z, x)²|: MAXPS returns its second operand, x, where either is NaN,
// so that it is x without the fused ReLU (Z = NaN) and, with it, x for
// x > 0 or NaN and 0 for x < 0 (and −0 for −0, whose square is +0 all the
// same); the absolute value clears the sign a NaN square keeps, which
// lrnIn's max clears first. One operation less than IN and a square.
#define SQ(mem, v) \
	VMAXPS mem, Y14, v; \
	VMULPS v, v, v; \
	VANDPS lrnAbs<>(SB), v, v

// BCAST sets Y to eight copies of the 32 bits of AX (AVX, not AVX2).
#define BCAST(X, Y) \
	VMOVD AX, X; \
	VSHUFPS $0, X, X, X; \
	VINSERTF128 $1, X, Y, Y

// CONSTS sets Y12…Y15 from the bool relu (a memory operand) and leaves
// CX = relu ? all ones : 0.
#define CONSTS(relu) \
	MOVL $0x3f800000, AX; \
	BCAST(X12, Y12); \
	MOVL $0x7f7fffff, AX; \
	BCAST(X13, Y13); \
	MOVBLZX relu, CX; \
	NEGL CX; \
	MOVL CX, AX; \
	NOTL AX; \
	ANDL $0x7fc00000, AX; \
	BCAST(X14, Y14); \
	MOVL CX, AX; \
	ANDL $0x80000000, AX; \
	NOTL AX; \
	BCAST(X15, Y15)

// SCALE sets, from the window sum in Y2, Y3 = inv = 1/scale and
// Y4 = p = inv·√√scale, scale = min(K + float32(α·sum), MaxFloat32)
// with K in Y10 and α in Y11 (MINPS returns its second operand, scale,
// where it is NaN, as the Go comparison keeps it).
#define SCALE \
	VMULPS Y2, Y11, Y2; \
	VADDPS Y2, Y10, Y2; \
	VMINPS Y2, Y13, Y2; \
	VDIVPS Y2, Y12, Y3; \
	VSQRTPS Y2, Y4; \
	VSQRTPS Y4, Y4; \
	VMULPS Y4, Y3, Y4

// WINQ sets, for channel c in BX, AX = lo = max(c−half, 0) and
// DX = hi − lo, hi = min(c+half, C−1): the window's channels, half and C
// 8-byte memory operands (the Q says so to go vet). It uses CX.
#define WINQ(half, C) \
	MOVQ    BX, AX; \
	SUBQ    half, AX; \
	XORQ    CX, CX; \
	CMPQ    AX, CX; \
	CMOVQLT CX, AX; \
	MOVQ    BX, DX; \
	ADDQ    half, DX; \
	MOVQ    C, CX; \
	DECQ    CX; \
	CMPQ    DX, CX; \
	CMOVQGT CX, DX; \
	SUBQ    AX, DX

// func lrnForwardAsm(y, x []float32, hw, c, half, n int, k, alpha float32, relu bool)
TEXT ·lrnForwardAsm(SB), NOSPLIT, $0-89
	CONSTS(relu+88(FP))
	VBROADCASTSS k+80(FP), Y10
	VBROADCASTSS alpha+84(FP), Y11
	MOVQ y_base+0(FP), DI
	MOVQ x_base+24(FP), SI
	MOVQ hw+48(FP), R8
	SHLQ $2, R8 // bytes from one channel to the next
	MOVQ n+72(FP), R11
	SHLQ $2, R11 // bytes of a row to do
	XORQ BX, BX  // c

fwdChan:
	CMPQ BX, c+56(FP)
	JGE  fwdDone
	WINQ(half+64(FP), c+56(FP)) // AX = lo, DX = hi − lo
	IMULQ R8, DX // bytes from row lo to row hi
	IMULQ R8, AX
	ADDQ  SI, AX // &x[lo·hw]
	MOVQ  BX, R12
	IMULQ R8, R12 // c·hw·4
	XORQ  R13, R13 // byte offset of the vector in its row

fwdVec:
	LEAQ    (AX)(R13*1), CX
	SQ((CX), Y2) // sum = x[lo]²
	XORQ    R10, R10

fwdWin:
	CMPQ    R10, DX
	JGE     fwdSum
	ADDQ    R8, R10
	SQ((CX)(R10*1), Y0)
	VADDPS  Y0, Y2, Y2 // sum + x[j]²
	JMP     fwdWin

fwdSum:
	SCALE
	LEAQ    (R12)(R13*1), CX
	VMOVUPS (SI)(CX*1), Y0
	IN(Y0, Y1)
	VMULPS  Y4, Y0, Y0 // x·p
	VMOVUPS Y0, (DI)(CX*1)
	ADDQ    $32, R13
	CMPQ    R13, R11
	JLT     fwdVec
	INCQ    BX
	JMP     fwdChan

fwdDone:
	VZEROUPPER
	RET

// func lrnRatioAsm(dy, x, y, scratch []float32, hw, c, half, n, c0, c1 int, k, alpha float32, relu bool)
//
// p[c] and ratio[c] = float32(dy·y)·inv into the scratch for the
// channels c0…c1−1: the first loop of lrnBackwardGo.
TEXT ·lrnRatioAsm(SB), NOSPLIT, $0-153
	CONSTS(relu+152(FP))
	VBROADCASTSS k+144(FP), Y10
	VBROADCASTSS alpha+148(FP), Y11
	MOVQ hw+96(FP), R8
	SHLQ $2, R8
	MOVQ n+120(FP), R11
	SHLQ $2, R11
	MOVQ c0+128(FP), BX

ratioChan:
	CMPQ BX, c1+136(FP)
	JGE  ratioDone
	WINQ(half+112(FP), c+104(FP)) // AX = lo, DX = hi − lo
	IMULQ R8, DX
	IMULQ R8, AX
	ADDQ  x_base+24(FP), AX
	MOVQ  BX, R9
	IMULQ R8, R9
	MOVQ  R9, R10
	ADDQ  dy_base+0(FP), R9 // &dy[c·hw]
	ADDQ  y_base+48(FP), R10 // &y[c·hw]
	MOVQ  BX, DI
	SHLQ  $ROWSHIFT, DI
	ADDQ  scratch_base+72(FP), DI // p[c]
	MOVQ  c+104(FP), R12
	SHLQ  $ROWSHIFT, R12
	ADDQ  DI, R12 // ratio[c]
	XORQ  R13, R13

ratioVec:
	LEAQ    (AX)(R13*1), CX
	SQ((CX), Y2)
	XORQ    SI, SI

ratioWin:
	CMPQ    SI, DX
	JGE     ratioSum
	ADDQ    R8, SI
	SQ((CX)(SI*1), Y0)
	VADDPS  Y0, Y2, Y2
	JMP     ratioWin

ratioSum:
	SCALE
	VMOVUPS (R9)(R13*1), Y0
	VMULPS  (R10)(R13*1), Y0, Y0 // dy·y
	VMULPS  Y3, Y0, Y0           // ·inv
	VMOVUPS Y4, (DI)(R13*1)
	VMOVUPS Y0, (R12)(R13*1)
	ADDQ    $32, R13
	CMPQ    R13, R11
	JLT     ratioVec
	INCQ    BX
	JMP     ratioChan

ratioDone:
	VZEROUPPER
	RET

// func lrnDxAsm(dx, dy, x, scratch []float32, hw, c, half, n, c0, c1 int, coef float32, relu bool)
//
// dx = float32(dy·p) − float32(coef·x)·Σ_window ratio for the channels
// c0…c1−1, ANDed with (x > 0) | Q, Q = all ones without the fused ReLU:
// the second loop of lrnBackwardGo.
TEXT ·lrnDxAsm(SB), NOSPLIT, $0-149
	CONSTS(relu+148(FP))
	NOTL CX
	MOVL CX, AX
	BCAST(X9, Y9) // Q
	VBROADCASTSS coef+144(FP), Y8
	MOVQ hw+96(FP), R8
	SHLQ $2, R8
	MOVQ n+120(FP), R11
	SHLQ $2, R11
	MOVQ c0+128(FP), BX

dxChan:
	CMPQ BX, c1+136(FP)
	JGE  dxDone
	WINQ(half+112(FP), c+104(FP)) // AX = lo, DX = hi − lo
	SHLQ  $ROWSHIFT, DX // bytes from ratio[lo] to ratio[hi]
	ADDQ  c+104(FP), AX
	SHLQ  $ROWSHIFT, AX
	ADDQ  scratch_base+72(FP), AX // ratio[lo]
	MOVQ  BX, R12
	SHLQ  $ROWSHIFT, R12
	ADDQ  scratch_base+72(FP), R12 // p[c]
	MOVQ  BX, R9
	IMULQ R8, R9
	MOVQ  R9, R10
	MOVQ  R9, DI
	ADDQ  dx_base+0(FP), DI
	ADDQ  dy_base+24(FP), R9
	ADDQ  x_base+48(FP), R10
	XORQ  R13, R13

dxVec:
	LEAQ    (AX)(R13*1), CX
	VMOVUPS (CX), Y2 // sum = ratio[lo]
	XORQ    SI, SI

dxWin:
	CMPQ   SI, DX
	JGE    dxSum
	ADDQ   $ROWBYTES, SI
	VADDPS (CX)(SI*1), Y2, Y2
	JMP    dxWin

dxSum:
	VMOVUPS (R9)(R13*1), Y0
	VMULPS  (R12)(R13*1), Y0, Y0 // dy·p
	VMOVUPS (R10)(R13*1), Y1
	IN(Y1, Y3)
	VMULPS  Y1, Y8, Y3 // coef·x
	VMULPS  Y2, Y3, Y3 // ·sum
	VSUBPS  Y3, Y0, Y0
	VCMPPS  $0x1e, Y14, Y1, Y4 // x > Z (GT_OQ): x > 0 with the ReLU
	VORPS   Y9, Y4, Y4
	VANDPS  Y4, Y0, Y0
	VMOVUPS Y0, (DI)(R13*1)
	ADDQ    $32, R13
	CMPQ    R13, R11
	JLT     dxVec
	INCQ    BX
	JMP     dxChan

dxDone:
	VZEROUPPER
	RET

// func lrnBothAsm(dx, dy, x, y, scratch []float32, hw, c, n, c0, c1 int, k, alpha, coef float32, relu bool)
//
// For Size 5 (half = 2) and channels c = c0…c1−1 whose windows, and
// those of c−2, lie inside 0…C−1 (4 ≤ c ≤ C−3): lrnRatioAsm's work for c
// and lrnDxAsm's for c−2 in one loop, so that the latter's loads,
// products and stores go while the divider works on the former (done
// apart, the two loops take the time of both). c−2's window of ratios is
// c−4…c, the last just computed; its x is the first row of c's window.
// The rows of a window are 0, S, 2S, 3S and 4S bytes on (S = 4·hw): the
// scaled index registers address them from one pointer.
TEXT ·lrnBothAsm(SB), NOSPLIT, $0-173
	CONSTS(relu+172(FP))
	NOTL CX
	MOVL CX, AX
	BCAST(X9, Y9) // Q
	VBROADCASTSS k+160(FP), Y10
	VBROADCASTSS alpha+164(FP), Y11
	VBROADCASTSS coef+168(FP), Y8
	MOVQ hw+120(FP), R8
	SHLQ $2, R8          // S
	LEAQ (R8)(R8*2), R12 // 3S
	MOVQ n+136(FP), R11
	SHLQ $2, R11
	MOVQ c0+144(FP), BX

bothChan:
	CMPQ  BX, c1+152(FP)
	JGE   bothDone
	MOVQ  BX, AX
	SUBQ  $2, AX
	IMULQ R8, AX
	MOVQ  AX, R9
	MOVQ  AX, R10
	ADDQ  x_base+48(FP), AX   // &x[(c−2)·hw], moved on with the vectors
	ADDQ  dy_base+24(FP), R9  // &dy[(c−2)·hw]
	ADDQ  dx_base+0(FP), R10  // &dx[(c−2)·hw]
	MOVQ  BX, DI
	IMULQ R8, DI
	MOVQ  DI, DX
	ADDQ  dy_base+24(FP), DI // &dy[c·hw]
	ADDQ  y_base+72(FP), DX  // &y[c·hw]
	MOVQ  BX, SI
	SHLQ  $ROWSHIFT, SI
	ADDQ  scratch_base+96(FP), SI // p[c]
	MOVQ  BX, CX
	SUBQ  $4, CX
	ADDQ  c+128(FP), CX
	SHLQ  $ROWSHIFT, CX
	ADDQ  scratch_base+96(FP), CX // ratio[c−4]
	XORQ  R13, R13

bothVec:
	VMOVUPS (AX), Y7 // lrnIn(x[c−2]): c's first square, c−2's x
	IN(Y7, Y1)
	VMULPS  Y7, Y7, Y2
	VANDPS  lrnAbs<>(SB), Y2, Y2
	SQ((AX)(R8*1), Y0)
	VADDPS  Y0, Y2, Y2
	SQ((AX)(R8*2), Y0)
	VADDPS  Y0, Y2, Y2
	SQ((AX)(R12*1), Y0)
	VADDPS  Y0, Y2, Y2
	SQ((AX)(R8*4), Y0)
	VADDPS  Y0, Y2, Y2
	SCALE
	VMOVUPS (DI)(R13*1), Y0
	VMULPS  (DX)(R13*1), Y0, Y0 // dy·y
	VMULPS  Y3, Y0, Y0          // ratio[c] = ·inv
	VMOVUPS (CX)(R13*1), Y5     // Σ ratio[c−4…c]
	VADDPS  ROWBYTES(CX)(R13*1), Y5, Y5
	VADDPS  2*ROWBYTES(CX)(R13*1), Y5, Y5
	VADDPS  3*ROWBYTES(CX)(R13*1), Y5, Y5
	VADDPS  Y0, Y5, Y5
	VMOVUPS (R9)(R13*1), Y6
	VMULPS  -2*ROWBYTES(SI)(R13*1), Y6, Y6 // dy·p of c−2
	VMULPS  Y7, Y8, Y1 // coef·x
	VMULPS  Y5, Y1, Y1 // ·sum
	VSUBPS  Y1, Y6, Y6
	VCMPPS  $0x1e, Y14, Y7, Y1
	VORPS   Y9, Y1, Y1
	VANDPS  Y1, Y6, Y6
	VMOVUPS Y4, (SI)(R13*1)
	VMOVUPS Y0, 4*ROWBYTES(CX)(R13*1)
	VMOVUPS Y6, (R10)(R13*1)
	ADDQ    $32, AX
	ADDQ    $32, R13
	CMPQ    R13, R11
	JLT     bothVec
	INCQ    BX
	JMP     bothChan

bothDone:
	VZEROUPPER
	RET
