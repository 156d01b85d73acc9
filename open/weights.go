package open

import (
	"fmt"
	"slices"
	"strings"

	"github.com/alexnet-go/trainer/data"
	"github.com/alexnet-go/trainer/model"
	"github.com/alexnet-go/trainer/parallel"
)

// Trained is a net, its weights and the preprocessing its training
// applied, read from a weights file trainer train wrote.
type Trained struct {
	Path string
	Net  *model.Net
	W    model.Weights
	Pre  model.Preprocess
}

// TrainedWeights reads weights written by trainer train and builds their
// net from the file's metadata. Every error names --weights and the file.
func TrainedWeights(path string) (*Trained, error) {
	w, meta, err := model.ReadSafetensors(path)
	if err != nil {
		return nil, fmt.Errorf("--weights: %w", err)
	}
	pre, err := model.PreprocessFrom(meta)
	if err != nil {
		return nil, fmt.Errorf("--weights %s: %w", path, err)
	}
	if (pre.C != 1 && pre.C != 3) || pre.ImageH < 1 || pre.ImageW < 1 {
		return nil, fmt.Errorf("--weights %s: metadata image=%q: want 1 or 3 channels of at least 1×1", path, meta["image"])
	}
	net, err := model.Build(pre.Net, model.Options{Channels: pre.C, Classes: len(pre.Classes), LRN: pre.LRN, Activation: pre.Activation, Pool: pre.Pool})
	if err != nil {
		return nil, fmt.Errorf("--weights %s: %w", path, err)
	}
	if in := net.Input; in.C != pre.C || in.H != pre.Canvas || in.W != pre.Canvas {
		return nil, fmt.Errorf("--weights %s: net %s takes %v inputs, but the metadata says %d channels on a %d×%d canvas", path, net.Name, in, pre.C, pre.Canvas, pre.Canvas)
	}
	if err := model.Weights(w).Check(net); err != nil {
		return nil, fmt.Errorf("--weights %s: %w", path, err)
	}
	return &Trained{Path: path, Net: net, W: model.Weights(w), Pre: pre}, nil
}

// classesNote checks a data set's classes against the weights': a
// different count is an error; different names only a note (labels are
// indices, so it scores, but it may be the wrong data).
func (t *Trained) classesNote(dir string, classes []string) (string, error) {
	pre := t.Pre
	if len(classes) != len(pre.Classes) {
		return "", fmt.Errorf("--data %s: %d classes (%s), but --weights %s were trained on %d (%s)",
			dir, len(classes), classList(classes), t.Path, len(pre.Classes), classList(pre.Classes))
	}
	if !slices.Equal(classes, pre.Classes) {
		return fmt.Sprintf("note: --data %s names its classes %s, the weights %s; scoring by label",
			dir, classList(classes), classList(pre.Classes)), nil
	}
	return "", nil
}

// classList abbreviates a list of class names for a message.
func classList(names []string) string {
	if len(names) <= 3 {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:2], ", ") + ", …, " + names[len(names)-1]
}

// Render writes the net's input for image i of set into dst (C, Canvas,
// Canvas), as training's validation preprocessed it: the centre crop of a
// prepared image, or a small image centred on the canvas, the mean image
// subtracted. set holds images of the size the weights were trained on.
func (t *Trained) Render(dst []float32, set *data.Set, i int) {
	pre := t.Pre
	if pre.Prepared {
		crop := data.CropAugment{Crop: pre.Canvas}
		data.RenderCrop(dst, set.Image(i), pre.ImageH, pre.Canvas, crop.Centre(pre.ImageH), pre.Mean)
		return
	}
	a := smallAugment(pre.Canvas, false)
	a.Render(dst, set, i, a.Centre(set.H, set.W), pre.Mean)
}

// NetWeights reads a safetensors file of the weights of the named net, as
// trainer train or the PyTorch twin wrote them, and builds the net they
// fit: the input channels and classes from the tensors' shapes, the
// variant (LRN convention, activation, pooling) from the file's metadata
// where it has some; lrn, when not empty, overrides the LRN convention.
func NetWeights(path, name, lrn string) (*model.Net, model.Weights, error) {
	if model.InputSize(name) == 0 {
		return nil, nil, fmt.Errorf("--net %q: unknown net (known: %s)", name, strings.Join(model.Names(), ", "))
	}
	if err := model.CheckOptions(lrn, "", ""); err != nil {
		return nil, nil, err
	}
	w, meta, err := model.ReadSafetensors(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--weights: %w", err)
	}
	fc8, conv1 := w["fc8.weight"], w["conv1.weight"]
	if _, two := w["conv1a.weight"]; two {
		conv1 = w["conv1a.weight"]
	}
	if len(fc8.Shape) != 2 || len(conv1.Shape) != 4 {
		return nil, nil, fmt.Errorf("--weights %s: no fc8.weight (classes, in) and conv1 weight: not the weights of an AlexNet", path)
	}
	if lrn == "" {
		lrn = meta["lrn"]
	}
	net, err := model.Build(name, model.Options{Channels: conv1.Shape[1], Classes: fc8.Shape[0], LRN: lrn,
		Activation: meta["activation"], Pool: meta["pool"]})
	if err != nil {
		return nil, nil, err
	}
	if err := model.Weights(w).Check(net); err != nil {
		return nil, nil, fmt.Errorf("--weights %s: %w", path, err)
	}
	return net, w, nil
}

// Placed is a net with its weights on the devices a --gpus value names.
type Placed struct {
	*parallel.Runner
	Devices DeviceList
}

// Place opens the devices spec names (a one-tower net takes the first) and
// places net with weights w on them, for batches of up to batch images.
func Place(net *model.Net, w model.Weights, spec string, o DeviceOptions, batch int) (*Placed, error) {
	spec, _ = ForNet(net, spec)
	devs, err := Devices(spec, o)
	if err != nil {
		return nil, err
	}
	r, err := parallel.New(net, devs, w, parallel.Options{Batch: batch})
	if err != nil {
		devs.Close()
		return nil, err
	}
	return &Placed{Runner: r, Devices: devs}, nil
}

// Close frees the net's buffers and closes the devices.
func (p *Placed) Close() error {
	p.Runner.Close()
	return p.Devices.Close()
}
