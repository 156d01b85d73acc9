package data

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"io"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gonum.org/v1/gonum/mat"
)

// Prepare converts an image Source (see Source) once into the form training
// reads fast: every image rescaled and cropped to C×Size×Size bytes (the
// paper's §2), stored in shard files (see ShardImages and the format in
// shard.go), with the training set's mean image and the PCA of its RGB
// pixels (§4.1) alongside. The output directory holds
//
//	train-00000.shard …  the training images, in source order, ShardImages
//	                     source files per shard (fewer images where files
//	                     were skipped)
//	val-00000.shard …    the validation images, if the source has SRC/val
//	*.stats              per-shard statistics, so that a rerun reuses the
//	                     shards already written without decoding them again
//	mean.f32             the mean training image, float32 little-endian,
//	                     (C, Size, Size), raw 0..255 units
//	report.txt           the files skipped, one per line: PATH<TAB>REASON
//	                     (PATH relative to SRC)
//	meta.json            written last: it marks the output complete
//
// Per image: rescale so that the shorter side is Size (the longer side in
// proportion, rounded to whole pixels), then take the central Size×Size
// crop (offset ⌊(longer−Size)/2⌋). Each axis is resampled on its own. An
// axis that shrinks from s to d pixels is area-averaged: scaled pixel u is
// the mean of the source over [u·s/d, (u+1)·s/d), partial pixels weighted
// by their overlap. An axis that grows is interpolated linearly between the
// two nearest source pixel centres: scaled pixel u samples source position
// (u+½)·s/d − ½, clamped to [0, s−1]. Colours are the image's RGB on the
// 0..255 scale (image.Image's RGBA()/257): gray is replicated to R, G and B,
// CMYK converted as color.RGBAModel does, transparency composited over
// black. Values are computed in float32 and rounded to nearest once. EXIF
// orientation is ignored, as ImageNet pipelines do.
//
// Files that cannot be decoded (empty, truncated, corrupt, not an image)
// are skipped and listed in report.txt; they are not an error.
//
// The mean image is the per-pixel mean over the training images; the
// covariance is the 3×3 population covariance of the RGB values of all
// training pixels, from exact integer sums, in (0..255)² units; its
// eigenvalues are in decreasing order, each eigenvector with its
// largest-magnitude component positive.
//
// Prepare is resumable and deterministic: images are assigned to shards by
// their position in the sorted file list, each shard is written under a
// temporary name and renamed when complete, and a shard whose file and
// statistics exist and match the source files assigned to it (path, label,
// size, modification time) is kept. Interrupted (ctx cancelled) and rerun,
// or rerun after shards were deleted, it produces the same bytes. It never
// writes inside SRC: an Out inside or equal to Src is refused, as is an Out
// holding a data set prepared from another source or at another size.
func Prepare(ctx context.Context, o PrepareOptions) (*PrepareSummary, error) {
	p, err := newPreparer(o)
	if err != nil {
		return nil, err
	}
	return p.run(ctx)
}

// PrepareOptions configure Prepare.
type PrepareOptions struct {
	// Src is the source directory (see Source); it is only read.
	Src string
	// Out is the output directory, created if needed.
	Out string
	// Size is the side of the stored images; 0 means 256.
	Size int
	// Workers is the number of goroutines decoding images; 0 means
	// GOMAXPROCS. It does not change the output.
	Workers int
	// Progress receives progress: one line redrawn in place if it is a
	// terminal, else a plain line every tenth or every 30 seconds; nil for
	// none.
	Progress io.Writer

	// shardImages is the number of source files per shard; 0 means
	// ShardImages. Tests set it to exercise several shards.
	shardImages int
}

// PrepareSummary says what Prepare did.
type PrepareSummary struct {
	// Out is the output directory.
	Out string
	// Train and Val are the numbers of images in the prepared splits.
	Train, Val int
	// Skipped lists the files left out, train then val, in source order.
	Skipped []SkippedFile
	// Shards is the number of shard files; Reused of them were found
	// complete and kept.
	Shards, Reused int
	// Decoded is the number of image files this run read.
	Decoded int
}

// SkippedFile is a source file Prepare could not use.
type SkippedFile struct {
	// Path is relative to the source directory, slash-separated.
	Path string
	// Reason says what is wrong with it: "truncated JPEG image".
	Reason string
}

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

// preparer is one run of Prepare.
type preparer struct {
	o                      PrepareOptions
	src, out               string // absolute
	realSrc                string // with links resolved
	size, workers, perShrd int
	c                      int
	prog                   *prepProgress

	bufs chan []uint8 // free record buffers
}

