// Package bf16 is the bf16 precision (--precision bf16) for any gpu.Device:
// Wrap returns a device whose operations compute in float32, as the wrapped
// one does, and round to bfloat16 (8 exponent bits, 7 mantissa bits, to
// nearest with ties to even) at fixed points, the same on every backend:
//
//   - outputs: every activation and every gradient of an activation an
//     operation writes is rounded (Conv's y, AddBias's y, LRN's y, …,
//     ConvBackwardData's dx, LRNBackward's dx, …, SoftmaxCrossEntropyBackward's
//     dlogits, Add's y, Augment's dst); an operation that only selects or
//     moves bf16 values (ReLU, ReLUBackward, MaxPool, Concat, Split) writes
//     bf16 values without a rounding pass;
//   - operands rounded on use: the weights and biases (w, b) a forward or
//     backward-data operation reads are float32 master copies, and the
//     x of Conv, ConvBackwardFilter, Linear and LinearBackwardWeights may be
//     the net's float32 input image, so each is rounded into a working copy
//     (one per buffer, kept by the device) that the operation reads instead;
//   - float32 throughout: the weight and bias gradients (dw, db), the
//     weights and momentum SGD and SGDMulti update, the softmax's prob and
//     loss, dropout's mask, and every sum inside an operation (a GEMM's or
//     a convolution's accumulation, LRN's window) — as cuBLAS and cuDNN
//     accumulate bf16 products in float32.
//
// Values are stored in float32 buffers whose low 16 bits are then zero, so
// every backend keeps its float32 kernels and the CPU device computes what a
// GPU does: the conformance suite (gputest.RunBF16) checks every operation
// against float64 references rounded at the same points. On a GPU this is
// emulation (float32 arithmetic and memory traffic, bf16 values); real bf16
// storage and tensor-core bf16 convolutions and GEMMs give the same values
// up to the order of the float32 sums.
//
// Every operation of gpu.Ops has a method of its own here stating its
// rounding; TestEveryOpDecided fails for one that is only promoted from the
// wrapped device (a method added to gpu.Ops and not yet decided here).
package bf16

import (
	"fmt"
	"strings"
	"time"

	"github.com/alexnet-go/trainer/gpu"
)

// Rounder is what a backend needs to be wrapped: RoundBF16 sets y[i] to
// x[i] rounded to bfloat16, to nearest with ties to even (NaN stays NaN,
// subnormals are not flushed), stored in float32, over n values; y may be
// x. gpu/cpu and gpu/cuda implement it with the same bits.
type Rounder interface {
	RoundBF16(y, x gpu.Buffer, n int) error
}

// Device is a gpu.Device computing in the bf16 precision on the device it
// wraps. Buffers are the wrapped device's: their Device is that device, and
// copies between devices (gpu.Transfer), Upload and Download move values
// unchanged.
type Device struct {
	gpu.Device // ops not decided below would be promoted unrounded: see the package doc
	r          Rounder
	// work holds the working copy of each buffer read as an operand rounded
	// on use (a weight's bf16 copy, the image's), by that buffer.
	work map[gpu.Buffer]gpu.Buffer
	// grads are the buffers this device wrote weight or bias gradients
	// into: Add into one of them sums float32 gradients (a reduction among
	// replicas) and does not round.
	grads map[gpu.Buffer]bool
}

// gpuDevice is a wrapped device with a GPU's optional interfaces, each
// forwarded to the wrapped device.
type gpuDevice struct{ *Device }

// optional are the optional interfaces of package gpu a wrapper forwards.
// Wrap gives a device every one or none of them, as the wrapped device has.
var optional = []struct {
	name string
	has  func(gpu.Device) bool
}{
	{"gpu.Timer", func(d gpu.Device) bool { _, ok := d.(gpu.Timer); return ok }},
	{"gpu.MemorySharer", func(d gpu.Device) bool { _, ok := d.(gpu.MemorySharer); return ok }},
	{"gpu.ScratchReporter", func(d gpu.Device) bool { _, ok := d.(gpu.ScratchReporter); return ok }},
	{"gpu.Stager", func(d gpu.Device) bool { _, ok := d.(gpu.Stager); return ok }},
	{"gpu.VendorOps", func(d gpu.Device) bool { _, ok := d.(gpu.VendorOps); return ok }},
}

