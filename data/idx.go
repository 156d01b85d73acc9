package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Sentinel errors, for errors.Is on the errors this package returns.
var (
	// ErrNotFound: a data directory or file does not exist.
	ErrNotFound = errors.New("data: not found")
	// ErrFormat: a file exists but is not a valid IDX file, or the files of a
	// data set do not agree with each other.
	ErrFormat = errors.New("data: bad data file")
)

// FileError is the error for a problem with one data file or directory. Its
// message is one line: "data: PATH: PROBLEM; HINT".
type FileError struct {
	Path    string // the file or directory
	Problem string // what is wrong with it
	Hint    string // what to do about it; may be empty
	Kind    error  // ErrNotFound or ErrFormat
	Err     error  // the underlying error (os, gzip), if any
}

// Error returns the one-line message.
func (e *FileError) Error() string {
	s := "data: " + e.Path + ": " + e.Problem
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

// Unwrap returns the sentinel kind and the underlying error.
func (e *FileError) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

const (
	// hintInstall is what to do when the data set is not there.
	hintInstall = "install Fashion-MNIST with `apt install dataset-fashion-mnist` or pass --data DIR"
	// hintCorrupt is what to do when a file is damaged.
	hintCorrupt = "the file is damaged or not an IDX file: replace it (for Fashion-MNIST `apt install --reinstall dataset-fashion-mnist`) or pass --data DIR"
)

func formatErr(path, hint string, err error, format string, args ...any) *FileError {
	return &FileError{Path: path, Problem: fmt.Sprintf(format, args...), Hint: hint, Kind: ErrFormat, Err: err}
}

// IDX magic numbers: two zero bytes, the element type (0x08, unsigned byte)
// and the number of dimensions.
const (
	imagesMagic = 0x00000803 // ubyte, 3 dimensions (N, H, W)
	labelsMagic = 0x00000801 // ubyte, 1 dimension (N)
)

// describeMagic says what a wrong magic number looks like, to make the error
// actionable.
func describeMagic(m uint32) string {
	switch {
	case m>>16 == 0x1f8b:
		return " (the file is gzip-compressed: give it a .gz name or decompress it)"
	case m == imagesMagic:
		return " (this is an image file)"
	case m == labelsMagic:
		return " (this is a label file)"
	case m>>16 == 0 && m>>8&0xff != 0x08:
		return fmt.Sprintf(" (IDX element type 0x%02x, only 0x08 unsigned byte is supported)", m>>8&0xff)
	}
	return ""
}

// ReadIDXImages reads an IDX3 image file (magic 0x00000803; header N, H, W as
// big-endian uint32; then N·H·W bytes) from r, and checks that r holds exactly
// that many bytes. name is used in error messages only. pix is (N, H, W).
//
// Memory is bounded by the bytes r actually delivers, not by the header: a
// hostile header claiming 2^31 images fails at the end of the data without
// allocating gigabytes first.
func ReadIDXImages(r io.Reader, name string) (n, h, w int, pix []uint8, err error) {
	var hdr [16]byte
	if k, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, 0, nil, shortHeader(name, "image", len(hdr), k, err)
	}
	magic := binary.BigEndian.Uint32(hdr[0:])
	if magic != imagesMagic {
		return 0, 0, 0, nil, formatErr(name, hintCorrupt, nil,
			"magic number 0x%08x, want 0x%08x for an IDX image file%s", magic, imagesMagic, describeMagic(magic))
	}
	un := uint64(binary.BigEndian.Uint32(hdr[4:]))
	uh := uint64(binary.BigEndian.Uint32(hdr[8:]))
	uw := uint64(binary.BigEndian.Uint32(hdr[12:]))
	if uh == 0 || uw == 0 {
		return 0, 0, 0, nil, formatErr(name, hintCorrupt, nil, "header says images of %d×%d: a dimension is zero", uh, uw)
	}
	hi1, hw := bits.Mul64(uh, uw)
	hi2, body := bits.Mul64(un, hw)
	if hi1 != 0 || hi2 != 0 || body > math.MaxInt-uint64(len(hdr)) {
		return 0, 0, 0, nil, formatErr(name, hintCorrupt, nil,
			"header says %d images of %d×%d: too large to be real", un, uh, uw)
	}
	pix, err = readBody(r, int(body))
	if err != nil {
		return 0, 0, 0, nil, bodyErr(name, fmt.Sprintf("%d images of %d×%d", un, uh, uw), len(hdr), int(body), len(pix), err)
	}
	if err := checkEnd(r, name, fmt.Sprintf("%d images of %d×%d", un, uh, uw), len(hdr), int(body)); err != nil {
		return 0, 0, 0, nil, err
	}
	return int(un), int(uh), int(uw), pix, nil
}

