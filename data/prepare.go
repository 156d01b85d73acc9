package data

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/alexnet-go/trainer/internal/safefile"
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
// holding a data set prepared from another source or at another size. It
// writes only into a folder of its own: Out must be new, empty, or
// Prepare's output (complete, or interrupted and to be resumed); one
// holding anything else, a user's files or the current folder, is refused
// and left untouched.
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
	// One prepare at a time writes a folder: a second is refused, naming
	// the first's pid; the lock ends with the process however it ends.
	lk, err := safefile.LockDir(p.out)
	if errors.Is(err, safefile.ErrLocked) {
		return nil, fmt.Errorf("--out %w; wait for it or choose another directory", err)
	}
	if err != nil {
		return nil, &FileError{Path: p.o.Out, Problem: "lock output folder: " + openProblem(err), Kind: ErrFormat, Err: err}
	}
	defer lk.Close()
	if _, err := safefile.RemoveTemps(p.out); err != nil {
		return nil, &FileError{Path: p.o.Out, Problem: "remove unfinished files: " + openProblem(err), Kind: ErrFormat, Err: err}
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

// checkOut refuses an output directory that is not Prepare's own: one
// holding anything Prepare does not write (see foreignEntries), or another
// data set.
func (p *preparer) checkOut() error {
	des, err := os.ReadDir(p.out)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return &FileError{Path: p.o.Out, Problem: "output folder: " + openProblem(err), Hint: "give --out a new or empty folder", Kind: ErrFormat, Err: err}
	}
	if foreign := foreignEntries(des); len(foreign) > 0 {
		list := strings.Join(foreign[:min(3, len(foreign))], ", ")
		if len(foreign) > 3 {
			list += fmt.Sprintf(" and %d more", len(foreign)-3)
		}
		return &FileError{Path: p.o.Out, Problem: "output folder holds files trainer prepare did not write (" + list + ")",
			Hint: "give --out a new or empty folder: prepare writes only into a folder of its own", Kind: ErrFormat}
	}
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

// foreignEntries returns the names in an output folder that Prepare did not
// write, in order. Prepare's own are the names it writes: the shards and
// their statistics (prepFileRE), meta.json, mean.f32 and report.txt, each
// perhaps with ".tmp" (unfinished). An interrupted run leaves shards and
// statistics without meta.json, so those names, not meta.json, are what
// mark a folder as Prepare's; report.txt and mean.f32 are names a user's
// files may have, so without meta.json or a shard's files beside them
// they count as foreign.
func foreignEntries(des []os.DirEntry) []string {
	var foreign, generic []string
	marked := false
	for _, de := range des {
		name := strings.TrimSuffix(de.Name(), ".tmp")
		switch {
		case de.IsDir():
			foreign = append(foreign, de.Name()+"/")
		case prepFileRE.MatchString(de.Name()), name == metaName:
			marked = true
		case de.Name() == safefile.LockName, safefile.IsTemp(de.Name()):
			// The lock and the unfinished atomic writes are its own, but
			// mark nothing: any folder a writer used may hold them.
		case name == meanName, name == reportName:
			generic = append(generic, de.Name())
		default:
			foreign = append(foreign, de.Name())
		}
	}
	if !marked {
		foreign = append(foreign, generic...)
		slices.Sort(foreign)
	}
	return foreign
}

// removeStale removes unfinished files and shards beyond a split's count,
// left by an earlier run over a larger source.
func (p *preparer) removeStale(total map[string]int) error {
	des, err := os.ReadDir(p.out)
	if err != nil {
		return &FileError{Path: p.o.Out, Problem: openProblem(err), Kind: ErrFormat, Err: err}
	}
	for _, de := range des {
		switch de.Name() {
		case metaName + ".tmp", meanName + ".tmp", reportName + ".tmp": // an older prepare's unfinished writes
			if err := os.Remove(p.path(de.Name())); err != nil {
				return &FileError{Path: p.path(de.Name()), Problem: "remove: " + openProblem(err), Kind: ErrFormat, Err: err}
			}
			continue
		}
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
			var sc resampleScratch
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
func (p *preparer) process(j prepJob, sc *resampleScratch) prepOut {
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
	var train []*shardStats
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
			train = append(train, st)
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

	mean, err := meanAndPCA(train, m)
	if err != nil {
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

// writeFileAtomic writes b to path atomically (safefile.WriteFile), with
// the error in this package's form.
func writeFileAtomic(path string, b []byte) error {
	if err := safefile.WriteFile(path, b); err != nil {
		return &FileError{Path: path, Problem: "write: " + openProblem(err), Kind: ErrFormat, Err: err}
	}
	return nil
}
