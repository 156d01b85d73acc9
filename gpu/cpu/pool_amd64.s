#include "textflag.h"

// 3×3 max pooling with stride 2, a plane per call, eight output columns
// at a time. The window of output column j covers input columns 2j, 2j+1
// and 2j+2: from the sixteen values at columns 2j0 … 2j0+15 of a row,
//
//	A = columns 2j0 + (0…3 | 8…11)    B = columns 2j0 + (4…7 | 12…15)
//
// (two 128-bit halves each) give, with one VSHUFPS each, E = the even
// columns 2j and O = the odd columns 2j+1 of j = j0 … j0+7 in order; the
// same at 2j0+2 gives E2 = columns 2j+2. The last block of a row (fewer
// than eight windows left, or not two values to spare after column 2j0+16)
// loads through masks, so that no load leaves the row.

// poolMask: 24 set lanes then 24 clear; the eight lanes at
// poolMask<>+96−4n are set exactly below n.
DATA poolMask<>+0(SB)/8, $-1
DATA poolMask<>+8(SB)/8, $-1
DATA poolMask<>+16(SB)/8, $-1
DATA poolMask<>+24(SB)/8, $-1
DATA poolMask<>+32(SB)/8, $-1
DATA poolMask<>+40(SB)/8, $-1
DATA poolMask<>+48(SB)/8, $-1
DATA poolMask<>+56(SB)/8, $-1
DATA poolMask<>+64(SB)/8, $-1
DATA poolMask<>+72(SB)/8, $-1
DATA poolMask<>+80(SB)/8, $-1
DATA poolMask<>+88(SB)/8, $-1
DATA poolMask<>+96(SB)/8, $0
DATA poolMask<>+104(SB)/8, $0
DATA poolMask<>+112(SB)/8, $0
DATA poolMask<>+120(SB)/8, $0
DATA poolMask<>+128(SB)/8, $0
DATA poolMask<>+136(SB)/8, $0
DATA poolMask<>+144(SB)/8, $0
DATA poolMask<>+152(SB)/8, $0
DATA poolMask<>+160(SB)/8, $0
DATA poolMask<>+168(SB)/8, $0
DATA poolMask<>+176(SB)/8, $0
DATA poolMask<>+184(SB)/8, $0
GLOBL poolMask<>(SB), RODATA|NOPTR, $192

// LOADAB(R) loads A, B and the A, B of two columns on into Y0, Y1 and
// Y2, Y3 from the row at R (column 2j0).
#define LOADAB(R) \
	VMOVUPS (R), X0; VINSERTF128 $1, 32(R), Y0, Y0; \
	VMOVUPS 16(R), X1; VINSERTF128 $1, 48(R), Y1, Y1; \
	VMOVUPS 8(R), X2; VINSERTF128 $1, 40(R), Y2, Y2; \
	VMOVUPS 24(R), X3; VINSERTF128 $1, 56(R), Y3, Y3

// MLOADAB(R, T, M, V) is LOADAB(R) with the mask of each half read from
// T at the half's offset (T = MASKS(w − 2j0)), through the registers M
// and V.
#define MLOADAB(R, T, M, V) \
	VMOVUPS (T), M; VMASKMOVPS (R), M, X0; \
	VMOVUPS 32(T), M; VMASKMOVPS 32(R), M, V; VINSERTF128 $1, V, Y0, Y0; \
	VMOVUPS 16(T), M; VMASKMOVPS 16(R), M, X1; \
	VMOVUPS 48(T), M; VMASKMOVPS 48(R), M, V; VINSERTF128 $1, V, Y1, Y1; \
	VMOVUPS 8(T), M; VMASKMOVPS 8(R), M, X2; \
	VMOVUPS 40(T), M; VMASKMOVPS 40(R), M, V; VINSERTF128 $1, V, Y2, Y2; \
	VMOVUPS 24(T), M; VMASKMOVPS 24(R), M, X3; \
	VMOVUPS 56(T), M; VMASKMOVPS 56(R), M, V; VINSERTF128 $1, V, Y3, Y3

// MASKS(n, R) points R at the mask of n set lanes (n ≤ 24, clobbered).
#define MASKS(n, R) SHLQ $2, n; LEAQ poolMask<>+96(SB), R; SUBQ n, R

// MAXN(a, b, t) sets a to the negated max(−a, −b) of Go's builtin max on
// amd64 (see maxIntoAsm): on the negated values, maxima chain without
// negating in between.
#define MAXN(a, b, t) VMINPS b, a, t; VMINPS a, t, a; VORPS t, a, a

