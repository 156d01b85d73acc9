package data

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// Prepared is a data set written by Prepare, opened by OpenPrepared.
type Prepared struct {
	// Dir is the directory.
	Dir string
	// Size and C: every image is (C, Size, Size) uint8.
	Size, C int
	// Classes names the classes by label.
	Classes []string
	// Train and Val read the splits; Val is nil if the source had none.
	Train, Val *Shards
	// Mean is the mean training image, raw 0..255 units.
	Mean []float32 // (C, Size, Size)
	// EigVal are the eigenvalues of the training pixels' RGB covariance, in
	// decreasing order, (0..255)² units.
	EigVal [3]float64
	// EigVec[i] is eigenvector i, of EigVal[i], unit length, (R, G, B).
	EigVec [3][3]float64
	// Cov is the RGB covariance itself.
	Cov [3][3]float64
	// Source is the absolute path of the source directory it came from.
	Source string
	// Skipped is the number of source files left out (see report.txt).
	Skipped int
}

// Close closes the shard files.
func (p *Prepared) Close() error {
	var errs []error
	if p.Train != nil {
		errs = append(errs, p.Train.Close())
	}
	if p.Val != nil {
		errs = append(errs, p.Val.Close())
	}
	return errors.Join(errs...)
}

// The output's fixed names.
const (
	metaName   = "meta.json"
	meanName   = "mean.f32"
	reportName = "report.txt"
	// metaFormat identifies meta.json; metaVersion is its version.
	metaFormat  = "alexnet-go prepared data set"
	metaVersion = 1
)

// prepMeta is meta.json.
type prepMeta struct {
	Format   string   `json:"format"`
	Version  int      `json:"version"`
	Source   string   `json:"source"`
	Size     int      `json:"size"`
	Channels int      `json:"channels"`
	Classes  []string `json:"classes"`
	// ShardImages is the number of source files per shard.
	ShardImages int           `json:"shard_images"`
	Train       prepSplitMeta `json:"train"`
	Val         prepSplitMeta `json:"val"`
	// Mean names the mean image file; MeanLayout describes it.
	Mean       string `json:"mean"`
	MeanLayout string `json:"mean_layout"`
	// PCA of the training pixels' RGB values.
	Covariance   [3][3]float64 `json:"covariance"`
	Eigenvalues  [3]float64    `json:"eigenvalues"`
	Eigenvectors [3][3]float64 `json:"eigenvectors"`
	PCALayout    string        `json:"pca_layout"`
	Skipped      int           `json:"skipped"`
	Report       string        `json:"report"`
}

type prepSplitMeta struct {
	Images  int `json:"images"`  // in the shards
	Sources int `json:"sources"` // source files
	Skipped int `json:"skipped"` // source files left out
	Shards  int `json:"shards"`  // shard files
}

// errNotPrepared is the problem of a directory without meta.json.
const errNotPrepared = "not a prepared data set (run trainer prepare)"