var (
	_ gpu.Timer           = gpuDevice{}
	_ gpu.MemorySharer    = gpuDevice{}
	_ gpu.ScratchReporter = gpuDevice{}
	_ gpu.Stager          = gpuDevice{}
	_ gpu.VendorOps       = gpuDevice{}
)

// Wrap returns d computing in the bf16 precision. d must implement Rounder
// and either all of package gpu's optional interfaces (a GPU) or none (the
// CPU device); anything else is a programmer's mistake and panics, naming
// what to add.
func Wrap(d gpu.Device) gpu.Device {
	r, ok := d.(Rounder)
	if !ok {
		panic(fmt.Sprintf("bf16: %s (%T) has no RoundBF16 (bf16.Rounder)", d.Name(), d))
	}
	w := &Device{Device: d, r: r, work: map[gpu.Buffer]gpu.Buffer{}, grads: map[gpu.Buffer]bool{}}
	var has, lacks []string
	for _, o := range optional {
		if o.has(d) {
			has = append(has, o.name)
		} else {
			lacks = append(lacks, o.name)
		}
	}
	switch {
	case len(has) == 0:
		return w
	case len(lacks) == 0:
		return gpuDevice{w}
	}
	panic(fmt.Sprintf("bf16: %s (%T) has %s but not %s: give package bf16 a wrapper type for that combination",
		d.Name(), d, strings.Join(has, ", "), strings.Join(lacks, ", ")))
}

// Unwrap returns the wrapped device.
func (d *Device) Unwrap() gpu.Device { return d.Device }

// unwrap returns the device a wrapper wraps, or d itself.
func unwrap(d gpu.Device) gpu.Device {
	switch w := d.(type) {
	case *Device:
		return w.Device
	case gpuDevice:
		return w.Device.Device
	}
	return d
}

// Close frees the working copies, then closes the wrapped device.
func (d *Device) Close() error {
	for b, wc := range d.work {
		d.Device.Free(wc)
		delete(d.work, b)
	}
	clear(d.grads)
	return d.Device.Close()
}

// Free frees b and its working copy, if it has one.
func (d *Device) Free(b gpu.Buffer) {
	if wc := d.work[b]; wc != nil {
		d.Device.Free(wc)
		delete(d.work, b)
	}
	delete(d.grads, b)
	d.Device.Free(b)
}

// round rounds the first n values of each of bufs to bf16 in place.
func (d *Device) round(n int, bufs ...gpu.Buffer) error {
	for _, b := range bufs {
		if err := d.r.RoundBF16(b, b, n); err != nil {
			return err
		}
	}
	return nil
}

// then rounds the n values of y after op, when op succeeded.
func (d *Device) then(err error, y gpu.Buffer, n int) error {
	if err != nil {
		return err
	}
	return d.round(n, y)
}

// operand returns b's working copy holding b's first n values rounded to
// bf16: the buffer an operation reads in place of a float32 operand.
func (d *Device) operand(b gpu.Buffer, n int) (gpu.Buffer, error) {
	wc := d.work[b]
	if wc == nil || wc.Len() < n {
		if wc != nil {
			d.Device.Free(wc)
			delete(d.work, b)
		}
		var err error
		if wc, err = d.Device.Alloc(max(n, b.Len())); err != nil {
			return nil, fmt.Errorf("bf16: working copy of %d values: %w", b.Len(), err)
		}
		d.work[b] = wc
	}
	if err := d.r.RoundBF16(wc, b, n); err != nil {
		return nil, err
	}
	return wc, nil
}

// operands is operand over pairs of (buffer, n).
func (d *Device) operands(bufs []gpu.Buffer, ns ...int) ([]gpu.Buffer, error) {
	out := make([]gpu.Buffer, len(bufs))
	for i, b := range bufs {
		wc, err := d.operand(b, ns[i])
		if err != nil {
			return nil, err
		}
		out[i] = wc
	}
	return out, nil
}

