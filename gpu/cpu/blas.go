package cpu

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/ebitengine/purego"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/alexnet-go/trainer/internal/native"
)

// BLASEnv names the environment variable that, when set, is the only path
// tried for a CBLAS library (OpenBLAS or another); if it cannot be loaded,
// the package computes with gonum.
const BLASEnv = "ALEXNET_BLAS"

// blasNames are the libraries tried, in order, when BLASEnv is unset.
var blasNames = []string{"libopenblas.so.0", "libopenblas.so"}

// sgemmFunc is a single-threaded row-major GEMM,
// C = alpha·op(A)·op(B) + beta·C with op(A) m×k, op(B) k×n, C m×n.
// It is called only with m, n, k ≥ 1 and arguments checked by sgemm.
type sgemmFunc func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// blasLib is a loaded GEMM implementation.
type blasLib struct {
	desc   string
	sgemm  sgemmFunc
	handle uintptr // the dlopen handle; 0 for gonum
}

var (
	blasOnce sync.Once
	blasLib0 *blasLib
)

// loadedBLAS loads the process's BLAS library once.
func loadedBLAS() *blasLib {
	blasOnce.Do(func() { blasLib0 = loadBLAS(os.Getenv(BLASEnv)) })
	return blasLib0
}

// BLAS describes the GEMM implementation the package uses, e.g.
// "OpenBLAS 0.3.21 … (/usr/lib/…/libopenblasp-r0.3.21.so)" or, without
// OpenBLAS, "gonum (OpenBLAS not found: …)" with the loader's message.
// It loads the library on first call.
func BLAS() string { return loadedBLAS().desc }

// loadBLAS loads override if it is not empty, else the first of blasNames
// that loads, else falls back to gonum.
func loadBLAS(override string) *blasLib {
	lib, err := native.First(blasNames, BLASEnv, override, "OpenBLAS not found", openCBLAS)
	if err != nil {
		return gonumBLAS(err.Error())
	}
	return lib
}

// CBLAS enumerations.
const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
)

// openCBLAS binds cblas_sgemm from the shared library name and, when the
// library is OpenBLAS, sets it to one thread.
func openCBLAS(name string) (*blasLib, error) {
	h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("dlopen: %v", err)
	}
	sym, err := purego.Dlsym(h, "cblas_sgemm")
	if err != nil {
		purego.Dlclose(h)
		return nil, fmt.Errorf("dlsym(cblas_sgemm): %v", err)
	}
	// blasint is int32 in LP64 builds, which is what distributions ship.
	var cblasSgemm func(order, transA, transB, m, n, k int32, alpha float32, a *float32, lda int32, b *float32, ldb int32, beta float32, c *float32, ldc int32)
	purego.RegisterFunc(&cblasSgemm, sym)

	desc := "CBLAS"
	if p, err := purego.Dlsym(h, "openblas_get_config"); err == nil {
		var getConfig func() string
		purego.RegisterFunc(&getConfig, p)
		desc = strings.TrimSpace(getConfig())
		if !strings.HasPrefix(desc, "OpenBLAS") {
			desc = "OpenBLAS " + desc
		}
	}
	if p, err := purego.Dlsym(h, "openblas_set_num_threads"); err == nil {
		// The device splits work over its own goroutines; OpenBLAS
		// threads on top would oversubscribe the cores.
		var setNumThreads func(int32)
		purego.RegisterFunc(&setNumThreads, p)
		setNumThreads(1)
	} else {
		desc += ", threads not limited"
	}
	desc += " (" + native.MappedPath(sym, name) + ")"

	trans := func(t bool) int32 {
		if t {
			return cblasTrans
		}
		return cblasNoTrans
	}
	f := func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
		cblasSgemm(cblasRowMajor, trans(transA), trans(transB), int32(m), int32(n), int32(k),
			alpha, &a[0], int32(lda), &b[0], int32(ldb), beta, &c[0], int32(ldc))
	}
	return &blasLib{desc: desc, sgemm: f, handle: h}, nil
}

// gonumBLAS is gonum's pure-Go Sgemm, the fallback; why says why OpenBLAS
// is not in use.
func gonumBLAS(why string) *blasLib {
	return &blasLib{desc: "gonum (" + why + ")", sgemm: gonumSgemm}
}

// gonumTile bounds the blocks handed to gonum: it splits any product of
// four or more 64×64 blocks over GOMAXPROCS goroutines of its own, which
// would break the device's thread limit. 64×192 is three blocks.
const gonumTileM, gonumTileN = 64, 192

