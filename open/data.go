package open

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/alexnet-go/trainer/data"
	"github.com/alexnet-go/trainer/model"
)

// DataOptions say which data set to open for training and how.
type DataOptions struct {
	Dir string // --data: an IDX directory, CIFAR-10's binary batches, or a folder trainer prepare wrote
	// Net and its variant, built for the data's channels and classes.
	Net                   string
	LRN, Activation, Pool string
	Batch                 int
	Seed                  uint64
	// ValSplit holds the last N training images of an in-memory set (IDX,
	// CIFAR-10) out of training, to validate on: 0 chooses a tenth of
	// them, at most DefaultValSplit; -1 holds none out, and the test set
	// validates, as in runs from before the split. Prepared data
	// validates on its own val split and ignores it.
	ValSplit int
	// Limit: the first N of the training images left after the split only
	// (0: all); ValLimit: the first N validation and test images only.
	Limit, ValLimit int
	Workers         int // loader goroutines; 0: one per core
}

// DefaultValSplit is the most training images ValSplit 0 holds out: 5,000
// of Fashion-MNIST's 60,000 (balanced: 450 to 527 per class) and of
// CIFAR-10's 50,000.
const DefaultValSplit = 5000

// NoValSplit is ValSplit's value for no held-out split (runs from before
// it): the test set validates.
const NoValSplit = -1

// Split names for Dataset.ValSet and metrics' val_set.
const (
	HeldOut  = "held-out" // the last training images, kept out of training
	ValSplit = "val"      // prepared data's val split
	TestSet  = "test"     // the test set: validation of runs from before the split
)

// heldOut is how many of n training images ValSplit v holds out.
func heldOut(v, n int) int {
	switch {
	case v == NoValSplit:
		return 0
	case v == 0:
		return min(DefaultValSplit, n/10)
	}
	return v
}

// splitTail returns s without its last n images, and those n images.
func splitTail(s *data.Set, n int) (head, tail *data.Set) {
	per := s.C * s.H * s.W
	k := s.N - n
	h, t := *s, *s
	h.Name, t.Name = fmt.Sprintf("%s[:%d]", s.Name, k), fmt.Sprintf("%s[%d:]", s.Name, k)
	h.N, t.N = k, n
	h.Pixels, t.Pixels = s.Pixels[:k*per:k*per], s.Pixels[k*per:]
	h.Labels, t.Labels = s.Labels[:k:k], s.Labels[k:]
	return &h, &t
}

// Dataset is a run's data: the net built for it, its loaders and the
// preprocessing to store with the weights.
type Dataset struct {
	Net        *model.Net
	Train, Val data.Batcher
	// Test scores the test set each epoch, for the record only; nil where
	// the test set validates (ValSplit -1) or there is none (prepared).
	Test   data.Batcher
	ValSet string           // what Val scores: HeldOut, ValSplit or TestSet
	TrainN int              // training images per epoch
	ValN   int              // validation images
	Pre    model.Preprocess // what eval and predict must do to an image, stored with the weights
	Desc   string           // one line for the run's log
	// Fingerprint identifies the data's content (images, labels, classes),
	// wherever it lies: a run records it, a resume checks it.
	Fingerprint string
	closer      io.Closer
}

// Close releases the data's files (the prepared shards).
func (d *Dataset) Close() error {
	if d.closer == nil {
		return nil
	}
	return d.closer.Close()
}

// kind says what a --data directory holds.
type kind int

const (
	idxData kind = iota
	cifarData
	preparedData
)

func kindOf(dir string) kind {
	if _, err := os.Stat(filepath.Join(dir, "meta.json")); err == nil {
		return preparedData
	}
	for _, f := range []string{"data_batch_1.bin", "cifar-10-batches-bin"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return cifarData
		}
	}
	return idxData
}

// loadSmall reads an in-memory data set (IDX or CIFAR-10).
func loadSmall(dir string) (train, test *data.Set, err error) {
	if kindOf(dir) == cifarData {
		return data.LoadCIFAR(dir)
	}
	return data.LoadIDX(dir)
}