// grad notes that b holds a weight or bias gradient (float32).
func (d *Device) grad(err error, bufs ...gpu.Buffer) error {
	if err == nil {
		for _, b := range bufs {
			d.grads[b] = true
		}
	}
	return err
}

// Conv rounds x and w on use and y after.
func (d *Device) Conv(y, x, w gpu.Buffer, s gpu.ConvShape) error {
	o, err := d.operands([]gpu.Buffer{x, w}, s.XLen(), s.WLen())
	if err != nil {
		return err
	}
	return d.then(d.Device.Conv(y, o[0], o[1], s), y, s.YLen())
}

// ConvBackwardData rounds w on use and dx after; dy is bf16 already.
func (d *Device) ConvBackwardData(dx, dy, w gpu.Buffer, s gpu.ConvShape) error {
	wc, err := d.operand(w, s.WLen())
	if err != nil {
		return err
	}
	return d.then(d.Device.ConvBackwardData(dx, dy, wc, s), dx, s.XLen())
}

// ConvBackwardFilter rounds x on use; dw stays float32.
func (d *Device) ConvBackwardFilter(dw, dy, x gpu.Buffer, s gpu.ConvShape) error {
	xc, err := d.operand(x, s.XLen())
	if err != nil {
		return err
	}
	return d.grad(d.Device.ConvBackwardFilter(dw, dy, xc, s), dw)
}

// AddBias rounds b on use and y after.
func (d *Device) AddBias(y, b gpu.Buffer, s gpu.BiasShape) error {
	bc, err := d.operand(b, s.C)
	if err != nil {
		return err
	}
	return d.then(d.Device.AddBias(y, bc, s), y, s.Len())
}

// BiasBackward leaves db in float32.
func (d *Device) BiasBackward(db, dy gpu.Buffer, s gpu.BiasShape) error {
	return d.grad(d.Device.BiasBackward(db, dy, s), db)
}

// ReLU of bf16 values is bf16: no rounding pass.
func (d *Device) ReLU(y, x gpu.Buffer, n int) error { return d.Device.ReLU(y, x, n) }

// ReLUBackward selects bf16 values: no rounding pass.
func (d *Device) ReLUBackward(dx, dy, y gpu.Buffer, n int) error {
	return d.Device.ReLUBackward(dx, dy, y, n)
}

// BiasReLU rounds b on use and y after: max(0, ·) commutes with the
// rounding, so this is AddBias then ReLU in bf16.
func (d *Device) BiasReLU(y, b gpu.Buffer, s gpu.BiasShape) error {
	bc, err := d.operand(b, s.C)
	if err != nil {
		return err
	}
	return d.then(d.Device.BiasReLU(y, bc, s), y, s.Len())
}

// ReLUBiasBackward selects bf16 values into dx (no rounding pass); db
// stays float32.
func (d *Device) ReLUBiasBackward(dx, db, dy, y gpu.Buffer, s gpu.BiasShape) error {
	return d.grad(d.Device.ReLUBiasBackward(dx, db, dy, y, s), db)
}

// LinearReLU rounds x, w and b on use and y after, as Linear then ReLU.
func (d *Device) LinearReLU(y, x, w, b gpu.Buffer, s gpu.LinearShape) error {
	o, err := d.operands([]gpu.Buffer{x, w, b}, s.N*s.In, s.Out*s.In, s.Out)
	if err != nil {
		return err
	}
	return d.then(d.Device.LinearReLU(y, o[0], o[1], o[2], s), y, s.N*s.Out)
}

// LinearReLUBackward rounds x and w on use and dx after (when there is
// one); dy is masked in place (bf16 values stay bf16); dw and db stay
// float32.
func (d *Device) LinearReLUBackward(dx, dw, db, dy, x, w, y gpu.Buffer, s gpu.LinearShape) error {
	o, err := d.operands([]gpu.Buffer{x, w}, s.N*s.In, s.Out*s.In)
	if err != nil {
		return err
	}
	err = d.grad(d.Device.LinearReLUBackward(dx, dw, db, dy, o[0], o[1], y, s), dw, db)
	if dx == nil {
		return err
	}
	return d.then(err, dx, s.N*s.In)
}

// ReLULRN rounds y, as ReLU then LRN.
func (d *Device) ReLULRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	return d.then(d.Device.ReLULRN(y, x, s), y, s.Len())
}

