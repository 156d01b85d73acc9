// Package gpu defines the Device interface that every backend (gpu/cpu,
// gpu/cuda) implements, and the shape structs its operations take.
//
// Tensors are float32 and dense. Images and feature maps are NCHW:
// N images in the batch, C channels, H rows, W columns, W fastest.
// Fully-connected activations are (N, features), features fastest.
// Weights follow PyTorch: convolution filters are (K, C, R, S) with K output
// channels and R×S taps, linear weights are (Out, In).
//
// The conventions every operation follows:
//   - outputs first, inputs next, the shape struct last;
//   - an operation is enqueued on the device's stream and may run after the
//     call returns; Record and Wait order work across devices, Sync waits
//     for everything enqueued so far;
//   - buffers passed to one operation all live on that device;
//   - an operation overwrites its outputs unless its doc says it accumulates;
//   - a shape that does not match the buffers is a programmer's mistake and
//     panics; what the environment can cause (no memory, a failed launch)
//     is a returned error.
package gpu

import (
	"errors"
	"fmt"
	"time"
)

// Buffer is a region of device memory holding Len float32 values.
type Buffer interface {
	// Device is the device the buffer lives on.
	Device() Device
	// Len is the number of float32 elements.
	Len() int
}

// Event marks a point in a device's stream. Another device can Wait on it.
type Event interface{}

// Timer is implemented by a device that can time its own work on its own
// clock: a GPU, whose calls return before the work is done, so that time
// measured on the host around a call is only the time to enqueue it.
type Timer interface {
	// Mark records a timestamp at this point of the device's stream.
	Mark() (Mark, error)
	// Elapsed waits until both marks are reached and returns the device
	// time between them.
	Elapsed(from, to Mark) (time.Duration, error)
}

// MemorySharer is implemented by a device that can tell when another
// device lives in the same physical memory: two streams of one GPU
// ("--gpus 0,0"). Both towers read the image; between such devices the
// scheduler uploads it once and copies it on the GPU, which costs a small
// fraction of a second upload from the host.
type MemorySharer interface {
	SharesMemory(other Device) bool
}

// ScratchReporter is implemented by a device that keeps scratch memory of
// its own beyond the buffers it was asked for (CUDA: the cuDNN workspace,
// grown to the largest a convolution has needed so far).
type ScratchReporter interface {
	ScratchBytes() int64
}

// VendorOps is implemented by a device whose vendor library has LRN and
// max pooling of its own (CUDA: cuDNN's cudnnLRNCrossChannel* and
// cudnnPooling*), so that a benchmark can time ours against theirs in the
// same run. Each computes what the Ops method of the same name computes,
// with the same buffers and shapes (the LRN with Alpha as gpu.LRNShape
// takes it), except that which of several equal maxima receives the
// gradient is the vendor's choice. They are for timing: the network uses
// Ops, and the conformance suite judges Ops only.
type VendorOps interface {
	// VendorName names the library, e.g. "cuDNN 91000".
	VendorName() string
	VendorLRN(y, x Buffer, s LRNShape) error
	VendorLRNBackward(dx, dy, x, y Buffer, s LRNShape) error
	VendorMaxPool(y, x Buffer, s PoolShape) error
	VendorMaxPoolBackward(dx, dy, x, y Buffer, s PoolShape) error
}

// Stager is implemented by a device that copies host data into its memory
// on a stream of its own, through page-locked staging memory, so that the
// next batch travels while the device computes (a GPU). parallel's
// Runner.Stage uses it where a device has it, and plain Upload elsewhere.
type Stager interface {
	// StageUpload copies src into dst once the device's work up to after
	// (an event it recorded; nil for none) is done, without waiting for
	// any later work, and returns an event that work reading dst must
	// Wait on. src may be reused as soon as it returns.
	StageUpload(dst Buffer, src []float32, after Event) (Event, error)
}