// The preprocessing of the small in-memory sets (Fashion-MNIST, CIFAR-10):
// the image centred on the net's input canvas with 2 pixels of room, the
// training set's mean image subtracted; training adds random translations
// by up to ±2 pixels and reflections, the paper's augmentation (§4.1) that
// fits 28×28 images.
func smallAugment(canvas int, training bool) data.Augment {
	return data.Augment{Size: canvas, Pad: 2, Crop: training, Flip: training}
}

// The preprocessing of prepared data (§2, §4.1): random crops of the
// 256×256 images at the net's input size, reflections and PCA colour noise
// for training; the centre crop (or the ten patches) for scoring.
func preparedAugment(crop int, p *data.Prepared, training bool) data.CropAugment {
	if !training {
		return data.CropAugment{Crop: crop}
	}
	a := data.CropAugment{Crop: crop, Flip: true, Random: true, PCAStd: 0.1, EigVec: p.EigVec}
	// The noise Σ α_i λ_i p_i is added to raw pixels. With λ_i the
	// covariance's eigenvalues (pixel levels squared) it would move pixels
	// by hundreds; like most reproductions (fb.resnet.torch's "lighting")
	// we use the standard deviation along p_i, √λ_i, so α ~ N(0, 0.1)
	// shifts colours by a few levels.
	for i, v := range p.EigVal {
		a.EigVal[i] = math.Sqrt(max(v, 0))
	}
	return a
}

// Data opens o.Dir for training: the net built for its channels and
// classes, a shuffled, augmented training loader and a validation loader.
func Data(o DataOptions) (*Dataset, error) {
	if kindOf(o.Dir) == preparedData {
		return openPrepared(o)
	}
	trainSet, testSet, err := loadSmall(o.Dir)
	if err != nil {
		return nil, err
	}
	fp := fingerprint(trainSet, testSet)
	// The held-out split first, then --limit within what is left: the
	// split never changes with --limit and never meets the images trained
	// on.
	valSet, valName := testSet, TestSet
	if o.ValSplit < NoValSplit {
		return nil, fmt.Errorf("--val-split %d: must be 0 (a tenth, at most %s) or more", o.ValSplit, model.Commas(DefaultValSplit))
	}
	if k := heldOut(o.ValSplit, trainSet.N); k > 0 {
		if k >= trainSet.N {
			return nil, fmt.Errorf("--val-split %d: %s holds only %d training images; hold out fewer", k, o.Dir, trainSet.N)
		}
		trainSet, valSet = splitTail(trainSet, k)
		valName = HeldOut
	} else {
		testSet = nil
	}
	if o.Limit > 0 {
		trainSet = data.Limit(trainSet, o.Limit)
	}
	if o.ValLimit > 0 {
		valSet = data.Limit(valSet, o.ValLimit)
		if testSet != nil {
			testSet = data.Limit(testSet, o.ValLimit)
		}
	}
	net, err := model.Build(o.Net, model.Options{Channels: trainSet.C, Classes: len(trainSet.Classes), LRN: o.LRN,
		Activation: o.Activation, Pool: o.Pool})
	if err != nil {
		return nil, err
	}
	size := net.Input.H
	if trainSet.H > size || trainSet.W > size {
		return nil, fmt.Errorf("--net %s takes %d×%d images; %s holds %d×%d", o.Net, size, size, o.Dir, trainSet.H, trainSet.W)
	}
	if size > 2*max(trainSet.H, trainSet.W) {
		return nil, fmt.Errorf("--net %s takes %d×%d images; %s holds %d×%d images, too small to upscale that far: use alexnet-small or a prepared ImageNet folder", o.Net, size, size, o.Dir, trainSet.H, trainSet.W)
	}
	mean := data.MeanImage(trainSet, size)
	tl, err := data.NewLoader(trainSet, data.LoaderOptions{Batch: o.Batch, Seed: o.Seed, Shuffle: true, Augment: smallAugment(size, true), Mean: mean, Workers: o.Workers, DropLast: true})
	if err != nil {
		return nil, err
	}
	vl, err := data.NewLoader(valSet, data.LoaderOptions{Batch: o.Batch, Seed: o.Seed, Augment: smallAugment(size, false), Mean: mean, Workers: o.Workers})
	if err != nil {
		return nil, err
	}
	d := &Dataset{Net: net, Train: tl, Val: vl, ValSet: valName, TrainN: trainSet.N, ValN: valSet.N, Fingerprint: fp,
		Pre: model.Preprocess{Net: net.Name, LRN: net.LRN, Activation: net.Activation, Pool: net.Pool,
			Classes: trainSet.Classes, C: trainSet.C, ImageH: trainSet.H, ImageW: trainSet.W, Canvas: size, Mean: mean}}
	val := fmt.Sprintf("%d validation (the test set)", valSet.N)
	if testSet != nil {
		if d.Test, err = data.NewLoader(testSet, data.LoaderOptions{Batch: o.Batch, Seed: o.Seed, Augment: smallAugment(size, false), Mean: mean, Workers: o.Workers}); err != nil {
			return nil, err
		}
		val = fmt.Sprintf("%d validation (held out: the last training images), %d test", valSet.N, testSet.N)
	}
	d.Desc = fmt.Sprintf("%d training, %s images of %d×%d×%d, %d classes", trainSet.N, val, trainSet.C, trainSet.H, trainSet.W, len(trainSet.Classes))
	return d, nil
}

