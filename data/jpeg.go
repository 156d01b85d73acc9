package data

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/ebitengine/purego"

	"github.com/alexnet-go/trainer/internal/native"
)

// TurboJPEGEnv names the environment variable that, when set, is the only
// path tried for libjpeg-turbo's TurboJPEG library; if it cannot be loaded,
// the package decodes JPEG with the standard library's image/jpeg.
const TurboJPEGEnv = "ALEXNET_TURBOJPEG"

// turboNames are the libraries tried, in order, when TurboJPEGEnv is unset.
// Debian's libturbojpeg0 ships libturbojpeg.so.0; libjpeg-turbo 3.x keeps
// that soname and the 2.x functions bound here.
var turboNames = []string{"libturbojpeg.so.0", "libturbojpeg.so"}

// jpegDecoder is a loaded JPEG decoder: libjpeg-turbo when tj is not nil,
// image/jpeg otherwise.
type jpegDecoder struct {
	desc string
	tj   *turboLib
}

var (
	jpegOnce     sync.Once
	jpegDecoder0 *jpegDecoder
)

// loadedJPEG loads the process's JPEG decoder once.
func loadedJPEG() *jpegDecoder {
	jpegOnce.Do(func() { jpegDecoder0 = loadJPEG(os.Getenv(TurboJPEGEnv)) })
	return jpegDecoder0
}

// JPEGDecoder describes the JPEG decoder DecodeJPEG uses, e.g.
// "libjpeg-turbo TurboJPEG 2.x (/usr/lib/x86_64-linux-gnu/libturbojpeg.so.0.2.0)"
// or, without it, "image/jpeg (libturbojpeg not found: …)" with the loader's
// message. It loads the library on first call.
func JPEGDecoder() string { return loadedJPEG().desc }

// loadJPEG loads override if it is not empty, else the first of turboNames
// that loads, else falls back to image/jpeg.
func loadJPEG(override string) *jpegDecoder {
	tj, err := native.First(turboNames, TurboJPEGEnv, override, "libturbojpeg not found", openTurboJPEG)
	if err != nil {
		return goJPEG(err.Error())
	}
	return &jpegDecoder{desc: tj.desc, tj: tj}
}

// goJPEG is the standard library's decoder, the fallback; why says why
// libjpeg-turbo is not in use.
func goJPEG(why string) *jpegDecoder {
	return &jpegDecoder{desc: "image/jpeg (" + why + ")"}
}

// TurboJPEG 2.x enumerations (turbojpeg.h).
const (
	tjpfRGBA = 7 // TJPF_RGBA: R, G, B, A bytes; A is 0xFF on decompression
	tjpfGray = 6 // TJPF_GRAY

	tjcsRGB   = 0 // TJCS_RGB: no colour transform
	tjcsYCbCr = 1 // TJCS_YCbCr
	tjcsGray  = 2 // TJCS_GRAY

	tjerrWarning = 0 // TJERR_WARNING

	tjflagFastUpsample  = 256   // TJFLAG_FASTUPSAMPLE: nearest chroma upsampling, as image/jpeg
	tjflagStopOnWarning = 8192  // TJFLAG_STOPONWARNING
	tjflagLimitScans    = 32768 // TJFLAG_LIMITSCANS: refuse progressive images of over 500 scans
)

// turboLib is libjpeg-turbo's TurboJPEG 2.x API, bound with purego.
type turboLib struct {
	desc string

	initDecompress func() uintptr
	// tjDecompressHeader3(handle, jpegBuf, jpegSize, &width, &height,
	// &jpegSubsamp, &jpegColorspace); jpegSize is an unsigned long.
	decompressHeader3 func(h uintptr, buf *byte, size uint64, width, height, subsamp, colorspace *int32) int32
	// tjDecompress2(handle, jpegBuf, jpegSize, dstBuf, width, pitch,
	// height, pixelFormat, flags).
	decompress2 func(h uintptr, buf *byte, size uint64, dst *byte, width, pitch, height, pixelFormat, flags int32) int32
	errorStr    func(h uintptr) string // tjGetErrorStr2, or tjGetErrorStr ignoring h
	errorCode   func(h uintptr) int32  // tjGetErrorCode; nil before TurboJPEG 2.0
	destroy     func(h uintptr) int32

	handles sync.Pool // of *turboHandle
}

// turboHandle is a decompressor instance. A handle is used by one goroutine
// at a time (the pool hands each to one caller) and destroyed when the pool
// drops it.
type turboHandle struct {
	h       uintptr
	cleanup runtime.Cleanup // tjDestroy once th is unreachable
}