func newPreparer(o PrepareOptions) (*preparer, error) {
	p := &preparer{o: o, size: o.Size, workers: o.Workers, perShrd: o.shardImages, c: 3}
	if p.size == 0 {
		p.size = 256
	}
	if p.size < 1 || p.size > shardMaxSide {
		return nil, fmt.Errorf("data: prepare: size %d, want 1 to %d", p.size, shardMaxSide)
	}
	if p.workers <= 0 {
		p.workers = runtime.GOMAXPROCS(0)
	}
	if p.perShrd <= 0 {
		p.perShrd = ShardImages
	}
	if o.Src == "" || o.Out == "" {
		return nil, errors.New("data: prepare: want a source and an output directory")
	}
	var err error
	if p.src, err = filepath.Abs(o.Src); err != nil {
		return nil, fmt.Errorf("data: prepare: %w", err)
	}
	if p.out, err = filepath.Abs(o.Out); err != nil {
		return nil, fmt.Errorf("data: prepare: %w", err)
	}
	if !isDir(p.src) {
		return nil, &FileError{Path: o.Src, Problem: "source folder not found", Hint: hintSource, Kind: ErrNotFound, Err: os.ErrNotExist}
	}
	p.realSrc = resolveExisting(p.src)
	realOut := resolveExisting(p.out)
	if rel, err := filepath.Rel(p.realSrc, realOut); err == nil && (rel == "." || !(rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)))) {
		problem := "is inside the source " + o.Src
		if rel == "." {
			problem = "is the source folder"
		}
		return nil, &FileError{Path: o.Out, Problem: "output folder " + problem, Hint: "the source is never written to: choose an --out outside it", Kind: ErrFormat}
	}
	return p, nil
}

// resolveExisting returns abs with symbolic links resolved in the part of
// it that exists.
func resolveExisting(abs string) string {
	rest := ""
	for dir := abs; ; {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return abs
		}
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = parent
	}
}

// prepShard is one shard to write or keep.
type prepShard struct {
	split    string
	k, total int
	items    []SourceImage
	fp       [32]byte
	stats    *shardStats // when complete
}

func (p *preparer) path(name string) string { return filepath.Join(p.out, name) }

func (p *preparer) run(ctx context.Context) (*PrepareSummary, error) {
	if err := p.checkOut(); err != nil {
		return nil, err
	}
	src, err := OpenSource(p.src)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(p.out, 0o755); err != nil {
		return nil, &FileError{Path: p.o.Out, Problem: "create output folder: " + openProblem(err), Kind: ErrFormat, Err: err}
	}
	sum := &PrepareSummary{Out: p.o.Out}
	var all, todo []*prepShard
	splits := []struct {
		name  string
		items []SourceImage
	}{{"train", src.Train}, {"val", src.Val}}
	total := map[string]int{}
	for _, sp := range splits {
		n := (len(sp.items) + p.perShrd - 1) / p.perShrd
		total[sp.name] = n
		for k := range n {
			sh := &prepShard{split: sp.name, k: k, total: n, items: sp.items[k*p.perShrd : min((k+1)*p.perShrd, len(sp.items))]}
			sh.fp = p.fingerprint(sh)
			all = append(all, sh)
			if st := p.complete(sh); st != nil {
				sh.stats = st
				sum.Reused++
			} else {
				todo = append(todo, sh)
			}
		}
	}
	sum.Shards = len(all)
	if err := p.removeStale(total); err != nil {
		return nil, err
	}
	if len(todo) > 0 {
		// The output is incomplete until meta.json is written again.
		if err := os.Remove(p.path(metaName)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, &FileError{Path: p.path(metaName), Problem: "remove: " + openProblem(err), Kind: ErrFormat, Err: err}
		}
		n := 0
		for _, sh := range todo {
			n += len(sh.items)
		}
		sum.Decoded = n
		if p.o.Progress != nil {
			p.prog = newPrepProgress(p.o.Progress, n)
		}
		err := p.write(ctx, todo)
		if p.prog != nil {
			p.prog.finish()
		}
		if err != nil {
			done := 0
			for _, sh := range all {
				if sh.stats != nil {
					done++
				}
			}
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil, fmt.Errorf("data: prepare interrupted with %d of %d shards complete (rerun to resume): %w", done, len(all), err)
			}
			return nil, err
		}
	}
	if err := p.finish(src, all, sum); err != nil {
		return nil, err
	}
	return sum, nil
}

// checkOut refuses an output directory holding another data set.
func (p *preparer) checkOut() error {
	mp := p.path(metaName)
	b, err := os.ReadFile(mp)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &FileError{Path: mp, Problem: openProblem(err), Kind: ErrFormat, Err: err}
	}
	m, err := parsePrepMeta(b, mp)
	if err != nil {
		return &FileError{Path: mp, Problem: "is not the meta.json of a data set written by trainer prepare", Hint: "choose another --out", Kind: ErrFormat, Err: err}
	}
	if resolveExisting(m.Source) != p.realSrc || m.Size != p.size {
		return &FileError{Path: p.o.Out, Problem: fmt.Sprintf("holds another data set, prepared from %s at size %d", m.Source, m.Size),
			Hint: "choose another --out, or delete it to prepare it again", Kind: ErrFormat}
	}
	return nil
}