// Mark is a timestamp a Timer recorded.
type Mark interface{}

// ErrNoPeer is returned by Device.CopyPeer when the two devices cannot copy
// directly; Transfer then stages the copy through the host.
var ErrNoPeer = errors.New("gpu: no peer access between devices")

// Device is one logical device: a stream of work on a CPU or a GPU, with its
// own memory. Two logical devices may share one physical device.
//
// A Device is used by one goroutine at a time; the scheduler in package
// parallel gives every device a worker goroutine of its own.
type Device interface {
	// Name identifies the device, e.g. "cpu:0" or "cuda:1".
	Name() string

	// Alloc returns a buffer of n float32 values. Its contents are undefined.
	Alloc(n int) (Buffer, error)
	// Free releases a buffer. Freeing nil is a no-op.
	Free(b Buffer)
	// Upload copies len(src) values from the host to the start of dst.
	Upload(dst Buffer, src []float32) error
	// Download copies len(dst) values from the start of src to the host.
	// It waits for the work that writes src.
	Download(dst []float32, src Buffer) error
	// Copy copies src to dst, both on this device, min(len) values.
	Copy(dst, src Buffer) error
	// CopyPeer copies src, which lives on this device, into dst on another
	// device, enqueued on this device's stream (the producer pushes). It
	// returns ErrNoPeer if the devices cannot copy directly.
	CopyPeer(dst, src Buffer) error
	// Fill sets every value of dst to v.
	Fill(dst Buffer, v float32) error

	// Record returns an event marking the work enqueued so far.
	Record() (Event, error)
	// Wait makes later work on this device wait for e, which may come from
	// another device.
	Wait(e Event) error
	// Sync blocks until all work enqueued on this device is done.
	Sync() error
	// Close waits for the device's work and releases what opening it
	// acquired (a GPU's stream, library handles, scratch memory). Buffers
	// must be freed before. A closed device must not be used; closing it
	// again is a no-op.
	Close() error

	Ops
}

