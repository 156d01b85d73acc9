// Package gputest is the conformance suite for gpu.Device backends, in the
// manner of gonum's testblas: every backend's tests call
//
//	gputest.Run(t, dev)
//
// and the suite checks each operation of gpu.Device on seeded random inputs
// against a float64 reference written from the formula in the operation's
// doc comment (LRN and max pooling use the references in package kernels;
// the dropout mask, the rule gpu.DropoutKeep's comment states, written out
// again without calling it), and every backward operation, in addition,
// against central finite differences of its forward operation run on the
// same device.
//
// Comparisons are llm.c's: a value passes when |got − want| ≤ atol + rtol·|want|;
// a failure lists at most 10 mismatches with index, got and want. The
// tolerances are chosen per operation for float32 arithmetic computed in
// any order; they are tight enough to catch a convolution run in TF32.
//
// Outputs start out holding NaN, so a value an operation fails to write
// shows, and every buffer the suite allocates carries a guard tail that no
// operation may write, so an operation that writes past its shape fails
// too. Results are read with Download and no Sync, which must wait for the
// work that wrote them. Max pooling is also checked on inputs full of ties,
// where the first maximum in row-major order must take the gradient.
//
// The finite-difference checks take L = Σ_i r_i·y_i for fixed random r (for
// SoftmaxCrossEntropyBackward, L is the batch's mean loss), run the forward
// operation on the device at x ± h·e_i for a random subset of ~24 elements
// of each input, and compare (L⁺ − L⁻)/2h with the backward operation's
// result for dy = r. Inputs keep clear of kinks and ties: |x| ≥ 0.1 for
// ReLU, distinct values 4h apart for max pooling.
//
// RunPair checks what takes two devices (Transfer between them, an event
// recorded on one and waited on by the other). Upload, Download and Close
// are exported for whole-model tests.
package gputest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
)

// Run runs the conformance suite on dev, one subtest per operation and one
// below it per shape.
func Run(t *testing.T, dev gpu.Device) {
	t.Helper()
	root := &checker{dev: dev, t: t}
	for _, op := range suite {
		root.run(op.name, op.check)
	}
	if err := dev.Sync(); err != nil {
		t.Errorf("%s: Sync after the suite: %v", dev.Name(), err)
	}
}

// RunPair checks what needs two devices: gpu.Transfer both ways between a
// and b (directly or through the host), and an event recorded on one device
// and waited on by the other. a and b may be two logical devices on one
// physical device.
func RunPair(t *testing.T, a, b gpu.Device) {
	t.Helper()
	root := &checker{dev: a, t: t}
	root.run("Pair", func(c *checker) { checkPair(c, a, b) })
}

// suite lists the checks Run runs, in order: memory first, since every
// other check relies on it.
var suite = []struct {
	name  string
	check func(*checker)
}{
	{"Memory", checkMemory},
	{"Events", checkEvents},
	{"Transfer", checkTransfer},
	{"Conv", checkConv},
	{"AddBias", checkAddBias},
	{"ReLU", checkReLU},
	{"Tanh", checkTanh},
	{"LRN", checkLRN},
	{"MaxPool", checkMaxPool},
	{"Linear", checkLinear},
	{"Dropout", checkDropout},
	{"SoftmaxCrossEntropy", checkSoftmax},
	{"Add", checkAdd},
	{"ConcatSplit", checkConcatSplit},
	{"SGD", checkSGD},
	{"SGDMulti", checkSGDMulti},
	{"Augment", checkAugment},
	{"BiasReLU", checkBiasReLU},
	{"LinearReLU", checkLinearReLU},
	{"ReLULRN", checkReLULRN},
}

// Upload allocates a buffer on dev holding v, failing t if the device
// cannot. The caller frees it.
func Upload(t testing.TB, dev gpu.Device, v []float32) gpu.Buffer {
	t.Helper()
	b, err := dev.Alloc(len(v))
	if err != nil {
		t.Fatalf("%s: Alloc(%d): %v", dev.Name(), len(v), err)
	}
	if err := dev.Upload(b, v); err != nil {
		t.Fatalf("%s: Upload(%d values): %v", dev.Name(), len(v), err)
	}
	return b
}