// openTurboJPEG binds the TurboJPEG decompression functions of the shared
// library name. A missing function is an error, not a panic.
func openTurboJPEG(name string) (*turboLib, error) {
	lib, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("dlopen: %v", err)
	}
	tj := &turboLib{}
	var errs []string
	bind := func(fptr any, sym string) uintptr {
		p, err := purego.Dlsym(lib, sym)
		if err != nil {
			errs = append(errs, fmt.Sprintf("dlsym(%s): %v", sym, err))
			return 0
		}
		purego.RegisterFunc(fptr, p)
		return p
	}
	sym := bind(&tj.initDecompress, "tjInitDecompress")
	bind(&tj.decompressHeader3, "tjDecompressHeader3")
	bind(&tj.decompress2, "tjDecompress2")
	bind(&tj.destroy, "tjDestroy")
	if _, err := purego.Dlsym(lib, "tjGetErrorStr2"); err == nil {
		bind(&tj.errorStr, "tjGetErrorStr2")
	} else {
		// Before TurboJPEG 2.0: one message for the process (thread-local
		// in later builds), read right after the failed call.
		var errorStr func() string
		if bind(&errorStr, "tjGetErrorStr") != 0 {
			tj.errorStr = func(uintptr) string { return errorStr() }
		}
	}
	if _, err := purego.Dlsym(lib, "tjGetErrorCode"); err == nil {
		bind(&tj.errorCode, "tjGetErrorCode")
	}
	if len(errs) > 0 {
		purego.Dlclose(lib)
		return nil, errors.New(strings.Join(errs, "; "))
	}
	api := "2.x"
	if _, err := purego.Dlsym(lib, "tj3Init"); err == nil {
		api = "3.x"
	} else if tj.errorCode == nil {
		api = "1.x"
	}
	tj.desc = "libjpeg-turbo TurboJPEG " + api + " (" + native.MappedPath(sym, name) + ")"
	return tj, nil
}

// handle returns a decompressor from the pool or a new one.
func (tj *turboLib) handle() (*turboHandle, error) {
	if th, ok := tj.handles.Get().(*turboHandle); ok {
		return th, nil
	}
	runtime.LockOSThread()
	h := tj.initDecompress()
	var msg string
	if h == 0 {
		msg = tj.errorStr(0)
	}
	runtime.UnlockOSThread()
	if h == 0 {
		return nil, fmt.Errorf("data: libjpeg-turbo: tjInitDecompress: %s", msg)
	}
	th := &turboHandle{h: h}
	th.cleanup = runtime.AddCleanup(th, func(h uintptr) { tj.destroy(h) }, h)
	return th, nil
}

// drop destroys th now.
func (tj *turboLib) drop(th *turboHandle) {
	th.cleanup.Stop()
	tj.destroy(th.h)
}

// turboResult is the outcome of one TurboJPEG call that returned -1.
type turboResult struct {
	msg     string
	warning bool // a libjpeg warning, not an error, set the return
}

// call runs f, which calls into the library with handle h and returns its
// result, and on failure reads the message. The thread is locked because
// libjpeg's own messages go to a thread-local buffer, not to the handle.
func (tj *turboLib) call(h uintptr, f func() int32) (ok bool, res turboResult) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if f() == 0 {
		return true, res
	}
	res.msg = strings.TrimSpace(tj.errorStr(h))
	res.warning = tj.errorCode != nil && tj.errorCode(h) == tjerrWarning
	return false, res
}

// jpegError is an error of DecodeJPEG. It wraps ErrFormat and, for a
// truncated image, io.ErrUnexpectedEOF.
type jpegError struct {
	problem string // "truncated JPEG image (…)", "corrupt JPEG image: …"
	err     error  // the underlying error, if any
}

func (e *jpegError) Error() string { return "data: " + e.problem }

func (e *jpegError) Unwrap() []error {
	if e.err == nil {
		return []error{ErrFormat}
	}
	return []error{ErrFormat, e.err}
}

// errJPEGFallback says that libjpeg-turbo cannot decode an image to RGB
// (CMYK, an odd subsampling) and image/jpeg should.
var errJPEGFallback = errors.New("use image/jpeg")

// truncatedMsg is libjpeg's JWRN_JPEG_EOF: the data ended before the image.
const truncatedMsg = "Premature end of JPEG file"

