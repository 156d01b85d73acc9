package gpu

import (
	"encoding/binary"
	"fmt"
	"math"
)

// ConvShape describes a convolution of N images of C×H×W with K filters of
// C×R×S, applied every Stride pixels on the image zero-padded by Pad.
type ConvShape struct {
	N, C, H, W  int
	K, R, S     int
	Stride, Pad int
}

// P is the output height.
func (s ConvShape) P() int { return (s.H+2*s.Pad-s.R)/s.Stride + 1 }

// Q is the output width.
func (s ConvShape) Q() int { return (s.W+2*s.Pad-s.S)/s.Stride + 1 }

// XLen is the number of input values, N·C·H·W.
func (s ConvShape) XLen() int { return s.N * s.C * s.H * s.W }

// YLen is the number of output values, N·K·P·Q.
func (s ConvShape) YLen() int { return s.N * s.K * s.P() * s.Q() }

// WLen is the number of filter values, K·C·R·S.
func (s ConvShape) WLen() int { return s.K * s.C * s.R * s.S }

// FLOPs is the multiply-adds of the forward pass, counted as two each.
func (s ConvShape) FLOPs() int64 {
	return 2 * int64(s.N) * int64(s.K) * int64(s.P()) * int64(s.Q()) * int64(s.C) * int64(s.R) * int64(s.S)
}

// Validate reports a shape no convolution can have.
func (s ConvShape) Validate() error {
	if s.N < 1 || s.C < 1 || s.H < 1 || s.W < 1 || s.K < 1 || s.R < 1 || s.S < 1 || s.Stride < 1 || s.Pad < 0 {
		return fmt.Errorf("gpu: invalid convolution %+v", s)
	}
	if s.H+2*s.Pad < s.R || s.W+2*s.Pad < s.S {
		return fmt.Errorf("gpu: convolution filter %d×%d larger than padded input %d×%d", s.R, s.S, s.H+2*s.Pad, s.W+2*s.Pad)
	}
	return nil
}

// BiasShape describes N images of C channels of Inner values each.
type BiasShape struct{ N, C, Inner int }

// Len is N·C·Inner.
func (s BiasShape) Len() int { return s.N * s.C * s.Inner }

// LRNShape describes local response normalization of N images of C×H×W over
// Size neighbouring channels. Alpha multiplies the sum of squares as it
// stands: a net following the cuda-convnet2/Caffe/PyTorch convention passes
// α/Size here.
type LRNShape struct {
	N, C, H, W     int
	Size           int
	Alpha, Beta, K float32
}

// Len is N·C·H·W.
func (s LRNShape) Len() int { return s.N * s.C * s.H * s.W }

// Validate reports a shape LRN cannot have.
func (s LRNShape) Validate() error {
	if s.N < 1 || s.C < 1 || s.H < 1 || s.W < 1 || s.Size < 1 || s.K <= 0 || s.Beta < 0 || s.Alpha < 0 {
		return fmt.Errorf("gpu: invalid LRN %+v", s)
	}
	return nil
}

// PoolShape describes max pooling of N images of C×H×W over Size×Size
// windows every Stride pixels, without padding.
type PoolShape struct {
	N, C, H, W   int
	Size, Stride int
}

// P is the output height.
func (s PoolShape) P() int { return (s.H-s.Size)/s.Stride + 1 }

// Q is the output width.
func (s PoolShape) Q() int { return (s.W-s.Size)/s.Stride + 1 }

// XLen is N·C·H·W.
func (s PoolShape) XLen() int { return s.N * s.C * s.H * s.W }

// YLen is N·C·P·Q.
func (s PoolShape) YLen() int { return s.N * s.C * s.P() * s.Q() }

// Validate reports a shape pooling cannot have.
func (s PoolShape) Validate() error {
	if s.N < 1 || s.C < 1 || s.Size < 1 || s.Stride < 1 || s.H < s.Size || s.W < s.Size {
		return fmt.Errorf("gpu: invalid pooling %+v", s)
	}
	return nil
}

// LinearShape describes a fully-connected layer on N rows: In inputs to Out
// outputs.
type LinearShape struct{ N, In, Out int }

// FLOPs is the multiply-adds of the forward pass, counted as two each.
func (s LinearShape) FLOPs() int64 { return 2 * int64(s.N) * int64(s.In) * int64(s.Out) }

// DropoutShape describes dropout over N values with drop probability P.
// Seed selects the mask; the scheduler derives it from the run's seed, the
// layer and the step, so every device draws the same mask for a layer.
type DropoutShape struct {
	N    int
	P    float32
	Seed uint64
}

// SoftmaxShape describes N rows of Classes logits.
type SoftmaxShape struct{ N, Classes int }

// ConcatShape describes N rows made of one chunk per source, Sizes[i]
// values from source i.
type ConcatShape struct {
	N     int
	Sizes []int
}

// Row is the length of one joined row, Σ Sizes.
func (s ConcatShape) Row() int {
	t := 0
	for _, v := range s.Sizes {
		t += v
	}
	return t
}

// SGDShape describes one SGD update of N parameters.
type SGDShape struct {
	N                         int
	LR, Momentum, WeightDecay float32
}