// ReadIDXLabels reads an IDX1 label file (magic 0x00000801; header N as a
// big-endian uint32; then N bytes) from r, and checks that r holds exactly
// that many bytes. name is used in error messages only. Label values are not
// range-checked here: LoadIDX checks them against the class names.
func ReadIDXLabels(r io.Reader, name string) (labels []int, err error) {
	var hdr [8]byte
	if k, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, shortHeader(name, "label", len(hdr), k, err)
	}
	magic := binary.BigEndian.Uint32(hdr[0:])
	if magic != labelsMagic {
		return nil, formatErr(name, hintCorrupt, nil,
			"magic number 0x%08x, want 0x%08x for an IDX label file%s", magic, labelsMagic, describeMagic(magic))
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if uint64(n) > math.MaxInt-uint64(len(hdr)) {
		return nil, formatErr(name, hintCorrupt, nil, "header says %d labels: too large to be real", n)
	}
	raw, err := readBody(r, int(n))
	if err != nil {
		return nil, bodyErr(name, fmt.Sprintf("%d labels", n), len(hdr), int(n), len(raw), err)
	}
	if err := checkEnd(r, name, fmt.Sprintf("%d labels", n), len(hdr), int(n)); err != nil {
		return nil, err
	}
	labels = make([]int, len(raw))
	for i, v := range raw {
		labels[i] = int(v)
	}
	return labels, nil
}

// readBody reads want bytes from r. It grows its buffer as bytes arrive
// (doubling from 64 KiB), so a header that lies about the size cannot make it
// allocate more than about twice what r really holds. On error it returns the
// bytes read so far.
func readBody(r io.Reader, want int) ([]byte, error) {
	buf := make([]byte, 0, min(want, 64<<10))
	stalls := 0
	for len(buf) < want {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(want, 2*cap(buf)))
			copy(nb, buf)
			buf = nb
		}
		k, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err == io.EOF && len(buf) == want {
			break
		}
		if err != nil {
			return buf, err
		}
		if k == 0 {
			if stalls++; stalls > 100 {
				return buf, io.ErrNoProgress
			}
		} else {
			stalls = 0
		}
	}
	return buf, nil
}

// sizeWord names what a size was measured on: for a .gz file, the
// decompressed content.
func sizeWord(name string) string {
	if strings.HasSuffix(name, ".gz") {
		return "decompressed file"
	}
	return "file"
}

func shortHeader(name, kind string, want, got int, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if got == 0 {
			return formatErr(name, hintCorrupt, nil, "empty file, want an IDX %s file", kind)
		}
		return formatErr(name, hintCorrupt, nil,
			"truncated: %s has %d bytes, an IDX %s file's header alone is %d", sizeWord(name), got, kind, want)
	}
	return readErr(name, got, err)
}

func bodyErr(name, what string, hdr, want, got int, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return formatErr(name, hintCorrupt, nil, "truncated: header says %s (%d bytes), %s has %d bytes",
			what, hdr+want, sizeWord(name), hdr+got)
	}
	return readErr(name, hdr+got, err)
}

func readErr(name string, at int, err error) error {
	return formatErr(name, hintCorrupt, err, "read error after %d bytes: %v", at, err)
}

// checkEnd checks that r has nothing after the data. Reading to the end also
// makes a gzip reader verify its checksum.
func checkEnd(r io.Reader, name, what string, hdr, want int) error {
	extra, err := io.Copy(io.Discard, r)
	if err != nil {
		return readErr(name, hdr+want+int(extra), err)
	}
	if extra > 0 {
		return formatErr(name, hintCorrupt, nil, "header says %s (%d bytes), %s has %d bytes",
			what, hdr+want, sizeWord(name), int64(hdr+want)+extra)
	}
	return nil
}