// openPrepared opens a folder trainer prepare wrote for training.
func openPrepared(o DataOptions) (_ *Dataset, err error) {
	p, err := data.OpenPrepared(o.Dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.Val == nil || p.Val.N() == 0 {
		return nil, fmt.Errorf("--data %s: the prepared data has no validation images (give the source a val/ folder and prepare it again)", o.Dir)
	}
	net, err := model.Build(o.Net, model.Options{Channels: p.C, Classes: len(p.Classes), LRN: o.LRN,
		Activation: o.Activation, Pool: o.Pool})
	if err != nil {
		return nil, err
	}
	crop := net.Input.H
	if crop > p.Size || net.Input.C != p.C {
		return nil, fmt.Errorf("--net %s takes %v crops; %s holds %d×%d×%d images: prepare with --size %d or more", o.Net, net.Input, o.Dir, p.C, p.Size, p.Size, crop)
	}
	var src data.CropSource = p.Train
	if o.Limit > 0 && o.Limit < p.Train.N() {
		src = data.Spread(p.Train, o.Limit)
	}
	tl, err := data.NewCropLoader(src, data.CropLoaderOptions{Batch: o.Batch, Seed: o.Seed, Shuffle: true, DropLast: true, Augment: preparedAugment(crop, p, true), Mean: p.Mean, Workers: o.Workers})
	if err != nil {
		return nil, err
	}
	var val data.CropSource = p.Val
	if o.ValLimit > 0 && o.ValLimit < p.Val.N() {
		val = data.Spread(p.Val, o.ValLimit)
	}
	vl, err := data.NewCropLoader(val, data.CropLoaderOptions{Batch: o.Batch, Seed: o.Seed, Augment: preparedAugment(crop, p, false), Mean: p.Mean, Workers: o.Workers})
	if err != nil {
		return nil, err
	}
	meta, err := os.ReadFile(filepath.Join(o.Dir, "meta.json"))
	if err != nil {
		return nil, fmt.Errorf("--data %s: %v", o.Dir, err)
	}
	return &Dataset{Net: net, Train: tl, Val: vl, ValSet: ValSplit, TrainN: src.N(), ValN: val.N(), closer: p, Fingerprint: fmt.Sprintf("prepared:%x", sha256.Sum256(meta)),
		Pre: model.Preprocess{Net: net.Name, LRN: net.LRN, Activation: net.Activation, Pool: net.Pool,
			Classes: p.Classes, C: p.C, ImageH: p.Size, ImageW: p.Size,
			Canvas: crop, Mean: p.Mean, Prepared: true},
		Desc: fmt.Sprintf("prepared: %d training, %d validation images (the val split; no test set) of %d×%d×%d, %d classes, %d×%d crops", src.N(), val.N(), p.C, p.Size, p.Size, len(p.Classes), crop, crop)}, nil
}

// fingerprint hashes in-memory sets' shapes, classes, labels and pixels
// (CRC-32C: Fashion-MNIST's 55 MB take a few milliseconds).
func fingerprint(sets ...*data.Set) string {
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	for _, s := range sets {
		fmt.Fprintf(h, "%d,%d,%d,%d,%q;", s.N, s.C, s.H, s.W, s.Classes)
		for _, l := range s.Labels {
			h.Write([]byte{byte(l), byte(l >> 8)})
		}
		h.Write(s.Pixels)
	}
	return fmt.Sprintf("crc32c:%08x", h.Sum32())
}

// Scoring is a data set's held-out images, preprocessed as training's
// validation was, for eval.
type Scoring struct {
	Images data.Batcher
	// Patches is how many consecutive inputs make one image: 10 for the
	// paper's ten-patch evaluation (§2), else 1.
	Patches int
	// Batch is the most inputs (images × patches) one batch holds: the
	// runner's batch size.
	Batch int
	// Split names what is scored: "test" (IDX, CIFAR-10) or "val" (prepared).
	Split string
	// Note, when not empty, is a line for the user: the data's class names
	// differ from the weights' (labels are indices, so it scores).
	Note   string
	closer io.Closer
}

// Close releases the data's files.
func (s *Scoring) Close() error {
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}

// ErrTenCrop is returned for ten-patch scoring of weights trained on an
// in-memory set, whose images have no larger source to cut patches from.
var ErrTenCrop = errors.New("ten-patch scoring needs prepared data")

// ScoringData opens dir's held-out images for the trained net t, checking
// that they are the kind, size and classes t was trained on: the test set
// of an IDX or CIFAR-10 directory, the val split of prepared data (ten
// patches per image if tenCrop). Batches hold up to batch images.
func ScoringData(t *Trained, dir string, batch int, tenCrop bool) (*Scoring, error) {
	pre := t.Pre
	if pre.Prepared {
		return scoringPrepared(t, dir, batch, tenCrop)
	}
	if tenCrop {
		return nil, fmt.Errorf("--ten-crop: the weights %s were trained on a small in-memory set: %w", t.Path, ErrTenCrop)
	}
	k := kindOf(dir)
	if k == preparedData {
		return nil, fmt.Errorf("--data %s: prepared data, but --weights %s were trained on an in-memory set of %d×%d×%d images: give that data set's directory", dir, t.Path, pre.C, pre.ImageH, pre.ImageW)
	}
	load := data.LoadIDXTest
	if k == cifarData {
		load = data.LoadCIFARTest
	}
	test, err := load(dir)
	if err != nil {
		return nil, err
	}
	if test.C != pre.C || test.H != pre.ImageH || test.W != pre.ImageW {
		return nil, fmt.Errorf("--data %s: images of %d×%d×%d (C×H×W), but --weights %s were trained on %d×%d×%d",
			dir, test.C, test.H, test.W, t.Path, pre.C, pre.ImageH, pre.ImageW)
	}
	note, err := t.classesNote(dir, test.Classes)
	if err != nil {
		return nil, err
	}
	batch = min(batch, test.N)
	l, err := data.NewLoader(test, data.LoaderOptions{Batch: batch, Augment: smallAugment(pre.Canvas, false), Mean: pre.Mean})
	if err != nil {
		return nil, err
	}
	return &Scoring{Images: l, Patches: 1, Batch: batch, Split: "test", Note: note}, nil
}

func scoringPrepared(t *Trained, dir string, batch int, tenCrop bool) (_ *Scoring, err error) {
	p, err := data.OpenPrepared(dir)
	if err != nil {
		return nil, fmt.Errorf("--data: the weights %s were trained on prepared data; give a folder trainer prepare wrote: %w", t.Path, err)
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	pre := t.Pre
	if p.C != pre.C || p.Size != pre.ImageH || len(p.Classes) != len(pre.Classes) {
		return nil, fmt.Errorf("--data %s: %d×%d×%d images of %d classes, but --weights %s were trained on %d×%d×%d of %d",
			dir, p.C, p.Size, p.Size, len(p.Classes), t.Path, pre.C, pre.ImageH, pre.ImageW, len(pre.Classes))
	}
	if p.Val == nil || p.Val.N() == 0 {
		return nil, fmt.Errorf("--data %s: no validation images to score", dir)
	}
	k := 1
	if tenCrop {
		k = 10
	}
	batch = min(batch, p.Val.N())
	l, err := data.NewCropLoader(p.Val, data.CropLoaderOptions{Batch: batch, Augment: preparedAugment(pre.Canvas, p, false), Mean: pre.Mean, TenCrop: tenCrop})
	if err != nil {
		return nil, err
	}
	return &Scoring{Images: l, Patches: k, Batch: batch * k, Split: "val", closer: p}, nil
}