// DecodeJPEG decodes a JPEG image with libjpeg-turbo when it is loaded (see
// JPEGDecoder) and with image/jpeg otherwise. It is safe for concurrent use.
//
// With libjpeg-turbo, colour images (YCbCr or RGB) are returned as
// *image.RGBA (opaque) and grayscale ones as *image.Gray, decoded with the
// accurate integer IDCT and smooth ("fancy") chroma upsampling, libjpeg's
// defaults and so what PIL-based pipelines see; CMYK and YCCK images,
// which TurboJPEG cannot convert to RGB, are decoded by image/jpeg, as are
// any it cannot determine the subsampling of. image/jpeg returns
// *image.YCbCr, *image.Gray or *image.CMYK. The pixels of the two decoders
// differ by a few levels (their IDCTs and upsampling differ).
//
// Errors wrap ErrFormat: "not a JPEG image", "truncated JPEG image (…)"
// (which also wraps io.ErrUnexpectedEOF), "corrupt JPEG image: …" with the
// decoder's message, and images of more than 2^27 pixels, refused before
// they are decoded. Like image/jpeg and libjpeg's own tools, libjpeg-turbo
// accepts an image whose damage libjpeg recovers from with a warning
// (extraneous bytes before a marker, say), except a truncated one.
func DecodeJPEG(b []byte) (image.Image, error) {
	return loadedJPEG().decode(b)
}

// decode is DecodeJPEG with d.
func (d *jpegDecoder) decode(b []byte) (image.Image, error) {
	if !isJPEG(b) {
		if len(b) == 0 {
			return nil, &jpegError{problem: "empty input, want a JPEG image"}
		}
		return nil, &jpegError{problem: "not a JPEG image" + describeImageMagic(b), err: image.ErrFormat}
	}
	if d.tj != nil {
		img, err := d.tj.decode(b, 0)
		if err != errJPEGFallback {
			return img, err
		}
	}
	return decodeGoJPEG(b)
}

// isJPEG reports whether b starts as a JPEG file does: SOI and a marker.
func isJPEG(b []byte) bool {
	return len(b) >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff
}

// checkJPEGSize refuses an image of w×h pixels unless it has 1 to
// maxImagePixels pixels, before its pixels are allocated.
func checkJPEGSize(w, h int) error {
	if w <= 0 || h <= 0 || w > maxImagePixels/h {
		return &jpegError{problem: fmt.Sprintf("JPEG image of %d×%d pixels: want 1 to %d pixels", w, h, maxImagePixels)}
	}
	return nil
}

// decodeGoJPEG decodes b with image/jpeg.
func decodeGoJPEG(b []byte) (image.Image, error) {
	// image/jpeg reports data that ends in the entropy-coded segment as
	// "short Huffman data"; reading past the end is what says truncated.
	br := bytes.NewReader(b)
	r := &eofReader{r: br}
	bad := func(err error) error {
		if r.eof || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return &jpegError{problem: "truncated JPEG image (image/jpeg: " + err.Error() + ")", err: io.ErrUnexpectedEOF}
		}
		return &jpegError{problem: "corrupt JPEG image: image/jpeg: " + err.Error(), err: err}
	}
	cfg, err := jpeg.DecodeConfig(r)
	if err != nil {
		return nil, bad(err)
	}
	if err := checkJPEGSize(cfg.Width, cfg.Height); err != nil {
		return nil, err
	}
	br.Reset(b)
	img, err := jpeg.Decode(r)
	if err != nil {
		return nil, bad(err)
	}
	return img, nil
}

// decode decodes b, which starts as a JPEG does, with TurboJPEG flags
// (besides TJFLAG_STOPONWARNING, which it sets itself), or returns
// errJPEGFallback for an image that image/jpeg should decode.
func (tj *turboLib) decode(b []byte, flags int32) (image.Image, error) {
	th, err := tj.handle()
	if err != nil {
		return nil, err
	}
	img, err := tj.decodeWith(th.h, b, flags)
	if err != nil && err != errJPEGFallback {
		// The library resets a handle after most errors but not all (an
		// error in the header leaves it mid-header): start afresh.
		tj.drop(th)
		return nil, err
	}
	tj.handles.Put(th)
	return img, err
}