// gonumSgemm is an sgemmFunc that runs gonum's Sgemm tile by tile, each
// tile on the calling goroutine alone.
func gonumSgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := blas.NoTrans, blas.NoTrans
	if transA {
		ta = blas.Trans
	}
	if transB {
		tb = blas.Trans
	}
	var impl gonum.Implementation
	for i := 0; i < m; i += gonumTileM {
		mi := min(gonumTileM, m-i)
		ai := rowsFrom(a, i, lda, transA)
		for j := 0; j < n; j += gonumTileN {
			nj := min(gonumTileN, n-j)
			bj := rowsFrom(b, j, ldb, !transB)
			impl.Sgemm(ta, tb, mi, nj, k, alpha, ai, lda, bj, ldb, beta, c[i*ldc+j:], ldc)
		}
	}
}

// sgemm checks a row-major GEMM's arguments and runs it single-threaded
// with lib. Mismatched arguments are a programmer's mistake and panic:
// they would otherwise reach C code unchecked.
func sgemm(lib *blasLib, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		for i := range m {
			row := c[i*ldc : i*ldc+n]
			for j := range row {
				if beta == 0 {
					row[j] = 0
				} else {
					row[j] *= beta
				}
			}
		}
		return
	}
	lib.sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// checkGemm panics unless the matrices of a row-major GEMM fit their
// slices and leading dimensions, and the sizes fit CBLAS's int32.
func checkGemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	const maxInt32 = 1<<31 - 1
	for _, v := range [...]int{m, n, k, lda, ldb, ldc} {
		if v < 0 || v > maxInt32 {
			panic(fmt.Sprintf("cpu: sgemm: size %d out of range (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d)", v, m, n, k, lda, ldb, ldc))
		}
	}
	fits := func(name string, s []float32, rows, cols, ld int) {
		if ld < max(1, cols) {
			panic(fmt.Sprintf("cpu: sgemm: ld%s = %d < %d columns", name, ld, cols))
		}
		if rows > 0 && cols > 0 && len(s) < (rows-1)*ld+cols {
			panic(fmt.Sprintf("cpu: sgemm: %s holds %d values, %d×%d with stride %d needs %d", name, len(s), rows, cols, ld, (rows-1)*ld+cols))
		}
	}
	if transA {
		fits("a", a, k, m, lda)
	} else {
		fits("a", a, m, k, lda)
	}
	if transB {
		fits("b", b, n, k, ldb)
	} else {
		fits("b", b, k, n, ldb)
	}
	fits("c", c, m, n, ldc)
}

// Sgemm computes the row-major product C = alpha·op(A)·op(B) + beta·C, where
// op(A) is m×k (A is k×m when transA), op(B) is k×n (B is n×k when transB)
// and C is m×n, with leading dimensions lda, ldb, ldc as in CBLAS. It splits
// C into blocks of columns (of rows, when C is taller than wide) and spreads
// them over the device's threads. The blocks depend on the shape alone, so
// the result is the same, bit for bit, for any number of threads.
func (d *Device) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	d.gemm(d.flopThreads(2*int64(m)*int64(n)*int64(k)), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemm is Sgemm on t threads. Every GEMM of the package goes through it,
// so that a product gives the same bits whichever path computes it.
func (d *Device) gemm(t int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 || k == 0 {
		sgemm(d.blas, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if n >= m {
		tiles := d.gemmTiles(n)
		parallelFor(tiles, t, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				j0, j1 := i*n/tiles, (i+1)*n/tiles
				sgemm(d.blas, transA, transB, m, j1-j0, k, alpha, a, lda, rowsFrom(b, j0, ldb, !transB), ldb, beta, c[j0:], ldc)
			}
		})
		return
	}
	tiles := d.gemmTiles(m)
	parallelFor(tiles, t, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			i0, i1 := i*m/tiles, (i+1)*m/tiles
			sgemm(d.blas, transA, transB, i1-i0, n, k, alpha, rowsFrom(a, i0, lda, transA), lda, b, ldb, beta, c[i0*ldc:], ldc)
		}
	})
}

// maxTiles bounds how many blocks one product is split into, and so how
// many threads it can use.
const maxTiles = 16

// gemmTiles is the number of blocks Sgemm splits a dimension of size n
// into: a function of the shape alone, so that every thread count computes
// the same products and so the same bits. Blocks are about 1024 wide: a
// one-thread device pays for every block in packing and narrow panels
// (blocks of 128 cost the convolutions' products a quarter of their rate).
func (d *Device) gemmTiles(n int) int {
	return max(1, min(maxTiles, n/d.gemmTile))
}

// gemmTileWidth is the width of Sgemm's blocks; tests lower it (see
// Device.gemmTile).
const gemmTileWidth = 1024

// rowsFrom returns matrix a, stored row-major with leading dimension ld,
// from its row i on, or from its column i on when transposed: the operand
// of a GEMM on rows i… of op(a).
func rowsFrom(a []float32, i, ld int, transposed bool) []float32 {
	if transposed {
		return a[i:]
	}
	return a[i*ld:]
}