// Download returns the contents of b, Len values, failing t if its device
// cannot.
func Download(t testing.TB, b gpu.Buffer) []float32 {
	t.Helper()
	v := make([]float32, b.Len())
	if err := b.Device().Download(v, b); err != nil {
		t.Fatalf("%s: Download(%d values): %v", b.Device().Name(), len(v), err)
	}
	return v
}

// Close fails t unless got and want have the same length and every value
// satisfies |got[i] − want[i]| ≤ atol + rtol·|want[i]|; the failure lists
// the first 10 mismatches with their index, got and want.
func Close(t testing.TB, name string, got, want []float32, atol, rtol float64) {
	t.Helper()
	if msg := compare(name, got, f64(want), nil, atol, rtol); msg != "" {
		t.Error(msg)
	}
}

// maxShown is how many mismatches a failure lists.
const maxShown = 10

// compare returns "" if every got[i] is within atol + rtol·|want[i]| of
// want[i], and otherwise a report of the first maxShown mismatches. at, if
// not nil, gives the index to print for each position.
func compare(name string, got []float32, want []float64, at []int, atol, rtol float64) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%s: %d values, want %d", name, len(got), len(want))
	}
	var b strings.Builder
	bad, worst, worstAt := 0, 0.0, 0
	for i := range got {
		g, w := float64(got[i]), want[i]
		if g == w {
			continue // also equal infinities
		}
		diff := math.Abs(g - w)
		if diff <= atol+rtol*math.Abs(w) && !math.IsInf(w, 0) {
			continue
		}
		j := i
		if at != nil {
			j = at[i]
		}
		if bad < maxShown {
			fmt.Fprintf(&b, "\n  %s[%d]: got %.9g, want %.9g (diff %.3g)", name, j, g, w, diff)
		}
		if bad++; bad == 1 || diff > worst || math.IsNaN(diff) && !math.IsNaN(worst) {
			worst, worstAt = diff, j
		}
	}
	if bad == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %d of %d values differ by more than %.3g + %.3g·|want|; worst %.3g at [%d]:%s",
		name, bad, len(got), atol, rtol, worst, worstAt, b.String())
}

// checker runs one check: it allocates guarded buffers, draws inputs from
// its own seeded generator and collects failures, either into a
// *testing.T or, for the suite's own tests, into a list.
type checker struct {
	dev   gpu.Device
	t     *testing.T // nil when collecting into fails
	path  string     // the check's name, e.g. "Conv/conv1"
	fails *[]string
	rng   *rand.Rand
	bufs  []buffer
}

// fatal is the panic value that ends a check after a failure that makes
// going on pointless, such as a failed Alloc.
type fatal struct{}

// run runs f as a sub-check called name: a subtest when c has a T.
func (c *checker) run(name string, f func(*checker)) {
	path := name
	if c.path != "" {
		path = c.path + "/" + name
	}
	if c.t != nil {
		c.t.Run(name, func(t *testing.T) {
			(&checker{dev: c.dev, t: t, path: path}).exec(f)
		})
		return
	}
	(&checker{dev: c.dev, path: path, fails: c.fails}).exec(f)
}

// exec runs f with a fresh generator, turns a panic into a failure, then
// checks the guards of the buffers f allocated and frees them.
func (c *checker) exec(f func(*checker)) {
	c.rng = rand.New(rand.NewPCG(1, 2))
	defer c.release()
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fatal); !ok {
				c.errorf("panic: %v\n%s", r, debug.Stack())
			}
		}
	}()
	f(c)
}

func (c *checker) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if c.t != nil {
		c.t.Helper()
		c.t.Error(msg)
		return
	}
	*c.fails = append(*c.fails, c.path+": "+msg)
}

