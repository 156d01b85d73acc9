package model

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Preprocess is what turns an image into the net's input, stored in the
// weights file's metadata so that eval and predict apply what training did.
type Preprocess struct {
	Net        string    // the net the weights belong to
	LRN        string    // its LRN α convention, or "none"
	Activation string    // its activation, "relu" or "tanh" ("" in older weights: relu)
	Pool       string    // its max pooling, "3/2" or "2/2" ("" in older weights: 3/2)
	Classes    []string  // class names, in label order
	ImageH     int       // the data set's images are ImageH×ImageW×C
	ImageW     int       //
	C          int       //
	Canvas     int       // they are centred on a Canvas×Canvas input
	Mean       []float32 // (C, Canvas, Canvas) subtracted from raw 0..255 pixels
	// Prepared marks data made by trainer prepare: the images are
	// ImageH×ImageW (256×256) and the net sees their centre Canvas×Canvas
	// crop (227); Mean is then (C, ImageH, ImageW), taken at the source
	// position.
	Prepared bool
}

// MeanLen is the number of values Mean holds.
func (p Preprocess) MeanLen() int {
	if p.Prepared {
		return p.C * p.ImageH * p.ImageW
	}
	return p.C * p.Canvas * p.Canvas
}

// Metadata encodes p as safetensors metadata (strings only).
func (p Preprocess) Metadata() map[string]string {
	b := make([]byte, 0, 4*len(p.Mean))
	for _, v := range p.Mean {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	layout := "canvas"
	if p.Prepared {
		layout = "prepared"
	}
	return map[string]string{
		"layout":     layout,
		"net":        p.Net,
		"lrn":        p.LRN,
		"activation": p.Activation,
		"pool":       p.Pool,
		"classes":    strings.Join(p.Classes, "\n"),
		"image":      fmt.Sprintf("%d,%d,%d", p.C, p.ImageH, p.ImageW),
		"canvas":     strconv.Itoa(p.Canvas),
		"mean":       base64.StdEncoding.EncodeToString(b),
	}
}

// PreprocessFrom decodes the metadata Metadata wrote. Weights written by
// other tools lack it; the error says so.
func PreprocessFrom(meta map[string]string) (Preprocess, error) {
	p := Preprocess{Net: meta["net"], LRN: meta["lrn"], Activation: meta["activation"], Pool: meta["pool"],
		Prepared: meta["layout"] == "prepared"}
	if meta["classes"] == "" || meta["image"] == "" || meta["canvas"] == "" {
		return p, fmt.Errorf("the weights carry no preprocessing (net, classes, image, canvas, mean): they were not written by trainer train")
	}
	p.Classes = strings.Split(meta["classes"], "\n")
	if _, err := fmt.Sscanf(meta["image"], "%d,%d,%d", &p.C, &p.ImageH, &p.ImageW); err != nil {
		return p, fmt.Errorf("weights metadata image=%q: %v", meta["image"], err)
	}
	var err error
	if p.Canvas, err = strconv.Atoi(meta["canvas"]); err != nil || p.Canvas < 1 {
		return p, fmt.Errorf("weights metadata canvas=%q is not a size", meta["canvas"])
	}
	b, err := base64.StdEncoding.DecodeString(meta["mean"])
	if err != nil || len(b) != 4*p.MeanLen() {
		return p, fmt.Errorf("weights metadata mean: not the %d float32 values of a (C, H, W) mean image", p.MeanLen())
	}
	p.Mean = make([]float32, len(b)/4)
	for i := range p.Mean {
		p.Mean[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return p, nil
}