// ReLULRNBackward rounds dx (the mask's zeros stay zeros), as LRNBackward
// then ReLUBackward.
func (d *Device) ReLULRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	return d.then(d.Device.ReLULRNBackward(dx, dy, x, y, s), dx, s.Len())
}

// Tanh rounds y.
func (d *Device) Tanh(y, x gpu.Buffer, n int) error { return d.then(d.Device.Tanh(y, x, n), y, n) }

// TanhBackward rounds dx.
func (d *Device) TanhBackward(dx, dy, y gpu.Buffer, n int) error {
	return d.then(d.Device.TanhBackward(dx, dy, y, n), dx, n)
}

// LRN rounds y; the window's sum is float32.
func (d *Device) LRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	return d.then(d.Device.LRN(y, x, s), y, s.Len())
}

// LRNBackward rounds dx.
func (d *Device) LRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	return d.then(d.Device.LRNBackward(dx, dy, x, y, s), dx, s.Len())
}

// MaxPool selects bf16 values: no rounding pass.
func (d *Device) MaxPool(y, x gpu.Buffer, s gpu.PoolShape) error { return d.Device.MaxPool(y, x, s) }

// MaxPoolBackward rounds dx: overlapping windows sum their gradients.
func (d *Device) MaxPoolBackward(dx, dy, x, y gpu.Buffer, s gpu.PoolShape) error {
	return d.then(d.Device.MaxPoolBackward(dx, dy, x, y, s), dx, s.XLen())
}

// Linear rounds x, w and b on use and y after.
func (d *Device) Linear(y, x, w, b gpu.Buffer, s gpu.LinearShape) error {
	o, err := d.operands([]gpu.Buffer{x, w, b}, s.N*s.In, s.Out*s.In, s.Out)
	if err != nil {
		return err
	}
	return d.then(d.Device.Linear(y, o[0], o[1], o[2], s), y, s.N*s.Out)
}

// LinearBackwardData rounds w on use and dx after.
func (d *Device) LinearBackwardData(dx, dy, w gpu.Buffer, s gpu.LinearShape) error {
	wc, err := d.operand(w, s.Out*s.In)
	if err != nil {
		return err
	}
	return d.then(d.Device.LinearBackwardData(dx, dy, wc, s), dx, s.N*s.In)
}

// LinearBackwardWeights rounds x on use; dw and db stay float32.
func (d *Device) LinearBackwardWeights(dw, db, dy, x gpu.Buffer, s gpu.LinearShape) error {
	xc, err := d.operand(x, s.N*s.In)
	if err != nil {
		return err
	}
	return d.grad(d.Device.LinearBackwardWeights(dw, db, dy, xc, s), dw, db)
}

// Dropout rounds y (the scale 1/(1−P) need not be a power of two); the
// mask stays float32.
func (d *Device) Dropout(y, mask, x gpu.Buffer, s gpu.DropoutShape) error {
	return d.then(d.Device.Dropout(y, mask, x, s), y, s.N)
}

// DropoutBackward rounds dx.
func (d *Device) DropoutBackward(dx, dy, mask gpu.Buffer, n int) error {
	return d.then(d.Device.DropoutBackward(dx, dy, mask, n), dx, n)
}

// SoftmaxCrossEntropy leaves prob and loss in float32, as autocast does.
func (d *Device) SoftmaxCrossEntropy(prob, loss, logits, labels gpu.Buffer, s gpu.SoftmaxShape) error {
	return d.Device.SoftmaxCrossEntropy(prob, loss, logits, labels, s)
}

// SoftmaxCrossEntropyBackward rounds dlogits, the gradient fc8's backward
// operations read.
func (d *Device) SoftmaxCrossEntropyBackward(dlogits, prob, labels gpu.Buffer, s gpu.SoftmaxShape) error {
	return d.then(d.Device.SoftmaxCrossEntropyBackward(dlogits, prob, labels, s), dlogits, s.N*s.Classes)
}