func (c *checker) fatalf(format string, args ...any) {
	c.errorf(format, args...)
	panic(fatal{})
}

// must ends the check if err is not nil; what names the call.
func (c *checker) must(err error, what string) {
	if err != nil {
		c.fatalf("%s: %s: %v", c.dev.Name(), what, err)
	}
}

// guard is the length and value of the tail every suite buffer carries.
const (
	guard           = 5
	guardV  float32 = -12345.625
	nanBits         = 0x7fc00001
)

// alloc returns a buffer on c.dev for n values followed by the guard,
// holding v (which may be shorter than n) and NaN after it.
func (c *checker) alloc(n int, v []float32) gpu.Buffer {
	return c.allocOn(c.dev, n, v, true)
}

// in returns a guarded buffer holding v.
func (c *checker) in(v []float32) gpu.Buffer { return c.alloc(len(v), v) }

// out returns a guarded buffer for n values holding NaN, so that a value an
// operation fails to write shows.
func (c *checker) out(n int) gpu.Buffer { return c.alloc(n, nil) }

// raw returns a buffer on dev of exactly n values, without guard, holding v
// and NaN after it: for operations that write the whole buffer.
func (c *checker) raw(dev gpu.Device, n int, v []float32) gpu.Buffer {
	return c.allocOn(dev, n, v, false)
}

// allocOn allocates on dev a buffer of n values, plus the guard if guarded,
// to be checked and freed when the check ends.
func (c *checker) allocOn(dev gpu.Device, n int, v []float32, guarded bool) gpu.Buffer {
	size := n
	if guarded {
		size += guard
	}
	b, err := dev.Alloc(size)
	if err != nil {
		c.fatalf("%s: Alloc(%d): %v", dev.Name(), size, err)
	}
	c.bufs = append(c.bufs, buffer{b, dev, guarded && b.Len() == size})
	if b.Len() != size {
		c.fatalf("%s: Alloc(%d) returned a buffer of Len %d", dev.Name(), size, b.Len())
	}
	host := make([]float32, size)
	nan := math.Float32frombits(nanBits)
	for i := range host {
		switch {
		case i < len(v):
			host[i] = v[i]
		case i < n:
			host[i] = nan
		default:
			host[i] = guardV
		}
	}
	if err := dev.Upload(b, host); err != nil {
		c.fatalf("%s: Upload(%d values): %v", dev.Name(), size, err)
	}
	return b
}

// buffer is a buffer a check allocated.
type buffer struct {
	b       gpu.Buffer
	dev     gpu.Device // the device that allocated it
	guarded bool
}

// get downloads the first n values of b.
func (c *checker) get(b gpu.Buffer, n int) []float32 {
	v := make([]float32, n)
	if err := b.Device().Download(v, b); err != nil {
		c.fatalf("%s: Download(%d values): %v", b.Device().Name(), n, err)
	}
	return v
}

// release checks that no operation wrote a guard, then frees the buffers.
func (c *checker) release() {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fatal); !ok {
				c.errorf("panic while checking guards: %v\n%s", r, debug.Stack())
			}
		}
	}()
	bufs := c.bufs
	c.bufs = nil
	for _, b := range bufs {
		if !b.guarded {
			continue
		}
		v := make([]float32, b.b.Len())
		if err := b.b.Device().Download(v, b.b); err != nil {
			c.errorf("%s: Download(%d values): %v", b.dev.Name(), len(v), err)
			continue
		}
		n := len(v) - guard
		for i, x := range v[n:] {
			if x != guardV {
				c.errorf("a buffer of %d values was written past its end: [%d] = %g", n, n+i, x)
				break
			}
		}
	}
	for _, b := range bufs {
		b.dev.Free(b.b)
	}
}

// close reports a mismatch between got and want beyond atol + rtol·|want|.
func (c *checker) close(name string, got []float32, want []float64, atol, rtol float64) bool {
	if msg := compare(name, got, want, nil, atol, rtol); msg != "" {
		c.errorf("%s", msg)
		return false
	}
	return true
}