// fingerprint identifies what a shard is made of: the format, the size,
// and each source file's path, label, size and modification time.
func (p *preparer) fingerprint(sh *prepShard) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "alexnet-go shard %d\n%s %d of %d\nsize %d channels %d per shard %d\n", shardVersion, sh.split, sh.k, sh.total, p.size, p.c, p.perShrd)
	for _, it := range sh.items {
		fmt.Fprintf(h, "%d\t%d\t%d\t%s\n", it.Label, it.Bytes, it.ModTime, it.Path)
	}
	return [32]byte(h.Sum(nil))
}

// complete returns the statistics of shard sh if its files exist and match
// it, else nil.
func (p *preparer) complete(sh *prepShard) *shardStats {
	name := shardName(sh.split, sh.k)
	st, err := readShardStats(p.path(statsName(name)))
	if err != nil || st.fp != sh.fp || st.size != p.size || st.channels != p.c || st.sources != len(sh.items) {
		return nil
	}
	f, err := os.Open(p.path(name))
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	h, labels, _, err := readShardIndex(f, fi.Size(), p.path(name))
	if err != nil || h.count != st.count || h.index != sh.k || h.total != sh.total || h.size != p.size || h.channels != p.c {
		return nil
	}
	// The labels are those of the files not skipped.
	skipped := map[string]bool{}
	for _, s := range st.skipped {
		skipped[s.Path] = true
	}
	j := 0
	for _, it := range sh.items {
		if skipped[it.Path] {
			continue
		}
		if j >= len(labels) || int(labels[j]) != it.Label {
			return nil
		}
		j++
	}
	if j != len(labels) {
		return nil
	}
	return st
}

var prepFileRE = regexp.MustCompile(`^(train|val)-([0-9]{5,})\.(shard|stats)(\.tmp)?$`)

// removeStale removes unfinished files and shards beyond a split's count,
// left by an earlier run over a larger source.
func (p *preparer) removeStale(total map[string]int) error {
	des, err := os.ReadDir(p.out)
	if err != nil {
		return &FileError{Path: p.o.Out, Problem: openProblem(err), Kind: ErrFormat, Err: err}
	}
	for _, de := range des {
		m := prepFileRE.FindStringSubmatch(de.Name())
		if m == nil {
			continue
		}
		k, err := strconv.Atoi(m[2])
		if m[4] != "" || err != nil || k >= total[m[1]] {
			if err := os.Remove(p.path(de.Name())); err != nil {
				return &FileError{Path: p.path(de.Name()), Problem: "remove: " + openProblem(err), Kind: ErrFormat, Err: err}
			}
		}
	}
	return nil
}

// prepJob is one image to decode; prepOut its result.
type prepJob struct {
	sh   *prepShard
	slot int
	res  chan<- prepOut
}

type prepOut struct {
	slot   int
	pix    []uint8   // (C, Size, Size); nil if skipped
	mom    [9]uint64 // see rgbMoments
	reason string    // why it was skipped
}

