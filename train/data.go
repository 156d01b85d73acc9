package train

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/alexnet-go/trainer/data"
	"github.com/alexnet-go/trainer/model"
)

// dataset is a run's data: the net built for it, its loaders and the
// preprocessing to store with the weights.
type dataset struct {
	net        *model.Net
	train, val Batcher
	trainN     int
	pre        model.Preprocess
	desc       string
}

// openData opens --data: a folder trainer prepare wrote (meta.json),
// CIFAR-10's binary batches, or an IDX directory.
func openData(c Config) (*dataset, error) {
	if _, err := os.Stat(filepath.Join(c.Data, "meta.json")); err == nil {
		return openPrepared(c)
	}
	load := data.LoadIDX
	for _, f := range []string{"data_batch_1.bin", "cifar-10-batches-bin"} {
		if _, err := os.Stat(filepath.Join(c.Data, f)); err == nil {
			load = data.LoadCIFAR
		}
	}
	trainSet, valSet, err := load(c.Data)
	if err != nil {
		return nil, err
	}
	if c.Limit > 0 {
		trainSet = data.Limit(trainSet, c.Limit)
	}
	if c.ValLimit > 0 {
		valSet = data.Limit(valSet, c.ValLimit)
	}
	net, err := model.Build(c.Net, model.Options{Channels: trainSet.C, Classes: len(trainSet.Classes), LRN: c.LRN,
		Activation: c.Activation, Pool: c.Pool})
	if err != nil {
		return nil, err
	}
	size := net.Input.H
	if trainSet.H > size || trainSet.W > size {
		return nil, fmt.Errorf("--net %s takes %d×%d images; %s holds %d×%d", c.Net, size, size, c.Data, trainSet.H, trainSet.W)
	}
	if size > 2*max(trainSet.H, trainSet.W) {
		return nil, fmt.Errorf("--net %s takes %d×%d images; %s holds %d×%d images, too small to upscale that far: use alexnet-small or a prepared ImageNet folder", c.Net, size, size, c.Data, trainSet.H, trainSet.W)
	}
	// Random crops with padding and flips, the paper's augmentation that
	// fits 28×28 images: translations by up to ±2 pixels on a 32×32 canvas.
	aug := data.Augment{Size: size, Pad: 2, Crop: true, Flip: true}
	mean := data.MeanImage(trainSet, size)
	tl, err := data.NewLoader(trainSet, data.LoaderOptions{Batch: c.Batch, Seed: c.Seed, Shuffle: true, Augment: aug, Mean: mean, Workers: c.Workers, DropLast: true})
	if err != nil {
		return nil, err
	}
	vl, err := data.NewLoader(valSet, data.LoaderOptions{Batch: c.Batch, Seed: c.Seed, Augment: data.Augment{Size: size, Pad: 2}, Mean: mean, Workers: c.Workers})
	if err != nil {
		return nil, err
	}
	return &dataset{net: net, train: tl, val: vl, trainN: trainSet.N,
		pre: model.Preprocess{Net: net.Name, LRN: net.LRN, Activation: net.Activation, Pool: net.Pool,
			Classes: trainSet.Classes, C: trainSet.C, ImageH: trainSet.H, ImageW: trainSet.W, Canvas: size, Mean: mean},
		desc: fmt.Sprintf("%d training, %d validation images of %d×%d×%d, %d classes", trainSet.N, valSet.N, trainSet.C, trainSet.H, trainSet.W, len(trainSet.Classes))}, nil
}

// openPrepared trains on prepared data with the paper's augmentation (§2,
// §4.1): random crops of the 256×256 images at the net's input size,
// reflections, PCA colour noise, the mean image subtracted; validation
// takes the centre crop.
func openPrepared(c Config) (*dataset, error) {
	p, err := data.OpenPrepared(c.Data)
	if err != nil {
		return nil, err
	}
	if p.Val == nil || p.Val.N() == 0 {
		return nil, fmt.Errorf("--data %s: the prepared data has no validation images (give the source a val/ folder and prepare it again)", c.Data)
	}
	net, err := model.Build(c.Net, model.Options{Channels: p.C, Classes: len(p.Classes), LRN: c.LRN,
		Activation: c.Activation, Pool: c.Pool})
	if err != nil {
		return nil, err
	}
	crop := net.Input.H
	if crop > p.Size || net.Input.C != p.C {
		return nil, fmt.Errorf("--net %s takes %v crops; %s holds %d×%d×%d images: prepare with --size %d or more", c.Net, net.Input, c.Data, p.C, p.Size, p.Size, crop)
	}
	var src data.CropSource = p.Train
	if c.Limit > 0 && c.Limit < p.Train.N() {
		src = limited{p.Train, c.Limit}
	}
	aug := data.CropAugment{Crop: crop, Flip: true, Random: true, PCAStd: 0.1, EigVec: p.EigVec}
	// The noise Σ α_i λ_i p_i is added to raw pixels. With λ_i the
	// covariance's eigenvalues (pixel levels squared) it would move pixels
	// by hundreds; like most reproductions (fb.resnet.torch's "lighting")
	// we use the standard deviation along p_i, √λ_i, so α ~ N(0, 0.1)
	// shifts colours by a few levels.
	for i, v := range p.EigVal {
		aug.EigVal[i] = math.Sqrt(max(v, 0))
	}
	tl, err := data.NewCropLoader(src, data.CropLoaderOptions{Batch: c.Batch, Seed: c.Seed, Shuffle: true, DropLast: true, Augment: aug, Mean: p.Mean, Workers: c.Workers})
	if err != nil {
		return nil, err
	}
	var val data.CropSource = p.Val
	if c.ValLimit > 0 && c.ValLimit < p.Val.N() {
		val = limited{p.Val, c.ValLimit}
	}
	vl, err := data.NewCropLoader(val, data.CropLoaderOptions{Batch: c.Batch, Seed: c.Seed, Augment: data.CropAugment{Crop: crop}, Mean: p.Mean, Workers: c.Workers})
	if err != nil {
		return nil, err
	}
	return &dataset{net: net, train: tl, val: vl, trainN: src.N(),
		pre: model.Preprocess{Net: net.Name, LRN: net.LRN, Activation: net.Activation, Pool: net.Pool,
			Classes: p.Classes, C: p.C, ImageH: p.Size, ImageW: p.Size,
			Canvas: crop, Mean: p.Mean, Prepared: true},
		desc: fmt.Sprintf("prepared: %d training, %d validation images of %d×%d×%d, %d classes, %d×%d crops", src.N(), val.N(), p.C, p.Size, p.Size, len(p.Classes), crop, crop)}, nil
}

// limited is the first n images of a source (--limit).
type limited struct {
	data.CropSource
	n int
}

func (l limited) N() int { return l.n }

// NetOf builds the net that c trains, on c.Data's channels and classes
// (which it reads), without training or loading weights: what a report
// needs of a run whose weights were not kept.
func NetOf(c Config) (*model.Net, error) {
	d, err := openData(c)
	if err != nil {
		return nil, err
	}
	return d.net, nil
}