// OpenPrepared opens a data set written by Prepare and checks it: meta.json
// (a directory without it is "not a prepared data set (run trainer
// prepare)"), the shards against it (OpenShards, the counts, the labels
// against the classes) and the mean image's size.
func OpenPrepared(dir string) (*Prepared, error) {
	mp := filepath.Join(dir, metaName)
	b, err := os.ReadFile(mp)
	if err != nil {
		kind := ErrFormat
		problem := openProblem(err)
		if errors.Is(err, os.ErrNotExist) {
			kind, problem = ErrNotFound, errNotPrepared
			if !isDir(dir) {
				problem = "no such folder: " + errNotPrepared
			}
			return nil, &FileError{Path: dir, Problem: problem + ": no " + metaName, Kind: kind, Err: err}
		}
		return nil, &FileError{Path: mp, Problem: problem, Kind: kind, Err: err}
	}
	m, err := parsePrepMeta(b, mp)
	if err != nil {
		return nil, err
	}
	p := &Prepared{Dir: dir, Size: m.Size, C: m.Channels, Classes: m.Classes, EigVal: m.Eigenvalues, EigVec: m.Eigenvectors,
		Cov: m.Covariance, Source: m.Source, Skipped: m.Skipped}
	ok := false
	defer func() {
		if !ok {
			p.Close()
		}
	}()
	for _, sp := range []struct {
		name string
		meta prepSplitMeta
		dst  **Shards
	}{{"train", m.Train, &p.Train}, {"val", m.Val, &p.Val}} {
		if sp.meta.Shards == 0 {
			continue
		}
		s, err := OpenShards(dir, sp.name)
		if err != nil {
			return nil, err
		}
		*sp.dst = s
		first := filepath.Join(dir, shardName(sp.name, 0))
		switch {
		case len(s.first)-1 != sp.meta.Shards || s.N() != sp.meta.Images:
			return nil, formatErr(first, "rerun trainer prepare with the same --src and --out", nil,
				"%d %s shards of %d images, but %s says %d of %d", len(s.first)-1, sp.name, s.N(), mp, sp.meta.Shards, sp.meta.Images)
		case s.C() != m.Channels || s.Size() != m.Size:
			return nil, formatErr(first, "rerun trainer prepare with the same --src and --out", nil,
				"images of %d×%d×%d, but %s says %d×%d×%d", s.C(), s.Size(), s.Size(), mp, m.Channels, m.Size, m.Size)
		}
		for i, l := range s.labels {
			if int(l) >= len(m.Classes) {
				k := slices.IndexFunc(s.first[1:], func(f int) bool { return f > i })
				return nil, formatErr(s.names[k], hintShard, nil, "record %d has label %d, out of range for the %d classes of %s", i-s.first[k], l, len(m.Classes), mp)
			}
		}
	}
	if p.Train == nil {
		return nil, formatErr(mp, "rerun trainer prepare", nil, "no training shards")
	}
	meanPath := filepath.Join(dir, m.Mean)
	mb, err := os.ReadFile(meanPath)
	if err != nil {
		return nil, &FileError{Path: meanPath, Problem: openProblem(err), Hint: "rerun trainer prepare with the same --src and --out", Kind: ErrFormat, Err: err}
	}
	if want := 4 * m.Channels * m.Size * m.Size; len(mb) != want {
		return nil, formatErr(meanPath, "rerun trainer prepare with the same --src and --out", nil, "%d bytes, want %d: float32 (%d, %d, %d)", len(mb), want, m.Channels, m.Size, m.Size)
	}
	p.Mean = make([]float32, len(mb)/4)
	for i := range p.Mean {
		p.Mean[i] = math.Float32frombits(binary.LittleEndian.Uint32(mb[4*i:]))
	}
	ok = true
	return p, nil
}

// parsePrepMeta parses and checks meta.json.
func parsePrepMeta(b []byte, name string) (*prepMeta, error) {
	const hint = "rerun trainer prepare with the same --src and --out"
	var m prepMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, formatErr(name, hint, err, "%s: %v", errNotPrepared, err)
	}
	switch {
	case m.Format != metaFormat:
		return nil, formatErr(name, hint, nil, "format %q, want %q: %s", m.Format, metaFormat, errNotPrepared)
	case m.Version != metaVersion:
		return nil, formatErr(name, hint, nil, "version %d, this program reads version %d", m.Version, metaVersion)
	case m.Size < 1 || m.Size > shardMaxSide || m.Channels < 1 || m.Channels > shardMaxChannels:
		return nil, formatErr(name, hint, nil, "size %d, channels %d", m.Size, m.Channels)
	case len(m.Classes) == 0:
		return nil, formatErr(name, hint, nil, "no classes")
	case m.Mean == "" || filepath.Base(m.Mean) != m.Mean:
		return nil, formatErr(name, hint, nil, "mean file %q: want a file name", m.Mean)
	}
	return &m, nil
}