// Ops are the network's operations, forward and backward.
type Ops interface {
	// Conv is a cross-correlation: y[n,k,p,q] = Σ_{c,r,s} w[k,c,r,s] ·
	// x[n,c,p·Stride+r−Pad,q·Stride+s−Pad], zero outside the image.
	// y (N,K,P,Q), x (N,C,H,W), w (K,C,R,S).
	Conv(y, x, w Buffer, s ConvShape) error
	// ConvBackwardData computes dx = ∂L/∂x from dy. dx (N,C,H,W).
	ConvBackwardData(dx, dy, w Buffer, s ConvShape) error
	// ConvBackwardFilter computes dw = ∂L/∂w from dy and x. dw (K,C,R,S).
	ConvBackwardFilter(dw, dy, x Buffer, s ConvShape) error

	// AddBias adds b[c] to every y[n,c,·]. y (N,C,Inner), b (C).
	AddBias(y, b Buffer, s BiasShape) error
	// BiasBackward sets db[c] = Σ_{n,i} dy[n,c,i].
	BiasBackward(db, dy Buffer, s BiasShape) error

	// ReLU sets y = max(0, x) over n values. y may be x.
	ReLU(y, x Buffer, n int) error
	// ReLUBackward sets dx = dy where y > 0, else 0. dx may be dy.
	ReLUBackward(dx, dy, y Buffer, n int) error

	// BiasReLU is AddBias then ReLU in one pass over y:
	// y[n,c,i] = max(0, y[n,c,i] + b[c]), with the same bits as the two
	// calls. y (N,C,Inner), b (C).
	BiasReLU(y, b Buffer, s BiasShape) error
	// ReLUBiasBackward is ReLUBackward then BiasBackward in one pass over
	// dy: dx = dy where y > 0, else 0, and db[c] = Σ_{n,i} dx[n,c,i], with
	// the same bits as the two calls. dx may be dy. dx, dy, y (N,C,Inner),
	// db (C).
	ReLUBiasBackward(dx, db, dy, y Buffer, s BiasShape) error
	// LinearReLU is Linear then ReLU, the bias and the ReLU applied in
	// one pass after the product: y = max(0, x·wᵀ + b), with the same bits
	// as the two calls. y (N,Out), x (N,In), w (Out,In), b (Out).
	LinearReLU(y, x, w, b Buffer, s LinearShape) error
	// LinearReLUBackward is ReLUBackward (dy in place) then
	// LinearBackwardWeights and LinearBackwardData, with the ReLU's mask
	// and the bias gradient in one pass over dy: dy ← dy where y > 0,
	// else 0; db = Σ_n dy; dw = dyᵀ·x; dx = dy·w unless dx is nil. The
	// same bits as the unfused calls. dx (N,In), dw (Out,In), db (Out),
	// dy and y (N,Out), x (N,In), w (Out,In).
	LinearReLUBackward(dx, dw, db, dy, x, w, y Buffer, s LinearShape) error
	// ReLULRN is ReLU then LRN without storing the ReLU's output: y =
	// LRN(max(0, x)), with the same bits as the two calls. x, y (N,C,H,W).
	ReLULRN(y, x Buffer, s LRNShape) error
	// ReLULRNBackward is LRNBackward then ReLUBackward for y =
	// ReLULRN(x): dx = LRNBackward(dy, max(0, x), y) where x > 0, else 0,
	// with the same bits as the unfused calls.
	ReLULRNBackward(dx, dy, x, y Buffer, s LRNShape) error

	// Tanh sets y = tanh(x) over n values: the saturating activation the
	// paper compares ReLU with (§3.1, Figure 1). y may be x.
	Tanh(y, x Buffer, n int) error
	// TanhBackward sets dx = dy·(1 − y²), with y = tanh(x). dx may be dy.
	TanhBackward(dx, dy, y Buffer, n int) error

	// LRN is local response normalization across channels (the paper, §3.3):
	// y[c] = x[c] / (K + Alpha·Σ_{j=c−Size/2}^{c+Size/2} x[j]²)^Beta, the sum
	// clipped to the valid channels. x, y (N,C,H,W).
	LRN(y, x Buffer, s LRNShape) error
	// LRNBackward computes dx from dy, x and y = LRN(x).
	LRNBackward(dx, dy, x, y Buffer, s LRNShape) error

	// MaxPool takes the maximum over Size×Size windows every Stride pixels,
	// no padding. y (N,C,P,Q), x (N,C,H,W).
	MaxPool(y, x Buffer, s PoolShape) error
	// MaxPoolBackward routes dy to the first maximum of each window and sums
	// where windows overlap. dx (N,C,H,W); y is MaxPool(x), which a backend
	// may read to know each window's maximum (CUDA does).
	MaxPoolBackward(dx, dy, x, y Buffer, s PoolShape) error

	// Linear sets y = x·wᵀ + b. y (N,Out), x (N,In), w (Out,In), b (Out).
	Linear(y, x, w, b Buffer, s LinearShape) error
	// LinearBackwardData sets dx = dy·w. dx (N,In).
	LinearBackwardData(dx, dy, w Buffer, s LinearShape) error
	// LinearBackwardWeights sets dw = dyᵀ·x and db = Σ_n dy.
	LinearBackwardWeights(dw, db, dy, x Buffer, s LinearShape) error

	// Dropout keeps x[i] with probability 1−P, scaled by 1/(1−P) (inverted
	// dropout), and zeroes it otherwise; mask receives the factor applied
	// (0 or 1/(1−P)). Whether i is kept is DropoutKeep(Seed, i, P).
	Dropout(y, mask, x Buffer, s DropoutShape) error
	// DropoutBackward sets dx = dy·mask over n values.
	DropoutBackward(dx, dy, mask Buffer, n int) error

	// SoftmaxCrossEntropy computes prob = softmax(logits) per row and
	// loss[n] = −log prob[n, label[n]]. Labels are class indices stored as
	// float32. prob (N,Classes), loss (N), logits (N,Classes), labels (N).
	SoftmaxCrossEntropy(prob, loss, logits, labels Buffer, s SoftmaxShape) error
	// SoftmaxCrossEntropyBackward sets dlogits = (prob − onehot(labels)) / N,
	// the gradient of the batch's mean loss.
	SoftmaxCrossEntropyBackward(dlogits, prob, labels Buffer, s SoftmaxShape) error

	// Add accumulates: y += x over n values.
	Add(y, x Buffer, n int) error
	// Concat joins srcs per image: dst[n] = src0[n] ‖ src1[n] ‖ …, where
	// src i holds N rows of Sizes[i] values. Concatenating NCHW maps this way
	// joins them along C.
	Concat(dst Buffer, srcs []Buffer, s ConcatShape) error
	// Split is Concat's inverse (and its backward pass).
	Split(dsts []Buffer, src Buffer, s ConcatShape) error

	// SGD is the paper's update (§5) over N values:
	// v ← Momentum·v − WeightDecay·LR·w − LR·dw;  w ← w + v.
	SGD(w, v, dw Buffer, s SGDShape) error
	// SGDMulti is SGD on several tensors in one call: for each i,
	// SGD(ws[i], vs[i], dws[i], s.Tensor(i)), with the same bits as those
	// calls. A GPU updates them all in one kernel launch, so that a step
	// ends with one launch per device instead of one per tensor.
	SGDMulti(ws, vs, dws []Buffer, s SGDMultiShape) error

	// Augment turns N raw images into the network's inputs as the paper
	// does (§2, §4.1): it crops each at (X, Y), reflects it if Flip,
	// subtracts the mean image and adds a colour offset per channel:
	//
	//	dst[n,c,y,x] = (float32(src[n,c,Y+y,X+x′]) − mean[c,Y+y,X+x′]) + off[n,c]
	//
	// with x′ = Crop−1−x if Flip, else x, and both operations rounded to
	// float32 in this order, so every backend gives the same bits. The mean
	// is taken at the source pixel, not the output position: it is a
	// property of where the pixel lies in the Size×Size image.
	//
	// src is the N·C·Size·Size source bytes, the N images (C,Size,Size)
	// back to back, packed four per float32 word by PackBytes (byte j in
	// bits 8·(j mod 4) of word j/4). mean (C,Size,Size). params (N, 3+C):
	// per image X, Y, Flip, off[0], …, off[C−1], where X and Y are integers
	// in [0, Size−Crop] and Flip is 0 or 1; other values are a programmer's
	// mistake. dst (N,C,Crop,Crop).
	Augment(dst, src, mean, params Buffer, s AugmentShape) error
}

// Transfer copies src into dst on another device: directly where the
// devices allow it, through host memory where they do not. It is issued by
// the goroutine that owns src's device and ordered after the work that
// wrote src; the consumer waits on an event recorded on src's device.
func Transfer(dst, src Buffer) error {
	if dst.Device() == src.Device() {
		return dst.Device().Copy(dst, src)
	}
	err := src.Device().CopyPeer(dst, src)
	if !errors.Is(err, ErrNoPeer) {
		return err
	}
	host := make([]float32, min(dst.Len(), src.Len()))
	if err := src.Device().Download(host, src); err != nil {
		return err
	}
	return dst.Device().Upload(dst, host)
}

// Check panics unless b holds at least n values; backends call it to catch a
// shape that does not match its buffers.
func Check(name string, b Buffer, n int) {
	if b == nil {
		panic(fmt.Sprintf("gpu: %s is nil", name))
	}
	if b.Len() < n {
		panic(fmt.Sprintf("gpu: %s holds %d values, the shape needs %d", name, b.Len(), n))
	}
}
