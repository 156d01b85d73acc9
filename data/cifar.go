package data

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// CIFARClasses are the names of CIFAR-10's ten classes, by label: what
// batches.meta.txt holds, used when it is absent.
var CIFARClasses = []string{
	"airplane", "automobile", "bird", "cat", "deer",
	"dog", "frog", "horse", "ship", "truck",
}

// CIFAR-10's binary record: one label byte, then the 32×32 image as three
// planes, R, G, B, each row-major.
const (
	cifarSide   = 32
	cifarPixels = 3 * cifarSide * cifarSide // (C, H, W)
	cifarRecord = 1 + cifarPixels
)

const (
	hintCIFAR        = "download the binary version (cifar-10-binary.tar.gz) from https://www.cs.toronto.edu/~kriz/cifar.html, extract it and pass its cifar-10-batches-bin folder"
	hintCIFARCorrupt = "the file is damaged or not a CIFAR-10 binary batch: extract it again from cifar-10-binary.tar.gz"
)

// ReadCIFAR reads CIFAR-10 binary records (1 label byte, then 3072 bytes:
// the R, G and B planes of a 32×32 image) from r, which must hold a whole
// number of them, at least one. name is used in error messages only. pix is
// (N, 3, 32, 32); label values are not range-checked here.
//
// Memory is bounded by the bytes r delivers.
func ReadCIFAR(r io.Reader, name string) (labels []int, pix []uint8, err error) {
	raw, err := readBody(r, int(^uint(0)>>2)) // to the end, growing as bytes arrive
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, readErr(name, len(raw), err)
	}
	switch {
	case len(raw) == 0:
		return nil, nil, formatErr(name, hintCIFARCorrupt, nil, "empty file, want CIFAR-10 records of %d bytes", cifarRecord)
	case len(raw)%cifarRecord != 0:
		return nil, nil, formatErr(name, hintCIFARCorrupt, nil, "truncated: %d bytes is %d whole records of %d bytes and %d bytes more",
			len(raw), len(raw)/cifarRecord, cifarRecord, len(raw)%cifarRecord)
	}
	n := len(raw) / cifarRecord
	labels = make([]int, n)
	pix = make([]uint8, n*cifarPixels)
	for i := range n {
		rec := raw[i*cifarRecord : (i+1)*cifarRecord]
		labels[i] = int(rec[0])
		copy(pix[i*cifarPixels:], rec[1:])
	}
	return labels, pix, nil
}

// LoadCIFAR reads the CIFAR-10 binary distribution from dir (or from
// dir/cifar-10-batches-bin): the training set from data_batch_1.bin …
// data_batch_5.bin, in that order, and the test set from test_batch.bin.
// The class names are the lines of batches.meta.txt if present, else
// CIFARClasses. The sets are (N, 3, 32, 32); the test set serves as the
// validation set. Errors are *FileError, one line naming the file, wrapping
// ErrNotFound or ErrFormat: a missing file, one that is not a whole number
// of 3073-byte records, a label out of range.
func LoadCIFAR(dir string) (train, test *Set, err error) {
	sets, err := loadCIFAR(dir, []int{0, 1})
	if err != nil {
		return nil, nil, err
	}
	return sets[0], sets[1], nil
}

// LoadCIFARTest reads only CIFAR-10's test set, as LoadCIFAR does:
// scoring needs no training files.
func LoadCIFARTest(dir string) (*Set, error) {
	sets, err := loadCIFAR(dir, []int{1})
	if err != nil {
		return nil, err
	}
	return sets[1], nil
}

// loadCIFAR reads the splits of dir that want names (0: train, 1: test);
// the others stay nil.
func loadCIFAR(dir string, want []int) (sets [2]*Set, err error) {
	st, err := os.Stat(dir)
	if err != nil {
		return sets, &FileError{Path: dir, Problem: "CIFAR-10 folder: " + openProblem(err), Hint: hintCIFAR, Kind: ErrNotFound, Err: err}
	}
	if !st.IsDir() {
		return sets, &FileError{Path: dir, Problem: "not a folder", Hint: hintCIFAR, Kind: ErrNotFound}
	}
	if _, err := os.Stat(filepath.Join(dir, "data_batch_1.bin")); err != nil {
		if sub := filepath.Join(dir, "cifar-10-batches-bin"); isDir(sub) {
			dir = sub
		}
	}
	classes, err := cifarClasses(dir)
	if err != nil {
		return sets, err
	}
	base := filepath.Base(dir)
	if base == "cifar-10-batches-bin" {
		base = "cifar-10"
	}
	files := [][]string{
		{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"},
		{"test_batch.bin"},
	}
	for _, k := range want {
		split := [2]string{"train", "test"}[k]
		s := &Set{Name: base + "/" + split, C: 3, H: cifarSide, W: cifarSide, Classes: classes}
		for _, f := range files[k] {
			p := filepath.Join(dir, f)
			labels, pix, err := readCIFARFile(p)
			if err != nil {
				return sets, err
			}
			for i, l := range labels {
				if l >= len(classes) {
					return sets, formatErr(p, fmt.Sprintf("if the data set has more classes, name them one per line in %s", filepath.Join(dir, "batches.meta.txt")), nil,
						"label %d of record %d is out of range for %d classes (%s ... %s)", l, i, len(classes), classes[0], classes[len(classes)-1])
				}
			}
			s.Labels = append(s.Labels, labels...)
			s.Pixels = append(s.Pixels, pix...)
		}
		s.N = len(s.Labels)
		sets[k] = s
	}
	return sets, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// readCIFARFile opens and reads one batch file.
func readCIFARFile(p string) (labels []int, pix []uint8, err error) {
	f, err := os.Open(p)
	if err != nil {
		problem := openProblem(err)
		if errors.Is(err, os.ErrNotExist) {
			problem = "no such file: not a CIFAR-10 binary folder"
			if _, e := os.Stat(filepath.Join(filepath.Dir(p), "train.bin")); e == nil {
				problem += " (train.bin is CIFAR-100, which is not supported)"
			}
		}
		return nil, nil, &FileError{Path: p, Problem: problem, Hint: hintCIFAR, Kind: ErrNotFound, Err: err}
	}
	defer f.Close()
	return ReadCIFAR(f, p)
}

// cifarClasses returns the lines of dir/batches.meta.txt, or CIFARClasses
// if it does not exist.
func cifarClasses(dir string) ([]string, error) {
	p := filepath.Join(dir, "batches.meta.txt")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return CIFARClasses, nil
	}
	if err != nil {
		return nil, &FileError{Path: p, Problem: openProblem(err), Hint: "check its permissions", Kind: ErrFormat, Err: err}
	}
	var names []string
	for line := range strings.Lines(string(b)) {
		if s := strings.TrimSpace(line); s != "" {
			names = append(names, s)
		}
	}
	if len(names) == 0 || len(names) > 256 {
		return nil, formatErr(p, "write one class name per line, in label order, or delete the file", nil, "%d class names, want 1 to 256", len(names))
	}
	return names, nil
}