// The four files of an IDX data set, each in its usual spellings; LoadIDX
// also accepts each with a .gz suffix.
var idxFiles = [4][2]string{
	{"train-images-idx3-ubyte", "train-images.idx3-ubyte"},
	{"train-labels-idx1-ubyte", "train-labels.idx1-ubyte"},
	{"t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"},
	{"t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"},
}

// FashionClasses are the names of Fashion-MNIST's ten classes, by label.
var FashionClasses = []string{
	"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
	"Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
}

// DigitClasses are the names of MNIST's ten classes, by label.
var DigitClasses = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

// findFile returns the first of a file's spellings that exists in dir:
// plain before .gz, the dash spelling before the dot spelling.
func findFile(dir string, spellings [2]string, what string) (string, error) {
	var tried []string
	for _, s := range spellings {
		for _, ext := range []string{"", ".gz"} {
			p := filepath.Join(dir, s+ext)
			st, err := os.Stat(p)
			if err == nil && st.Mode().IsRegular() {
				return p, nil
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", &FileError{Path: p, Problem: err.Error(), Hint: "check its permissions or pass --data DIR", Kind: ErrNotFound, Err: err}
			}
			tried = append(tried, s+ext)
		}
	}
	return "", &FileError{
		Path:    filepath.Join(dir, spellings[0]),
		Problem: fmt.Sprintf("no %s file (looked for %s)", what, strings.Join(tried, ", ")),
		Hint:    hintInstall,
		Kind:    ErrNotFound,
		Err:     os.ErrNotExist,
	}
}

// openIDX opens path and, if its content is gzip-compressed (whatever its
// name), a gzip reader over it. close releases both.
func openIDX(path string) (r io.Reader, close func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, &FileError{Path: path, Problem: err.Error(), Hint: hintInstall, Kind: ErrNotFound, Err: err}
	}
	br := bufio.NewReaderSize(f, 1<<20)
	if m, _ := br.Peek(2); len(m) == 2 && m[0] == 0x1f && m[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, nil, formatErr(path, hintCorrupt, err, "bad gzip header: %v", err)
		}
		return zr, func() { zr.Close(); f.Close() }, nil
	}
	if strings.HasSuffix(path, ".gz") {
		f.Close()
		return nil, nil, formatErr(path, hintCorrupt, gzip.ErrHeader, "named .gz but not gzip-compressed")
	}
	return br, func() { f.Close() }, nil
}

// readClasses returns the class names for the data set in dir: the lines of
// dir/classes.txt if it exists, else FashionClasses if the directory's path
// contains "fashion", else DigitClasses.
func readClasses(dir string) ([]string, error) {
	p := filepath.Join(dir, "classes.txt")
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		var names []string
		for line := range strings.Lines(string(b)) {
			if s := strings.TrimSpace(line); s != "" {
				names = append(names, s)
			}
		}
		if len(names) == 0 {
			return nil, formatErr(p, "write one class name per line, in label order, or delete the file", nil, "no class names")
		}
		return names, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, &FileError{Path: p, Problem: err.Error(), Hint: "check its permissions", Kind: ErrFormat, Err: err}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	if strings.Contains(strings.ToLower(abs), "fashion") {
		return FashionClasses, nil
	}
	return DigitClasses, nil
}

// LoadIDX reads an MNIST-style data set from dir: the training and test
// images and labels (train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; each also accepted with
// ".idx" for "-idx" and with a .gz suffix, plain preferred; compressed
// content is recognised whatever the name). The test set is the validation
// set: nothing else is held out.
//
// Class names come from dir/classes.txt (one per line, in label order) if
// present, else FashionClasses if the directory's path contains "fashion",
// else DigitClasses. Everything is checked: magic numbers, dimensions, file
// lengths against their headers, image and label counts, label values against
// the classes, and the test images' size against the training images'.
// Errors are *FileError, one line naming the file, and wrap ErrNotFound or
// ErrFormat.
func LoadIDX(dir string) (train, test *Set, err error) {
	sets, err := loadIDX(dir, []int{0, 1})
	if err != nil {
		return nil, nil, err
	}
	if sets[1].H != sets[0].H || sets[1].W != sets[0].W {
		p, _ := findFile(dir, idxFiles[2], "test images")
		q, _ := findFile(dir, idxFiles[0], "training images")
		return nil, nil, formatErr(p, "the training and test files come from different data sets: replace them with a matching set or pass --data DIR", nil,
			"test images are %d×%d, but training images (%s) are %d×%d", sets[1].H, sets[1].W, filepath.Base(q), sets[0].H, sets[0].W)
	}
	return sets[0], sets[1], nil
}