// Add rounds y (the gradients summed where the towers join), except into
// a buffer this device wrote a weight or bias gradient into: those sums
// stay float32.
func (d *Device) Add(y, x gpu.Buffer, n int) error {
	err := d.Device.Add(y, x, n)
	if d.grads[y] {
		return err
	}
	return d.then(err, y, n)
}

// Concat moves bf16 values: no rounding pass.
func (d *Device) Concat(dst gpu.Buffer, srcs []gpu.Buffer, s gpu.ConcatShape) error {
	return d.Device.Concat(dst, srcs, s)
}

// Split moves bf16 values: no rounding pass.
func (d *Device) Split(dsts []gpu.Buffer, src gpu.Buffer, s gpu.ConcatShape) error {
	return d.Device.Split(dsts, src, s)
}

// SGD updates the float32 master weights and momentum, unchanged.
func (d *Device) SGD(w, v, dw gpu.Buffer, s gpu.SGDShape) error { return d.Device.SGD(w, v, dw, s) }

// SGDMulti is SGD over several tensors, unchanged.
func (d *Device) SGDMulti(ws, vs, dws []gpu.Buffer, s gpu.SGDMultiShape) error {
	return d.Device.SGDMulti(ws, vs, dws, s)
}

// Augment rounds dst, the net's input.
func (d *Device) Augment(dst, src, mean, params gpu.Buffer, s gpu.AugmentShape) error {
	return d.then(d.Device.Augment(dst, src, mean, params, s), dst, s.DstLen())
}

// Mark forwards to the wrapped device (gpu.Timer).
func (g gpuDevice) Mark() (gpu.Mark, error) { return g.Device.Device.(gpu.Timer).Mark() }

// Elapsed forwards to the wrapped device (gpu.Timer).
func (g gpuDevice) Elapsed(from, to gpu.Mark) (time.Duration, error) {
	return g.Device.Device.(gpu.Timer).Elapsed(from, to)
}

// SharesMemory asks the wrapped device about other's wrapped device
// (gpu.MemorySharer).
func (g gpuDevice) SharesMemory(other gpu.Device) bool {
	return g.Device.Device.(gpu.MemorySharer).SharesMemory(unwrap(other))
}

// ScratchBytes forwards to the wrapped device (gpu.ScratchReporter); the
// working copies are not scratch: they are counted as buffers are not.
func (g gpuDevice) ScratchBytes() int64 {
	n := g.Device.Device.(gpu.ScratchReporter).ScratchBytes()
	for _, wc := range g.work {
		n += 4 * int64(wc.Len())
	}
	return n
}

// StageUpload forwards to the wrapped device (gpu.Stager): the values
// arrive as they are, like Upload's.
func (g gpuDevice) StageUpload(dst gpu.Buffer, src []float32, after gpu.Event) (gpu.Event, error) {
	return g.Device.Device.(gpu.Stager).StageUpload(dst, src, after)
}

// VendorName forwards to the wrapped device (gpu.VendorOps).
func (g gpuDevice) VendorName() string { return g.vendor().VendorName() + " (bf16)" }

func (g gpuDevice) vendor() gpu.VendorOps { return g.Device.Device.(gpu.VendorOps) }

// VendorLRN rounds y, as LRN does.
func (g gpuDevice) VendorLRN(y, x gpu.Buffer, s gpu.LRNShape) error {
	return g.then(g.vendor().VendorLRN(y, x, s), y, s.Len())
}

// VendorLRNBackward rounds dx, as LRNBackward does.
func (g gpuDevice) VendorLRNBackward(dx, dy, x, y gpu.Buffer, s gpu.LRNShape) error {
	return g.then(g.vendor().VendorLRNBackward(dx, dy, x, y, s), dx, s.Len())
}

// VendorMaxPool selects bf16 values, as MaxPool does.
func (g gpuDevice) VendorMaxPool(y, x gpu.Buffer, s gpu.PoolShape) error {
	return g.vendor().VendorMaxPool(y, x, s)
}

// VendorMaxPoolBackward rounds dx, as MaxPoolBackward does.
func (g gpuDevice) VendorMaxPoolBackward(dx, dy, x, y gpu.Buffer, s gpu.PoolShape) error {
	return g.then(g.vendor().VendorMaxPoolBackward(dx, dy, x, y, s), dx, s.XLen())
}