// NEGROW(R) loads, negated, columns 2j0 + 0…7, 8…15, 2…9 and 10…17 of
// the row at R into Y0…Y3; MNEGROW through the masks at BX.
#define NEGROW(R) \
	VXORPS (R), Y15, Y0; VXORPS 32(R), Y15, Y1; VXORPS 8(R), Y15, Y2; VXORPS 40(R), Y15, Y3
#define MNEG(off, R, V) VMOVUPS off(BX), Y12; VMASKMOVPS off(R), Y12, V; VXORPS Y15, V, V
#define MNEGROW(R) MNEG(0, R, Y0); MNEG(32, R, Y1); MNEG(8, R, Y2); MNEG(40, R, Y3)

// MAX3(ROW) sets Y0 to the eight window maxima of the rows at R8, R9,
// R10, loaded by ROW: the column maxima max(max(x0, x1), x2) first, then
// max(max(E, O), E2), the order of maxInto in columnMax and windowMax.
// The column maxima are spread to A, B and the A, B of two columns on
// before E, O and E2 are picked.
#define MAX3(ROW) \
	ROW(R8); \
	VMOVAPS Y0, Y4; VMOVAPS Y1, Y5; VMOVAPS Y2, Y6; VMOVAPS Y3, Y7; \
	ROW(R9); \
	MAXN(Y4, Y0, Y8); MAXN(Y5, Y1, Y9); MAXN(Y6, Y2, Y10); MAXN(Y7, Y3, Y11); \
	ROW(R10); \
	MAXN(Y4, Y0, Y8); MAXN(Y5, Y1, Y9); MAXN(Y6, Y2, Y10); MAXN(Y7, Y3, Y11); \
	VPERM2F128 $0x20, Y5, Y4, Y0; \
	VPERM2F128 $0x31, Y5, Y4, Y1; \
	VPERM2F128 $0x20, Y7, Y6, Y2; \
	VPERM2F128 $0x31, Y7, Y6, Y3; \
	VSHUFPS $0x88, Y1, Y0, Y4; \
	VSHUFPS $0xDD, Y1, Y0, Y5; \
	VSHUFPS $0x88, Y3, Y2, Y6; \
	MAXN(Y4, Y5, Y8); \
	MAXN(Y4, Y6, Y8); \
	VXORPS Y15, Y4, Y0

// func maxPool3Asm(y, x []float32, w, p, q int)
//
// y (p, q) = the maxima of x (2p+1 or 2p+2, w) over 3×3 windows every two
// pixels, as MaxPool's Go code computes them, bit for bit.
TEXT ·maxPool3Asm(SB), NOSPLIT, $0-72
	MOVL $0x80000000, AX // the sign bit
	VMOVD AX, X15
	VSHUFPS $0, X15, X15, X15
	VINSERTF128 $1, X15, Y15, Y15
	XORQ R12, R12 // i

poolRow:
	MOVQ q+64(FP), DI
	IMULQ R12, DI
	SHLQ $2, DI
	ADDQ y_base+0(FP), DI // y row i
	MOVQ w+48(FP), CX
	IMULQ R12, CX
	SHLQ $3, CX
	ADDQ x_base+24(FP), CX // x row 2i
	MOVQ w+48(FP), R11
	SHLQ $2, R11 // a row, in bytes
	XORQ R13, R13 // j0

poolBlock:
	CMPQ R13, q+64(FP)
	JGE  poolRowEnd
	LEAQ (CX)(R13*8), R8
	LEAQ (R8)(R11*1), R9
	LEAQ (R9)(R11*1), R10
	LEAQ 8(R13), AX
	CMPQ AX, q+64(FP)
	JGT  poolTail
	LEAQ 18(R13)(R13*1), AX
	CMPQ AX, w+48(FP)
	JGT  poolTail
	MAX3(NEGROW)
	VMOVUPS Y0, (DI)(R13*4)
	ADDQ $8, R13
	JMP  poolBlock

poolTail:
	MOVQ w+48(FP), AX
	SUBQ R13, AX
	SUBQ R13, AX
	MASKS(AX, BX)
	MAX3(MNEGROW)
	MOVQ q+64(FP), AX
	SUBQ R13, AX
	MASKS(AX, BX)
	VMOVUPS (BX), Y1
	VMASKMOVPS Y0, Y1, (DI)(R13*4)

poolRowEnd:
	INCQ R12
	CMPQ R12, p+56(FP)
	JLT  poolRow
	VZEROUPPER
	RET