// decodeWith decodes b with handle h and flags.
func (tj *turboLib) decodeWith(h uintptr, b []byte, flags int32) (image.Image, error) {
	corrupt := func(res turboResult) error {
		if strings.Contains(res.msg, truncatedMsg) || (res.warning && jpegMissingEOI(b)) || goTruncated(b) {
			return &jpegError{problem: "truncated JPEG image (libjpeg-turbo: " + res.msg + ")", err: io.ErrUnexpectedEOF}
		}
		return &jpegError{problem: "corrupt JPEG image: libjpeg-turbo: " + res.msg, err: errors.New(res.msg)}
	}
	var width, height, subsamp, colorspace int32
	ok, res := tj.call(h, func() int32 {
		return tj.decompressHeader3(h, &b[0], uint64(len(b)), &width, &height, &subsamp, &colorspace)
	})
	switch {
	case ok && (width < 1 || height < 1):
		// jpeg_read_header's JPEG_HEADER_TABLES_ONLY.
		return nil, corrupt(turboResult{msg: "no image, only tables"})
	case ok, res.warning && width > 0 && height > 0:
		// A warning in the header comes again, and is judged, in the
		// decompression.
	case width > 0 && height > 0:
		// The header was read, then TurboJPEG refused the subsampling or
		// colour space: libjpeg itself, and image/jpeg, may still cope.
		return nil, errJPEGFallback
	default:
		return nil, corrupt(res)
	}
	if err := checkJPEGSize(int(width), int(height)); err != nil {
		return nil, err
	}

	var img image.Image
	var pix []byte
	var pf, pitch int32
	switch colorspace {
	case tjcsGray:
		g := image.NewGray(image.Rect(0, 0, int(width), int(height)))
		img, pix, pf, pitch = g, g.Pix, tjpfGray, int32(g.Stride)
	case tjcsYCbCr, tjcsRGB:
		m := image.NewRGBA(image.Rect(0, 0, int(width), int(height)))
		img, pix, pf, pitch = m, m.Pix, tjpfRGBA, int32(m.Stride)
	default:
		// CMYK and YCCK: TurboJPEG decodes them only to CMYK, and
		// image/jpeg knows Adobe's inverted CMYK.
		return nil, errJPEGFallback
	}
	decompress := func(more int32) func() int32 {
		return func() int32 {
			return tj.decompress2(h, &b[0], uint64(len(b)), &pix[0], width, pitch, height, pf, flags|more|tjflagLimitScans)
		}
	}
	// Strict first, so that the first warning stops the decoder and its
	// message is the one reported; a fatal error after a warning would
	// otherwise look like the warning.
	ok, res = tj.call(h, decompress(tjflagStopOnWarning))
	if ok {
		return img, nil
	}
	if tj.errorCode == nil || !res.warning || strings.Contains(res.msg, truncatedMsg) {
		return nil, corrupt(res)
	}
	// A warning that libjpeg recovers from (extraneous bytes, a bad
	// Huffman code): decode again, tolerating it. libjpeg formats only
	// its first warning, so the same message again means warnings alone;
	// any other is the fatal error that followed. A later "premature end"
	// would go unreported, so truncation is looked for first.
	if jpegMissingEOI(b) {
		return nil, &jpegError{problem: "truncated JPEG image (no EOI marker; libjpeg-turbo: " + res.msg + ")", err: io.ErrUnexpectedEOF}
	}
	ok, res2 := tj.call(h, decompress(0))
	if ok || (res2.warning && res2.msg == res.msg) {
		return img, nil
	}
	return nil, corrupt(res2)
}

// jpegMissingEOI reports whether b has no EOI marker after its last SOS
// marker, as a truncated file has none. Entropy-coded data cannot hold
// FF D9 (a data byte FF is stuffed as FF 00), so any FF D9 there is EOI.
func jpegMissingEOI(b []byte) bool {
	sos := bytes.LastIndex(b, []byte{0xff, 0xda})
	return sos < 0 || !bytes.Contains(b[sos:], []byte{0xff, 0xd9})
}

// goTruncated reports whether image/jpeg finds b's header truncated; it
// names the problem when libjpeg's message is of what the missing data
// left it with ("Bogus Huffman table definition", "JPEG datastream contains
// no image").
func goTruncated(b []byte) bool {
	r := &eofReader{r: bytes.NewReader(b)}
	_, err := jpeg.DecodeConfig(r)
	return err != nil && (r.eof || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF))
}

// decodeImageFast is DecodeImageFile with JPEG files, known by their magic
// bytes whatever their name, decoded by DecodeJPEG. Its errors are those of
// DecodeImageFile.
func decodeImageFast(path string) (image.Image, error) {
	b, err := os.ReadFile(path)
	if err != nil || !isJPEG(b) {
		// Missing, unreadable, a directory, or another format.
		return DecodeImageFile(path)
	}
	img, err := DecodeJPEG(b)
	if err != nil {
		var je *jpegError
		if errors.As(err, &je) {
			return nil, &FileError{Path: path, Problem: je.problem, Kind: ErrFormat, Err: je.err}
		}
		return nil, &FileError{Path: path, Problem: err.Error(), Kind: ErrFormat, Err: err}
	}
	return img, nil
}

// DecodeImage reads training images with libjpeg-turbo when it loads: on
// one core it decodes photographs 3.2–3.5× as fast as image/jpeg, and
// 3.5–4.5× counting image/jpeg's conversion of YCbCr to RGB, which Prepare
// does pixel by pixel (bench/results/jpeg-2026-11-27.md). Decoding is what
// preparing ImageNet spends its time on.
func init() {
	if loadedJPEG().tj != nil {
		DecodeImage = decodeImageFast
	}
}