// write writes the shards todo: a feeder hands the images out in order to
// the workers, which decode and resize them; one writer per shard puts them
// back in order and writes them. Tokens bound the images in flight, and so
// the memory, whatever one slow image holds up.
func (p *preparer) write(ctx context.Context, todo []*prepShard) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	tokens := make(chan struct{}, 2*p.workers+2)
	p.bufs = make(chan []uint8, cap(tokens)+p.workers)
	jobs := make(chan prepJob)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(jobs)
		for _, sh := range todo {
			res := make(chan prepOut, cap(tokens))
			wg.Go(func() {
				if err := p.writeShard(ctx, sh, res, tokens); err != nil {
					cancel(err)
				}
			})
			for slot := range sh.items {
				select {
				case tokens <- struct{}{}:
				case <-ctx.Done():
					return
				}
				select {
				case jobs <- prepJob{sh: sh, slot: slot, res: res}:
				case <-ctx.Done():
					return
				}
			}
		}
	})
	for range p.workers {
		wg.Go(func() {
			var sc prepScratch
			for j := range jobs {
				// res has room for every image in flight, so this never blocks.
				j.res <- p.process(j, &sc)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// buf returns a free record buffer.
func (p *preparer) buf() []uint8 {
	select {
	case b := <-p.bufs:
		return b
	default:
		return make([]uint8, p.c*p.size*p.size)
	}
}

func (p *preparer) put(b []uint8) {
	if b == nil {
		return
	}
	select {
	case p.bufs <- b:
	default:
	}
}

// process decodes and resizes one image.
func (p *preparer) process(j prepJob, sc *prepScratch) prepOut {
	it := j.sh.items[j.slot]
	out := prepOut{slot: j.slot}
	img, err := decodeSafely(filepath.Join(p.src, filepath.FromSlash(it.Path)))
	if err != nil {
		out.reason = skipReason(err)
		return out
	}
	out.pix = p.buf()
	if err := prepImage(img, p.size, out.pix, sc); err != nil {
		p.put(out.pix)
		out.pix, out.reason = nil, err.Error()
		return out
	}
	out.mom = rgbMoments(out.pix, p.size*p.size)
	return out
}

// decodeSafely calls DecodeImage, turning a panic in a decoder into an
// error: one bad file among a million must not stop the run.
func decodeSafely(path string) (img image.Image, err error) {
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("decoder panicked: %v", r)
		}
	}()
	img, err = DecodeImage(path)
	if err == nil && img == nil {
		err = errors.New("decoder returned no image")
	}
	return img, err
}

// skipReason is an error's message without the path, which the report
// gives.
func skipReason(err error) string {
	var fe *FileError
	if errors.As(err, &fe) {
		return fe.Problem
	}
	return openProblem(err)
}

// writeShard receives shard sh's images from res, in any order, and writes
// them in source order.
func (p *preparer) writeShard(ctx context.Context, sh *prepShard, res <-chan prepOut, tokens <-chan struct{}) error {
	w, err := createShard(p.out, sh.split, sh.k, sh.total, p.c, p.size, p.perShrd)
	if err != nil {
		return err
	}
	st := &shardStats{fp: sh.fp, size: p.size, channels: p.c, sources: len(sh.items), sum: make([]uint32, p.c*p.size*p.size)}
	pending := map[int]prepOut{}
	for next := 0; next < len(sh.items); {
		var o prepOut
		select {
		case o = <-res:
		case <-ctx.Done():
		}
		if ctx.Err() != nil { // promptly, even with results waiting
			w.abort()
			return nil
		}
		pending[o.slot] = o
		for {
			o, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			it := sh.items[next]
			if o.pix == nil {
				st.skipped = append(st.skipped, SkippedFile{Path: it.Path, Reason: o.reason})
			} else {
				if err := w.add(o.pix, it.Label); err != nil {
					w.abort()
					return err
				}
				for i, v := range o.pix {
					st.sum[i] += uint32(v)
				}
				for i, v := range o.mom {
					st.mom[i] += v
				}
				st.count++
				p.put(o.pix)
			}
			<-tokens
			next++
			if p.prog != nil {
				p.prog.add(1)
			}
		}
	}
	// The statistics first: a shard file whose statistics are missing is
	// written again.
	if err := writeShardStats(p.path(statsName(filepath.Base(w.final))), st); err != nil {
		w.abort()
		return err
	}
	if err := w.finish(); err != nil {
		return err
	}
	sh.stats = st
	return nil
}

// finish adds up the statistics and writes mean.f32, report.txt and, last,
// meta.json.
func (p *preparer) finish(src *Source, all []*prepShard, sum *PrepareSummary) error {
	m := &prepMeta{
		Format: metaFormat, Version: metaVersion, Source: p.src, Size: p.size, Channels: p.c, Classes: src.Classes,
		ShardImages: p.perShrd, Mean: meanName,
		MeanLayout: "float32 little-endian, (channels, size, size), raw 0..255 units",
		PCALayout:  "population covariance of the training pixels' (R, G, B) in 0..255 units; eigenvalues decreasing; eigenvectors[i] (a row) is the unit eigenvector of eigenvalues[i]",
		Report:     reportName,
	}
	pix := make([]uint64, p.c*p.size*p.size)
	var mom [9]uint64
	var report bytes.Buffer
	for _, sh := range all {
		st := sh.stats
		sp := &m.Train
		if sh.split == "val" {
			sp = &m.Val
		}
		sp.Images += st.count
		sp.Sources += st.sources
		sp.Skipped += len(st.skipped)
		sp.Shards++
		sum.Skipped = append(sum.Skipped, st.skipped...)
		if sh.split == "train" {
			for i, v := range st.sum {
				pix[i] += uint64(v)
			}
			for i, v := range st.mom {
				mom[i] += v
			}
		}
	}
	sum.Train, sum.Val = m.Train.Images, m.Val.Images
	m.Skipped = len(sum.Skipped)
	if m.Train.Images == 0 {
		return &FileError{Path: filepath.Join(p.o.Src, "train"), Problem: fmt.Sprintf("none of the %d training images could be read (see %s)", m.Train.Sources, p.path(reportName)), Kind: ErrFormat}
	}
	fmt.Fprintf(&report, "# %d of %d files of %s skipped: PATH (relative to it), TAB, REASON\n", m.Skipped, m.Train.Sources+m.Val.Sources, p.src)
	for _, s := range sum.Skipped {
		fmt.Fprintf(&report, "%s\t%s\n", s.Path, strings.ReplaceAll(s.Reason, "\n", " "))
	}

	mean := make([]byte, 4*len(pix))
	for i, v := range pix {
		binary.LittleEndian.PutUint32(mean[4*i:], math.Float32bits(float32(float64(v)/float64(m.Train.Images))))
	}
	m.Covariance = rgbCovariance(mom, uint64(m.Train.Images)*uint64(p.size*p.size))
	var err error
	if m.Eigenvalues, m.Eigenvectors, err = eigenRGB(m.Covariance); err != nil {
		return err
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{{meanName, mean}, {reportName, report.Bytes()}, {metaName, append(mb, '\n')}} {
		if err := writeFileAtomic(p.path(f.name), f.b); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic writes b to path under a temporary name, syncs it and
// renames it.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err == nil {
		_, err = f.Write(b)
		if err == nil {
			err = f.Sync()
		}
		if e := f.Close(); err == nil {
			err = e
		}
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return &FileError{Path: path, Problem: "write: " + openProblem(err), Kind: ErrFormat, Err: err}
	}
	return nil
}

// rgbMoments returns, over the n pixels of an image (3, n), the sums
//
//	Σr, Σg, Σb, Σr², Σrg, Σrb, Σg², Σgb, Σb²
//
// exact in uint64.
func rgbMoments(pix []uint8, n int) [9]uint64 {
	r, g, b := pix[:n], pix[n:2*n], pix[2*n:3*n]
	var m [9]uint64
	// Per row of 256 pixels the sums fit in uint32 (256·255² < 2^32).
	for lo := 0; lo < n; lo += 256 {
		hi := min(lo+256, n)
		var s [9]uint32
		for i := lo; i < hi; i++ {
			ri, gi, bi := uint32(r[i]), uint32(g[i]), uint32(b[i])
			s[0] += ri
			s[1] += gi
			s[2] += bi
			s[3] += ri * ri
			s[4] += ri * gi
			s[5] += ri * bi
			s[6] += gi * gi
			s[7] += gi * bi
			s[8] += bi * bi
		}
		for k := range m {
			m[k] += uint64(s[k])
		}
	}
	return m
}

// rgbCovariance returns the population covariance of n pixels from their
// moments (see rgbMoments): cov(a, b) = (n·Σab − Σa·Σb) / n², with the
// numerator exact.
func rgbCovariance(mom [9]uint64, n uint64) [3][3]float64 {
	idx := [3][3]int{{3, 4, 5}, {4, 6, 7}, {5, 7, 8}}
	bn := new(big.Int).SetUint64(n)
	n2 := new(big.Int).Mul(bn, bn)
	var cov [3][3]float64
	for a := range 3 {
		for b := range 3 {
			num := new(big.Int).Mul(bn, new(big.Int).SetUint64(mom[idx[a][b]]))
			num.Sub(num, new(big.Int).Mul(new(big.Int).SetUint64(mom[a]), new(big.Int).SetUint64(mom[b])))
			cov[a][b], _ = new(big.Rat).SetFrac(num, n2).Float64()
		}
	}
	return cov
}

// eigenRGB returns the eigenvalues of a symmetric 3×3 matrix in decreasing
// order and its unit eigenvectors, vec[i] of val[i], each with its
// largest-magnitude component positive (the first of equal ones).
func eigenRGB(cov [3][3]float64) (val [3]float64, vec [3][3]float64, err error) {
	s := mat.NewSymDense(3, []float64{
		cov[0][0], cov[0][1], cov[0][2],
		cov[1][0], cov[1][1], cov[1][2],
		cov[2][0], cov[2][1], cov[2][2],
	})
	var es mat.EigenSym
	if !es.Factorize(s, true) {
		return val, vec, fmt.Errorf("data: prepare: eigen-decomposition of the RGB covariance %v failed", cov)
	}
	vals := es.Values(nil) // ascending
	var ev mat.Dense
	es.VectorsTo(&ev) // columns
	for i := range 3 {
		c := 2 - i
		val[i] = vals[c]
		big := 0
		for k := range 3 {
			vec[i][k] = ev.At(k, c)
			if math.Abs(vec[i][k]) > math.Abs(vec[i][big]) {
				big = k
			}
		}
		if vec[i][big] < 0 {
			for k := range 3 {
				vec[i][k] = -vec[i][k]
			}
		}
	}
	return val, vec, nil
}

// shardStats are what a shard contributes to the data set's statistics,
// saved beside it as SPLIT-NNNNN.stats so that a rerun need not decode its
// images again. Little-endian:
//
//	"ALXSTATS", version u32, size u32, channels u32, sources u32, count u32,
//	fingerprint [32]byte, sum u32 × C·S·S, moments u64 × 9,
//	skipped u32, then per skipped file: len u32, path, len u32, reason;
//	CRC-32C u32 of everything before it.
type shardStats struct {
	fp                             [32]byte
	size, channels, sources, count int
	sum                            []uint32 // (C, S, S): per-pixel sums over the images
	mom                            [9]uint64
	skipped                        []SkippedFile
}

const statsMagic = "ALXSTATS"

func statsName(shard string) string { return strings.TrimSuffix(shard, ".shard") + ".stats" }

func writeShardStats(path string, st *shardStats) error {
	le := binary.LittleEndian
	b := []byte(statsMagic)
	for _, v := range []int{shardVersion, st.size, st.channels, st.sources, st.count} {
		b = le.AppendUint32(b, uint32(v))
	}
	b = append(b, st.fp[:]...)
	for _, v := range st.sum {
		b = le.AppendUint32(b, v)
	}
	for _, v := range st.mom {
		b = le.AppendUint64(b, v)
	}
	b = le.AppendUint32(b, uint32(len(st.skipped)))
	for _, s := range st.skipped {
		for _, str := range []string{s.Path, s.Reason} {
			b = le.AppendUint32(b, uint32(len(str)))
			b = append(b, str...)
		}
	}
	b = le.AppendUint32(b, crc32.Checksum(b, crcTable))
	return writeFileAtomic(path, b)
}

func readShardStats(path string) (*shardStats, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	bad := errors.New("data: " + path + ": not a valid statistics file")
	le := binary.LittleEndian
	if len(b) < 8+20+32+72+8 || string(b[:8]) != statsMagic || le.Uint32(b[len(b)-4:]) != crc32.Checksum(b[:len(b)-4], crcTable) {
		return nil, bad
	}
	b = b[8 : len(b)-4]
	u32 := func() int {
		if len(b) < 4 {
			return -1
		}
		v := le.Uint32(b)
		b = b[4:]
		return int(v)
	}
	if u32() != shardVersion {
		return nil, bad
	}
	st := &shardStats{size: u32(), channels: u32(), sources: u32(), count: u32()}
	if st.size < 1 || st.size > shardMaxSide || st.channels < 1 || st.channels > shardMaxChannels || len(b) < 32 {
		return nil, bad
	}
	copy(st.fp[:], b)
	b = b[32:]
	n := st.channels * st.size * st.size
	if len(b) < 4*n+72 {
		return nil, bad
	}
	st.sum = make([]uint32, n)
	for i := range st.sum {
		st.sum[i] = le.Uint32(b[4*i:])
	}
	b = b[4*n:]
	for i := range st.mom {
		st.mom[i] = le.Uint64(b[8*i:])
	}
	b = b[72:]
	k := u32()
	if k < 0 || k > len(b)/8 {
		return nil, bad
	}
	for range k {
		var s [2]string
		for i := range s {
			l := u32()
			if l < 0 || l > len(b) {
				return nil, bad
			}
			s[i], b = string(b[:l]), b[l:]
		}
		st.skipped = append(st.skipped, SkippedFile{Path: s[0], Reason: s[1]})
	}
	if len(b) != 0 {
		return nil, bad
	}
	return st, nil
}

// prepAxis is the resampling of one axis: output pixel j is
// Σ_k w[j·n+k]·src[first[j]+k], n taps for every pixel (zero-padded).
type prepAxis struct {
	first []int
	w     []float32
	n     int
}

// newPrepAxis returns the taps of scaled pixels off … off+m−1 of an axis
// of s source pixels scaled to d (see Prepare for the filter).
func newPrepAxis(s, d, off, m int) prepAxis {
	first := make([]int, m)
	ws := make([][]float32, m)
	for j := range m {
		u := off + j
		switch {
		case s == d:
			first[j], ws[j] = u, []float32{1}
		case s > d:
			// In units of 1/d source pixels: scaled pixel u covers
			// [u·s, (u+1)·s), source pixel i covers [i·d, (i+1)·d).
			lo, hi := u*s, (u+1)*s
			first[j] = lo / d
			for i := first[j]; i*d < hi; i++ {
				ws[j] = append(ws[j], float32(min(hi, (i+1)*d)-max(lo, i*d))/float32(s))
			}
		default:
			x := (float64(u)+0.5)*float64(s)/float64(d) - 0.5
			x = min(max(x, 0), float64(s-1))
			i := int(x)
			if f := x - float64(i); f == 0 || i == s-1 {
				first[j], ws[j] = i, []float32{1}
			} else {
				first[j], ws[j] = i, []float32{float32(1 - f), float32(f)}
			}
		}
	}
	a := prepAxis{first: first}
	for _, w := range ws {
		a.n = max(a.n, len(w))
	}
	a.w = make([]float32, m*a.n)
	for j, w := range ws {
		// Pad with zero weights, keeping the taps inside the axis.
		start := min(first[j], s-a.n)
		copy(a.w[j*a.n+first[j]-start:], w)
		a.first[j] = start
	}
	return a
}

// span returns the source pixels [lo, hi) the axis reads.
func (a prepAxis) span() (lo, hi int) {
	return a.first[0], a.first[len(a.first)-1] + a.n
}

// scaledSize returns the size of a w×h image scaled so that its shorter
// side is size, the longer in proportion, rounded to nearest.
func scaledSize(w, h, size int) (dw, dh int) {
	if w <= h {
		return size, max(size, (2*h*size+w)/(2*w))
	}
	return max(size, (2*w*size+h)/(2*h)), size
}

// prepScratch is one worker's reusable buffers.
type prepScratch struct {
	row, mid, acc []float32
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// prepImage writes img rescaled and centre-cropped (see Prepare) to dst,
// (3, size, size).
func prepImage(img image.Image, size int, dst []uint8, sc *prepScratch) error {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw < 1 || sh < 1 {
		return fmt.Errorf("empty image (%d×%d pixels)", sw, sh)
	}
	dw, dh := scaledSize(sw, sh, size)
	xs := newPrepAxis(sw, dw, (dw-size)/2, size)
	ys := newPrepAxis(sh, dh, (dh-size)/2, size)
	x0, x1 := xs.span()
	y0, y1 := ys.span()
	nx, ny := x1-x0, y1-y0
	sc.row = grow(sc.row, 3*nx)      // (nx, 3): RGB interleaved
	sc.mid = grow(sc.mid, ny*3*size) // (ny, 3, size)
	sc.acc = grow(sc.acc, 3*size)    // (3, size)
	// Horizontally, one source row at a time, the three channels at once.
	for y := y0; y < y1; y++ {
		readRGBRow(sc.row, img, b.Min.X+x0, b.Min.Y+y, nx)
		mid := sc.mid[(y-y0)*3*size : (y-y0+1)*3*size]
		prepRow(mid[:size], mid[size:2*size], mid[2*size:], sc.row, xs, x0)
	}
	// Vertically, a whole output row (three channels) at a time.
	m := ys.n
	for i := range size {
		ws := ys.w[i*m : i*m+m]
		row := func(k int) []float32 {
			y := ys.first[i] + k - y0
			return sc.mid[y*3*size : (y+1)*3*size]
		}
		acc := sc.acc[:3*size]
		switch m {
		case 1:
			copy(acc, row(0))
		case 2:
			w0, w1 := ws[0], ws[1]
			s0, s1 := row(0), row(1)
			s0, s1 = s0[:len(acc)], s1[:len(acc)]
			for q := range acc {
				acc[q] = w0*s0[q] + w1*s1[q]
			}
		case 3:
			w0, w1, w2 := ws[0], ws[1], ws[2]
			s0, s1, s2 := row(0), row(1), row(2)
			s0, s1, s2 = s0[:len(acc)], s1[:len(acc)], s2[:len(acc)]
			for q := range acc {
				acc[q] = w0*s0[q] + w1*s1[q] + w2*s2[q]
			}
		default:
			clear(acc)
			for k, w := range ws {
				src := row(k)[:len(acc)]
				for q, v := range src {
					acc[q] += w * v
				}
			}
		}
		for c := range 3 {
			out := dst[(c*size+i)*size : (c*size+i+1)*size]
			for j, v := range acc[c*size : (c+1)*size] {
				out[j] = uint8(min(max(v, 0), 255) + 0.5)
			}
		}
	}
	return nil
}

// prepRow resamples one source row, RGB interleaved (row), along the axis
// xs whose span starts at x0, into the channels r, g, b.
func prepRow(r, g, b, row []float32, xs prepAxis, x0 int) {
	n := len(xs.first)
	r, g, b = r[:n], g[:n], b[:n]
	switch xs.n {
	case 1:
		for j, f := range xs.first {
			w := xs.w[j]
			src := row[3*(f-x0) : 3*(f-x0)+3]
			r[j], g[j], b[j] = w*src[0], w*src[1], w*src[2]
		}
	case 2:
		ws := xs.w[:2*n]
		for j, f := range xs.first {
			w0, w1 := ws[2*j], ws[2*j+1]
			src := row[3*(f-x0) : 3*(f-x0)+6]
			r[j] = w0*src[0] + w1*src[3]
			g[j] = w0*src[1] + w1*src[4]
			b[j] = w0*src[2] + w1*src[5]
		}
	case 3:
		ws := xs.w[:3*n]
		for j, f := range xs.first {
			w0, w1, w2 := ws[3*j], ws[3*j+1], ws[3*j+2]
			src := row[3*(f-x0) : 3*(f-x0)+9]
			r[j] = w0*src[0] + w1*src[3] + w2*src[6]
			g[j] = w0*src[1] + w1*src[4] + w2*src[7]
			b[j] = w0*src[2] + w1*src[5] + w2*src[8]
		}
	default:
		m := xs.n
		for j, f := range xs.first {
			ws := xs.w[j*m : j*m+m]
			src := row[3*(f-x0) : 3*(f-x0+m)]
			var vr, vg, vb float32
			for k, w := range ws {
				px := src[3*k : 3*k+3]
				vr += w * px[0]
				vg += w * px[1]
				vb += w * px[2]
			}
			r[j], g[j], b[j] = vr, vg, vb
		}
	}
}

// readRGBRow writes n pixels of row y of img from column x as R, G, B on
// the 0..255 scale, interleaved, into dst (n, 3): image.Image's RGBA()/257.
func readRGBRow(dst []float32, img image.Image, x, y, n int) {
	dst = dst[:3*n]
	const k = 1.0 / 257
	switch m := img.(type) {
	case *image.YCbCr:
		// color.YCbCr's RGBA, inlined: the 16-bit conversion, unrounded.
		yrow := m.Y[m.YOffset(x, y):]
		yrow = yrow[:n]
		var shift uint // chroma columns are x >> shift
		switch m.SubsampleRatio {
		case image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420:
			shift = 1
		case image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410:
			shift = 2
		}
		if x < 0 || m.Rect.Min.X < 0 {
			// image.YCbCr divides, rounding towards zero; a shift would not.
			for i := range n {
				r, g, b, _ := m.YCbCrAt(x+i, y).RGBA()
				dst[3*i], dst[3*i+1], dst[3*i+2] = float32(r)*k, float32(g)*k, float32(b)*k
			}
			return
		}
		cb := m.Cb[m.COffset(m.Rect.Min.X, y):]
		cr := m.Cr[m.COffset(m.Rect.Min.X, y):]
		cmin := m.Rect.Min.X >> shift
		for i, yv := range yrow {
			ci := (x+i)>>shift - cmin
			yy := int32(yv) * 0x10101
			cbv, crv := int32(cb[ci])-128, int32(cr[ci])-128
			dst[3*i] = float32(clamp16(yy+91881*crv)) * k
			dst[3*i+1] = float32(clamp16(yy-22554*cbv-46802*crv)) * k
			dst[3*i+2] = float32(clamp16(yy+116130*cbv)) * k
		}
	case *image.Gray:
		row := m.Pix[m.PixOffset(x, y):]
		row = row[:n]
		for i, v := range row {
			f := float32(v)
			dst[3*i], dst[3*i+1], dst[3*i+2] = f, f, f
		}
	case *image.RGBA: // premultiplied: over black
		row := m.Pix[m.PixOffset(x, y):]
		row = row[:4*n]
		for i := range n {
			dst[3*i], dst[3*i+1], dst[3*i+2] = float32(row[4*i]), float32(row[4*i+1]), float32(row[4*i+2])
		}
	case *image.NRGBA:
		for i := range n {
			r, g, b, _ := m.NRGBAAt(x+i, y).RGBA()
			dst[3*i], dst[3*i+1], dst[3*i+2] = float32(r)*k, float32(g)*k, float32(b)*k
		}
	case *image.CMYK:
		for i := range n {
			r, g, b, _ := m.CMYKAt(x+i, y).RGBA() // as color.RGBAModel converts it
			dst[3*i], dst[3*i+1], dst[3*i+2] = float32(r)*k, float32(g)*k, float32(b)*k
		}
	default:
		for i := range n {
			r, g, b, _ := img.At(x+i, y).RGBA()
			dst[3*i], dst[3*i+1], dst[3*i+2] = float32(r)*k, float32(g)*k, float32(b)*k
		}
	}
}

// clamp16 is v >> 8 clamped to [0, 0xffff], as color.YCbCr's RGBA does.
func clamp16(v int32) int32 {
	if uint32(v)&0xff000000 == 0 {
		return v >> 8
	}
	return ^(v >> 31) & 0xffff
}

// prepProgress reports Prepare's progress: on a terminal one line redrawn
// in place with a bar, images/s and ETA; elsewhere a plain line every tenth
// or every 30 seconds.
type prepProgress struct {
	mu          sync.Mutex
	w           io.Writer
	terminal    bool
	total, done int
	began, last time.Time
	printed     int
}

func newPrepProgress(w io.Writer, total int) *prepProgress {
	p := &prepProgress{w: w, total: total, began: time.Now()}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	if !p.terminal {
		p.last = p.began // the first plain line after a tenth or 30 s
	}
	return p
}

func (p *prepProgress) add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	now := time.Now()
	el := now.Sub(p.began)
	rate := float64(p.done) / el.Seconds()
	eta := time.Duration(float64(el) / float64(p.done) * float64(p.total-p.done)).Round(time.Second)
	if p.terminal {
		if now.Sub(p.last) < 200*time.Millisecond && p.done != p.total {
			return
		}
		const width = 24
		fill := width * p.done / max(p.total, 1)
		fmt.Fprintf(p.w, "\rprepare [%s%s] %d/%d images %.0f img/s ETA %v  ", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), p.done, p.total, rate, eta)
		p.last = now
		return
	}
	every := max(1, p.total/10)
	if p.done == p.total || p.done/every > p.printed/every || now.Sub(p.last) >= 30*time.Second {
		fmt.Fprintf(p.w, "prepare: %d/%d images %.0f img/s ETA %v\n", p.done, p.total, rate, eta)
		p.last, p.printed = now, p.done
	}
}

// finish ends the line on a terminal.
func (p *prepProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal && p.done > 0 {
		fmt.Fprintln(p.w)
	}
}

// PrepareImage is what Prepare does to one image, for images that arrive
// one at a time (trainer predict): the shorter side rescaled to size, the
// central size×size kept, as (3, size, size) RGB.
func PrepareImage(img image.Image, size int) ([]uint8, error) {
	dst := make([]uint8, 3*size*size)
	if err := prepImage(img, size, dst, &prepScratch{}); err != nil {
		return nil, err
	}
	return dst, nil
}