// FIRST(v) handles one of a window's nine values, v (eight windows): the
// windows whose dy is still in Y13, the dy not yet given to an earlier
// value, and where v equals their maximum Y14 (ordered equality, as Go's
// ==) get it, the others 0, stored at AX; their dy leaves Y13, and AX
// moves on to the next array.
#define FIRST(v) \
	VCMPPS  $0, Y14, v, Y7; \
	VANDPS  Y13, Y7, Y8; \
	VANDNPS Y13, Y7, Y13; \
	VMOVUPS Y8, (AX); \
	ADDQ    R11, AX

// ROUTEROW(R) handles the three values in the row at R of eight windows;
// MROUTEROW through the masks at SI.
#define ROUTEROW(R) LOADAB(R); ROUTE3
#define MROUTEROW(R) MLOADAB(R, SI, X9, X10); ROUTE3
#define ROUTE3 \
	VSHUFPS $0x88, Y1, Y0, Y4; \
	VSHUFPS $0xDD, Y1, Y0, Y5; \
	VSHUFPS $0x88, Y3, Y2, Y6; \
	FIRST(Y4); FIRST(Y5); FIRST(Y6)

// ROUTEBODY(ROW) handles eight windows of the rows at R8, R9, R10 loaded
// by ROW, their maxima in Y14, their dy in Y13, the arrays at DI; the dy
// that no value took go to Y12.
#define ROUTEBODY(ROW) \
	MOVQ  DI, AX; \
	ROW(R8); \
	ROW(R9); \
	ROW(R10); \
	VORPS Y13, Y12, Y12

// func poolRouteAsm(m, x, y, dy []float32, w, p, q, l int) (miss int)
//
// For output (i, j) of a 3×3, stride 2 pooling of the plane x (2p+1 or
// 2p+2, w) with maxima y (p, q) and gradient dy (p, q), m[(9i+k)·l + j+1]
// is set to dy[i, j] if the window's k-th value in row-major order is the
// first to equal y[i, j], else to 0, for k = 0 … 8; lanes up to the next
// multiple of eight past q are set to 0. miss is nonzero if some window
// has no value equal to its maximum (a NaN, or a y that is not x's) and a
// dy with a bit set: a dy of ±0 adds nothing to a dx, which is never −0,
// wherever it goes.
TEXT ·poolRouteAsm(SB), NOSPLIT, $0-136
	MOVQ l+120(FP), R11
	SHLQ $2, R11 // from one of the nine arrays to the next, in bytes
	VXORPS Y12, Y12, Y12 // dy no value took
	XORQ R12, R12 // i

routeRow:
	LEAQ (R11)(R11*8), DI
	IMULQ R12, DI
	ADDQ m_base+0(FP), DI
	ADDQ $4, DI // m row i, index 1
	MOVQ q+112(FP), AX
	IMULQ R12, AX
	SHLQ $2, AX
	MOVQ y_base+48(FP), SI
	ADDQ AX, SI // y row i
	MOVQ dy_base+72(FP), DX
	ADDQ AX, DX // dy row i
	MOVQ w+96(FP), CX
	IMULQ R12, CX
	SHLQ $3, CX
	ADDQ x_base+24(FP), CX // x row 2i
	XORQ R13, R13 // j0

routeBlock:
	CMPQ R13, q+112(FP)
	JGE  routeRowEnd
	LEAQ 8(R13), AX
	CMPQ AX, q+112(FP)
	JGT  routeTail
	LEAQ 18(R13)(R13*1), AX
	CMPQ AX, w+96(FP)
	JGT  routeTail
	LEAQ (CX)(R13*8), R8
	MOVQ w+96(FP), AX
	LEAQ (R8)(AX*4), R9
	LEAQ (R9)(AX*4), R10
	VMOVUPS (SI), Y14
	VMOVUPS (DX), Y13
	ROUTEBODY(ROUTEROW)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	ADDQ $8, R13
	JMP  routeBlock

routeTail:
	MOVQ q+112(FP), AX
	SUBQ R13, AX
	MASKS(AX, R8)
	VMOVUPS (R8), Y15 // the windows left
	VMASKMOVPS (SI), Y15, Y14
	VMASKMOVPS (DX), Y15, Y13 // 0 past q: those lanes store 0, and miss nothing
	MOVQ w+96(FP), AX
	SUBQ R13, AX
	SUBQ R13, AX
	MASKS(AX, SI)
	LEAQ (CX)(R13*8), R8
	MOVQ w+96(FP), AX
	LEAQ (R8)(AX*4), R9
	LEAQ (R9)(AX*4), R10
	ROUTEBODY(MROUTEROW)

routeRowEnd:
	INCQ R12
	CMPQ R12, p+104(FP)
	JLT  routeRow
	XORQ AX, AX
	VPTEST Y12, Y12
	SETNE AL
	VZEROUPPER
	MOVQ AX, miss+128(FP)
	RET