// SGDMultiShape describes one SGD update of several tensors that share a
// learning rate and momentum: tensor i holds Sizes[i] parameters and has
// weight decay WeightDecays[i] (the paper decays the weights; a net may
// leave the biases undecayed).
type SGDMultiShape struct {
	Sizes        []int
	WeightDecays []float32
	LR, Momentum float32
}

// Tensor is tensor i's update on its own.
func (s SGDMultiShape) Tensor(i int) SGDShape {
	return SGDShape{N: s.Sizes[i], LR: s.LR, Momentum: s.Momentum, WeightDecay: s.WeightDecays[i]}
}

// Total is the number of parameters updated, Σ Sizes.
func (s SGDMultiShape) Total() int {
	t := 0
	for _, n := range s.Sizes {
		t += n
	}
	return t
}

// Validate reports a shape that does not describe tensors tensors.
func (s SGDMultiShape) Validate(tensors int) error {
	if len(s.Sizes) != tensors || len(s.WeightDecays) != tensors {
		return fmt.Errorf("gpu: SGDMulti of %d tensors with %d sizes and %d weight decays", tensors, len(s.Sizes), len(s.WeightDecays))
	}
	for _, n := range s.Sizes {
		if n < 0 {
			return fmt.Errorf("gpu: SGDMulti: a tensor of %d values", n)
		}
	}
	return nil
}

// DropoutKeep reports whether dropout with seed keeps element i, with drop
// probability p. It is counter-based, so any device computes any element's
// decision without state; the CUDA kernel implements the same function.
// With all arithmetic modulo 2⁶⁴, z is output i+1 of SplitMix64 (Vigna's
// splitmix64.c) started from state seed:
//
//	z = seed + (i+1)·0x9E3779B97F4A7C15
//	z = (z ⊕ (z ≫ 30))·0xBF58476D1CE4E5B9
//	z = (z ⊕ (z ≫ 27))·0x94D049BB133111EB
//	z = z ⊕ (z ≫ 31)
//
// and element i is kept when u = ⌊z / 2⁴⁰⌋ / 2²⁴, the top 24 bits of z as a
// fraction in [0, 1), is at least p: with probability 1 − p.
func DropoutKeep(seed uint64, i int, p float32) bool {
	u := float32(DropoutBits(seed, i)) * (1.0 / (1 << 24)) // in [0, 1)
	return u >= p
}

// DropoutBits returns ⌊z / 2⁴⁰⌋, the 24 random bits DropoutKeep draws for
// element i (see there): element i is kept when they reach p·2²⁴.
func DropoutBits(seed uint64, i int) uint64 {
	z := seed + uint64(i+1)*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	return z >> 40
}

// AugmentShape describes Augment: N source images of C×Size×Size bytes,
// each cropped to C×Crop×Crop.
type AugmentShape struct{ N, C, Size, Crop int }

// SrcLen is the number of float32 words holding the N·C·Size·Size source
// bytes packed four to a word (see PackBytes): ⌈N·C·Size·Size / 4⌉.
func (s AugmentShape) SrcLen() int { return (s.N*s.C*s.Size*s.Size + 3) / 4 }

// MeanLen is the number of values of the mean image, C·Size·Size.
func (s AugmentShape) MeanLen() int { return s.C * s.Size * s.Size }

// ParamsLen is the number of parameter values, N·(3+C): X, Y, Flip and C
// offsets per image.
func (s AugmentShape) ParamsLen() int { return s.N * (3 + s.C) }

// DstLen is the number of output values, N·C·Crop·Crop.
func (s AugmentShape) DstLen() int { return s.N * s.C * s.Crop * s.Crop }

// Validate reports a shape Augment cannot have.
func (s AugmentShape) Validate() error {
	if s.N < 1 || s.C < 1 || s.Size < 1 || s.Crop < 1 || s.Crop > s.Size {
		return fmt.Errorf("gpu: invalid augmentation %+v", s)
	}
	return nil
}

// PackBytes packs b four bytes to a float32 word, little-endian: byte j
// lands in bits 8·(j mod 4) … 8·(j mod 4)+7 of word j/4, read as the
// word's IEEE-754 bits (math.Float32bits). A final partial word is padded
// with zero bytes. The words are bit patterns, not numbers: some are NaNs,
// and they must only be copied (Upload, Copy, Transfer), never computed on.
// Augment takes its source images in this form, a quarter of the size of
// float32 pixels.
func PackBytes(b []uint8) []float32 {
	w := make([]float32, (len(b)+3)/4)
	full := len(b) / 4
	for k := range full {
		w[k] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*k:]))
	}
	if full < len(w) {
		var tail [4]uint8
		copy(tail[:], b[4*full:])
		w[full] = math.Float32frombits(binary.LittleEndian.Uint32(tail[:]))
	}
	return w
}

// UnpackBytes is PackBytes's inverse: it returns the first n bytes packed
// in w. It panics if w holds fewer than n bytes.
func UnpackBytes(w []float32, n int) []uint8 {
	if n < 0 || n > 4*len(w) {
		panic(fmt.Sprintf("gpu: UnpackBytes: %d bytes from %d words", n, len(w)))
	}
	b := make([]uint8, 4*((n+3)/4))
	for k := range len(b) / 4 {
		binary.LittleEndian.PutUint32(b[4*k:], math.Float32bits(w[k]))
	}
	return b[:n:n]
}