// LoadIDXTest reads only the test set of an MNIST-style data set, as
// LoadIDX does: scoring needs no training files.
func LoadIDXTest(dir string) (*Set, error) {
	sets, err := loadIDX(dir, []int{1})
	if err != nil {
		return nil, err
	}
	return sets[1], nil
}

// loadIDX reads the splits of dir that want names (0: train, 1: test),
// checked as LoadIDX says; the others stay nil.
func loadIDX(dir string, want []int) (sets [2]*Set, err error) {
	st, err := os.Stat(dir)
	if err != nil {
		problem := "data directory not found"
		if !errors.Is(err, os.ErrNotExist) {
			problem = err.Error()
		}
		return sets, &FileError{Path: dir, Problem: problem, Hint: hintInstall, Kind: ErrNotFound, Err: err}
	}
	if !st.IsDir() {
		return sets, &FileError{Path: dir, Problem: "not a directory", Hint: "pass the directory holding the IDX files with --data DIR", Kind: ErrNotFound}
	}
	classes, err := readClasses(dir)
	if err != nil {
		return sets, err
	}
	what := [4]string{"training images", "training labels", "test images", "test labels"}
	var paths [4]string
	for _, k := range want {
		for i := 2 * k; i < 2*k+2; i++ {
			if paths[i], err = findFile(dir, idxFiles[i], what[i]); err != nil {
				return sets, err
			}
		}
	}

	// The files decompress in parallel; errors are reported in file order
	// so the message does not depend on timing.
	type images struct {
		n, h, w int
		pix     []uint8
	}
	var (
		img  [2]images
		lab  [2][]int
		errs [4]error
		wg   sync.WaitGroup
	)
	for _, k := range want {
		wg.Go(func() {
			p := paths[2*k]
			r, done, err := openIDX(p)
			if err != nil {
				errs[2*k] = err
				return
			}
			defer done()
			img[k].n, img[k].h, img[k].w, img[k].pix, errs[2*k] = ReadIDXImages(r, p)
		})
		wg.Go(func() {
			p := paths[2*k+1]
			r, done, err := openIDX(p)
			if err != nil {
				errs[2*k+1] = err
				return
			}
			defer done()
			lab[k], errs[2*k+1] = ReadIDXLabels(r, p)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return sets, err
		}
	}

	base := filepath.Base(dir)
	for _, k := range want {
		name := [2]string{"train", "test"}[k]
		ip, lp := filepath.Base(paths[2*k]), paths[2*k+1]
		if img[k].n == 0 {
			return sets, formatErr(paths[2*k], hintCorrupt, nil, "header says 0 images")
		}
		if len(lab[k]) != img[k].n {
			return sets, formatErr(lp, "the image and label files do not belong together: replace them with a matching pair or pass --data DIR", nil,
				"%d labels, but %s has %d images", len(lab[k]), ip, img[k].n)
		}
		for i, l := range lab[k] {
			if l >= len(classes) {
				return sets, formatErr(lp, fmt.Sprintf("if the data set has more classes, name them one per line in %s", filepath.Join(dir, "classes.txt")), nil,
					"label %d of image %d is out of range for %d classes (%s ... %s)", l, i, len(classes), classes[0], classes[len(classes)-1])
			}
		}
		sets[k] = &Set{
			Name: base + "/" + name, N: img[k].n, C: 1, H: img[k].h, W: img[k].w,
			Pixels: img[k].pix, Labels: lab[k], Classes: classes,
		}
	}
	return sets, nil
}