// func poolScatterAsm(dx, m []float32, w, h, p, l int)
//
// dx (h, w), h = 2p+1 or 2p+2, is set from the arrays poolRouteAsm wrote
// one row on (m's row 0 and row p+1, the arrays of outputs −1 and p, all
// 0): each value is 0 plus, in row-major order of the windows, the dy of
// each window whose first maximum it is, as MaxPoolBackward's Go code
// adds them. Column 2j of input row 2i takes windows (i−1, j−1) k=8,
// (i−1, j) k=6, (i, j−1) k=2, (i, j) k=0; column 2j+1 windows (i−1, j)
// k=7, (i, j) k=1; of row 2i+1, column 2j windows (i, j−1) k=5, (i, j)
// k=3, column 2j+1 window (i, j) k=4. Adding a 0 changes nothing: a sum
// that starts at +0 is never −0. Each sum is dy + sum, as Go compiles
// dx[k] += dy (ADDSS of dx into dy): where both are NaNs, dy's stays.
TEXT ·poolScatterAsm(SB), NOSPLIT, $0-80
	MOVQ l+72(FP), R11
	SHLQ $2, R11
	VXORPS Y15, Y15, Y15
	XORQ BX, BX // i, 0 … p

scatterRow:
	LEAQ (R11)(R11*8), R12
	IMULQ BX, R12
	ADDQ m_base+24(FP), R12 // m row i: output row i−1
	LEAQ (R11)(R11*2), AX
	LEAQ (R12)(AX*2), R12 // its array 6
	LEAQ (R12)(AX*1), R9 // output row i's array 0
	LEAQ (R9)(AX*1), R13 // and 3
	MOVQ w+48(FP), AX
	SHLQ $2, AX
	MOVQ AX, DI
	IMULQ BX, DI
	SHLQ $1, DI
	ADDQ dx_base+0(FP), DI // dx row 2i
	LEAQ (DI)(AX*1), R10 // and 2i+1
	LEAQ 1(BX)(BX*1), DX // 2i+1: the row exists if below h
	MOVQ w+48(FP), CX // columns left

scatterBlock:
	VADDPS  (R12)(R11*2), Y15, Y0
	VMOVUPS 4(R12), Y4
	VADDPS  Y0, Y4, Y0
	VMOVUPS (R9)(R11*2), Y5
	VADDPS  Y0, Y5, Y0
	VMOVUPS 4(R9), Y6
	VADDPS  Y0, Y6, Y0 // row 2i, even columns
	VADDPS  4(R12)(R11*1), Y15, Y1
	VMOVUPS 4(R9)(R11*1), Y7
	VADDPS  Y1, Y7, Y1 // odd columns
	VADDPS  (R13)(R11*2), Y15, Y2
	VMOVUPS 4(R13), Y8
	VADDPS  Y2, Y8, Y2 // row 2i+1, even
	VADDPS  4(R13)(R11*1), Y15, Y3 // odd
	VUNPCKLPS Y1, Y0, Y4
	VUNPCKHPS Y1, Y0, Y5
	VPERM2F128 $0x20, Y5, Y4, Y8
	VPERM2F128 $0x31, Y5, Y4, Y9
	VUNPCKLPS Y3, Y2, Y6
	VUNPCKHPS Y3, Y2, Y7
	VPERM2F128 $0x20, Y7, Y6, Y10
	VPERM2F128 $0x31, Y7, Y6, Y11
	CMPQ CX, $16
	JLT  scatterTail
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 32(DI)
	CMPQ DX, h+56(FP)
	JGE  scatterNext
	VMOVUPS Y10, (R10)
	VMOVUPS Y11, 32(R10)

scatterNext:
	ADDQ $64, DI
	ADDQ $64, R10
	ADDQ $32, R12
	ADDQ $32, R9
	ADDQ $32, R13
	SUBQ $16, CX
	JNZ  scatterBlock
	JMP  scatterRowEnd

scatterTail:
	MASKS(CX, AX)
	VMOVUPS (AX), Y0
	VMOVUPS 32(AX), Y1
	VMASKMOVPS Y8, Y0, (DI)
	VMASKMOVPS Y9, Y1, 32(DI)
	CMPQ DX, h+56(FP)
	JGE  scatterRowEnd
	VMASKMOVPS Y10, Y0, (R10)
	VMASKMOVPS Y11, Y1, 32(R10)

scatterRowEnd:
	INCQ BX
	CMPQ BX, p+64(FP)
	JLE  scatterRow
	VZEROUPPER
	RET