// closeScaled is close with atol relative to the largest |want|:
// llm.c's tolerance for values computed as long sums in float32.
func (c *checker) closeScaled(name string, got []float32, want []float64, atolRel, rtol float64) bool {
	return c.close(name, got, want, atolRel*maxAbs(want), rtol)
}

// uniform returns n values drawn uniformly from ±[lo, hi): never zero when
// lo > 0, and never exactly zero in any case.
func (c *checker) uniform(n int, lo, hi float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		for v[i] == 0 {
			m := float32(lo + (hi-lo)*c.rng.Float64())
			if c.rng.IntN(2) == 0 {
				m = -m
			}
			v[i] = m
		}
	}
	return v
}

// sym returns n values drawn uniformly from (−a, a), none zero.
func (c *checker) sym(n int, a float64) []float32 { return c.uniform(n, 0, a) }

// distinct returns a random permutation of n values spaced step apart and
// centred on zero, none zero: inputs for pooling with no ties anywhere.
func (c *checker) distinct(n int, step float64) []float32 {
	v := make([]float32, n)
	for i, p := range c.rng.Perm(n) {
		v[i] = float32((float64(p) - float64(n)/2 + 0.5) * step)
	}
	return v
}

// sample returns k distinct random indices below n (all of them if n ≤ k),
// in increasing order.
func (c *checker) sample(n, k int) []int {
	idx := c.rng.Perm(n)
	if n > k {
		idx = idx[:k]
	}
	slices.Sort(idx)
	return idx
}

// fdPoints is how many elements of each tensor a finite-difference check
// perturbs.
const fdPoints = 24

// fd checks grad, a backward operation's ∂L/∂x for L = Σ_j r[j]·y[j] and
// y = forward(x), against central differences
//
//	(L(x + h·e_i) − L(x − h·e_i)) / (x_i⁺ − x_i⁻)
//
// at fdPoints random i, where forward runs the forward operation on the
// device and x_i± are x_i ± h rounded to float32. The differences of y are
// taken element by element in float64, so outputs x_i does not reach cancel
// exactly. A point passes within atol·max|grad| + rtol·|fd|.
func (c *checker) fd(name string, x, r, grad []float32, h, atol, rtol float64, forward func(x []float32) []float32) bool {
	if len(grad) != len(x) {
		c.fatalf("%s: gradient of %d values for an input of %d", name, len(grad), len(x))
	}
	idx := c.sample(len(x), fdPoints)
	got := make([]float32, len(idx))
	want := make([]float64, len(idx))
	for k, i := range idx {
		xp, xm := slices.Clone(x), slices.Clone(x)
		xp[i] = float32(float64(x[i]) + h)
		xm[i] = float32(float64(x[i]) - h)
		yp, ym := forward(xp), forward(xm)
		if len(yp) != len(r) || len(ym) != len(r) {
			c.fatalf("%s: forward gave %d values, r has %d", name, len(yp), len(r))
		}
		dl := 0.0
		for j := range r {
			dl += float64(r[j]) * (float64(yp[j]) - float64(ym[j]))
		}
		got[k] = grad[i]
		want[k] = dl / (float64(xp[i]) - float64(xm[i]))
	}
	scale := maxAbs(f64(grad))
	if msg := compare(name+" vs finite differences", got, want, idx, atol*scale, rtol); msg != "" {
		c.errorf("%s", msg)
		return false
	}
	return true
}

// Finite-difference tolerances: float32 forward passes and h of 1e-2 leave
// about 1e-4 of relative error in a difference quotient; these allow a
// hundred times that.
const (
	fdAtol = 2e-3
	fdRtol = 2e-2
)

func f64(v []float32) []float64 {
	w := make([]float64, len(v))
	for i, x := range v {
		w[i] = float64(x)
	}
	return w
}

func f32(v []float64) []float32 {
	w := make([]float32, len(v))
	for i, x := range v {
		w[i] = float32(x)
	}
	return w
}

func maxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(x))
	}
	return m
}
