// Package model describes the network as data: a table of layers, each with a
// name, a kind, the layers it reads, the tower (device) it runs on and its
// output shape. The scheduler in package parallel derives everything else
// from this table: which buffers to allocate, which edges cross devices,
// what to transfer and when.
//
// Shapes are per image: C channels of H×W (fully-connected layers have
// H = W = 1). A batch adds N in front: (N, C, H, W).
package model

import (
	"fmt"
	"strings"
)

// Kind is what a layer computes.
type Kind int

// The layer kinds. Conv and Linear layers may apply a ReLU or a tanh to
// their output.
const (
	Input Kind = iota
	Conv
	LRN
	Pool
	Linear
	Dropout
)

func (k Kind) String() string {
	return [...]string{"input", "conv", "lrn", "pool", "fc", "dropout"}[k]
}

// Shape is the per-image shape of a layer's output.
type Shape struct{ C, H, W int }

// Len is C·H·W.
func (s Shape) Len() int { return s.C * s.H * s.W }

func (s Shape) String() string {
	if s.H == 1 && s.W == 1 {
		return fmt.Sprintf("%d", s.C)
	}
	return fmt.Sprintf("%d×%d×%d", s.C, s.H, s.W)
}

// Layer is one row of the network's table.
type Layer struct {
	Name   string
	Kind   Kind
	Inputs []string // the layers it reads, joined along C (per image) in this order
	Tower  int      // 0 is tower "a" on the first device, 1 is tower "b"

	// Conv: Filters of Kernel×Kernel, every Stride pixels, zero Pad.
	// Pool: Kernel×Kernel windows every Stride pixels.
	// LRN: Kernel is the number of channels n in the sum.
	// Linear: Filters is the number of outputs.
	Filters, Kernel, Stride, Pad int
	ReLU                         bool    // Conv and Linear: apply max(0, ·) to the output
	Tanh                         bool    // Conv and Linear: apply tanh to the output (not with ReLU)
	Alpha, Beta, K               float32 // LRN: the coefficient applied to the sum, β and k
	P                            float32 // Dropout: the probability of dropping
	BiasInit                     float32 // Conv and Linear: the initial bias
	WeightStd                    float32 // Conv and Linear: the std of the initial weights

	In  Shape // the joined input
	Out Shape // the output
}

// HasParams reports whether the layer has a weight and a bias.
func (l *Layer) HasParams() bool { return l.Kind == Conv || l.Kind == Linear }

// WeightShape is the weight's shape in PyTorch's layout: (K, C, R, S) for a
// convolution, (Out, In) for a linear layer.
func (l *Layer) WeightShape() []int {
	switch l.Kind {
	case Conv:
		return []int{l.Filters, l.In.C, l.Kernel, l.Kernel}
	case Linear:
		return []int{l.Filters, l.In.Len()}
	}
	return nil
}

// fanIn is the number of inputs each output sums.
func (l *Layer) fanIn() int {
	if l.Kind == Conv {
		return l.In.C * l.Kernel * l.Kernel
	}
	return l.In.Len()
}

// Params is the number of weights and biases.
func (l *Layer) Params() int {
	if !l.HasParams() {
		return 0
	}
	n := 1
	for _, d := range l.WeightShape() {
		n *= d
	}
	return n + l.Filters
}

// Net is a network: its layers in an order where every layer follows its
// inputs, and the last layer's outputs are the logits.
type Net struct {
	Name    string
	Input   Shape
	Classes int
	Towers  int
	LRN     string // "paper" or "caffe", the α convention, or "none": no LRN layers
	Layers  []*Layer

	// Activation follows every conv and FC layer but the last: "relu" or
	// "tanh". Pool is the max pooling's window/stride: "3/2" (overlapping,
	// the paper's) or "2/2".
	Activation, Pool string

	byName map[string]*Layer
}

// Layer returns the layer called name, or nil.
func (n *Net) Layer(name string) *Layer { return n.byName[name] }

// Params is the total number of weights and biases.
func (n *Net) Params() int {
	t := 0
	for _, l := range n.Layers {
		t += l.Params()
	}
	return t
}

// Logits is the last layer, whose outputs are the class scores.
func (n *Net) Logits() *Layer { return n.Layers[len(n.Layers)-1] }

// Consumers returns the layers that read layer name, in table order.
func (n *Net) Consumers(name string) []*Layer {
	var out []*Layer
	for _, l := range n.Layers {
		for _, in := range l.Inputs {
			if in == name {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// CrossEdges lists the edges "from→to" whose layers sit on different towers:
// the only places where activations (and, backwards, gradients) move between
// devices.
func (n *Net) CrossEdges() []string {
	var out []string
	for _, l := range n.Layers {
		for _, in := range l.Inputs {
			if src := n.byName[in]; src.Kind != Input && src.Tower != l.Tower {
				out = append(out, in+"→"+l.Name)
			}
		}
	}
	return out
}

// finish checks the table and infers every layer's shapes.
func (n *Net) finish() error {
	n.byName = map[string]*Layer{}
	for _, l := range n.Layers {
		if _, dup := n.byName[l.Name]; dup {
			return fmt.Errorf("model: %s: layer %q defined twice", n.Name, l.Name)
		}
		if l.ReLU && l.Tanh {
			return fmt.Errorf("model: %s: layer %q applies both ReLU and tanh", n.Name, l.Name)
		}
		if l.Kind == Input {
			l.Out = n.Input
			n.byName[l.Name] = l
			continue
		}
		if len(l.Inputs) == 0 {
			return fmt.Errorf("model: %s: layer %q has no inputs", n.Name, l.Name)
		}
		var in Shape
		for i, name := range l.Inputs {
			src, ok := n.byName[name]
			if !ok {
				return fmt.Errorf("model: %s: layer %q reads %q, which is not defined before it", n.Name, l.Name, name)
			}
			s := src.Out
			switch {
			case i == 0:
				in = s
			case l.Kind == Linear:
				in = Shape{in.Len() + s.Len(), 1, 1}
			case s.H != in.H || s.W != in.W:
				return fmt.Errorf("model: %s: layer %q joins %q (%v) with maps of another size (%v)", n.Name, l.Name, name, s, in)
			default:
				in.C += s.C
			}
		}
		if l.Kind == Linear {
			in = Shape{in.Len(), 1, 1}
		}
		l.In = in
		switch l.Kind {
		case Conv:
			p := (in.H+2*l.Pad-l.Kernel)/l.Stride + 1
			q := (in.W+2*l.Pad-l.Kernel)/l.Stride + 1
			if p < 1 || q < 1 {
				return fmt.Errorf("model: %s: layer %q: a %d×%d filter does not fit its %v input", n.Name, l.Name, l.Kernel, l.Kernel, in)
			}
			l.Out = Shape{l.Filters, p, q}
		case Pool:
			if in.H < l.Kernel || in.W < l.Kernel {
				return fmt.Errorf("model: %s: layer %q: a %d×%d window does not fit its %v input", n.Name, l.Name, l.Kernel, l.Kernel, in)
			}
			l.Out = Shape{in.C, (in.H-l.Kernel)/l.Stride + 1, (in.W-l.Kernel)/l.Stride + 1}
		case Linear:
			l.Out = Shape{l.Filters, 1, 1}
		default:
			l.Out = in
		}
		n.byName[l.Name] = l
	}
	if last := n.Logits(); last.Kind != Linear || last.Out.C != n.Classes {
		return fmt.Errorf("model: %s: the last layer must be a linear layer with %d outputs", n.Name, n.Classes)
	}
	return nil
}

// Describe returns the table `trainer inspect` prints: each layer's name,
// kind, device, inputs, output shape and parameter count, then the total.
func (n *Net) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: input %v, %d classes, %d tower(s), LRN %s, activation %s, max pooling %s\n\n",
		n.Name, n.Input, n.Classes, n.Towers, lrnString(n.LRN), n.Activation, n.Pool)
	fmt.Fprintf(&b, "%-8s %-10s %-7s %-24s %-12s %12s\n", "layer", "kind", "device", "inputs", "output", "parameters")
	for _, l := range n.Layers {
		if l.Kind == Input {
			continue
		}
		kind := l.Kind.String()
		switch {
		case l.ReLU:
			kind += "+relu"
		case l.Tanh:
			kind += "+tanh"
		}
		fmt.Fprintf(&b, "%-8s %-10s %-7d %-24s %-12v %12s\n", l.Name, kind, l.Tower, strings.Join(l.Inputs, ","), l.Out, Commas(l.Params()))
	}
	fmt.Fprintf(&b, "%-8s %-10s %-7s %-24s %-12s %12s\n", "total", "", "", "", "", Commas(n.Params()))
	if e := n.CrossEdges(); len(e) > 0 {
		fmt.Fprintf(&b, "\ncross-device edges: %s\n", strings.Join(e, " "))
	}
	return b.String()
}

// lrnString describes a net's LRN setting for Describe.
func lrnString(c string) string {
	if c == "none" {
		return "none"
	}
	return fmt.Sprintf("α convention %q", c)
}

// Commas writes v with thousands separators, 60965224 as "60,965,224".
func Commas(v int) string {
	s := fmt.Sprint(v)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Bytes writes a byte count for people: "57.2 MiB".
func Bytes(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
