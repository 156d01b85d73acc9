package model

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Options are what a net takes from its data and its user. The zero value
// of each string is the paper's choice; the others are its ablations.
type Options struct {
	Channels int    // input channels: 3 for RGB; the small nets take the data set's
	Classes  int    // outputs of the last layer
	LRN      string // "paper" (α on the sum, the default), "caffe" (α/n, as cuda-convnet2, Caffe, cuDNN and PyTorch) or "none" (no LRN layers, §3.3's ablation)
	// Activation follows every conv and FC layer but fc8: "relu" (the
	// default, §3.1) or "tanh" (Figure 1's comparison).
	Activation string
	// Pool is the max pooling's window/stride: "3/2" (overlapping, the
	// default, §3.4) or "2/2" (non-overlapping, its ablation).
	Pool string
}

// arch is the family the named nets come from: the paper's Figure 2 with
// per-tower sizes. conv[i] is conv(i+1) per tower; fc are fc6 and fc7 per tower.
type arch struct {
	towers int
	size   int // input height and width
	conv   [5]struct{ filters, kernel, stride, pad int }
	fc     [2]int
	rgb    bool   // the input is always 3 channels
	ref    string // the paper's net this one scales down; see Build
	desc   string
}

var nets = map[string]arch{
	"alexnet": {towers: 2, size: 227, rgb: true,
		conv: [5]struct{ filters, kernel, stride, pad int }{{48, 11, 4, 0}, {128, 5, 1, 2}, {192, 3, 1, 1}, {192, 3, 1, 1}, {128, 3, 1, 1}},
		fc:   [2]int{2048, 2048},
		desc: "the paper's two-tower net (Figure 2), 227×227×3 input"},
	"alexnet-1gpu": {towers: 1, size: 227, rgb: true,
		conv: [5]struct{ filters, kernel, stride, pad int }{{48, 11, 4, 0}, {128, 5, 1, 2}, {192, 3, 1, 1}, {192, 3, 1, 1}, {256, 3, 1, 1}},
		fc:   [2]int{4096, 4096},
		desc: "the paper's one-GPU net (footnote 4): half conv1–conv4, full conv5 and FC"},
	"alexnet-small": {towers: 2, size: 32,
		conv: [5]struct{ filters, kernel, stride, pad int }{{16, 5, 1, 2}, {32, 5, 1, 2}, {48, 3, 1, 1}, {48, 3, 1, 1}, {32, 3, 1, 1}},
		fc:   [2]int{256, 256}, ref: "alexnet",
		desc: "the two-tower topology sized for 32×32 inputs (Fashion-MNIST)"},
	"alexnet-small-1gpu": {towers: 1, size: 32,
		conv: [5]struct{ filters, kernel, stride, pad int }{{16, 5, 1, 2}, {32, 5, 1, 2}, {48, 3, 1, 1}, {48, 3, 1, 1}, {64, 3, 1, 1}},
		fc:   [2]int{512, 512}, ref: "alexnet-1gpu",
		desc: "alexnet-small's one-tower twin, built as footnote 4 builds alexnet-1gpu"},
}

// Names lists the nets Build knows, sorted.
func Names() []string {
	var out []string
	for n := range nets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// CheckOptions reports the first of a net's option strings that no net
// takes, naming its flag; "" is the paper's choice for each.
func CheckOptions(lrn, activation, pool string) error {
	switch {
	case lrn != "" && lrn != "paper" && lrn != "caffe" && lrn != "none":
		return fmt.Errorf("--lrn %q: no LRN convention %[1]q: use paper (α on the sum), caffe (α/n) or none (no LRN layers)", lrn)
	case activation != "" && activation != "relu" && activation != "tanh":
		return fmt.Errorf("--activation %q: no activation %[1]q: use relu or tanh", activation)
	case pool != "" && pool != "3/2" && pool != "2/2":
		return fmt.Errorf("--pool %q: no pooling %[1]q: use 3/2 (overlapping, the paper's) or 2/2 (window/stride)", pool)
	}
	return nil
}

// InputSize is the height and width of the named net's input, or 0 for an
// unknown net.
func InputSize(name string) int { return nets[name].size }

// Build returns the named net: its layer table with every shape inferred.
//
// The table follows the paper (§3.5): conv1 on both towers reads the image;
// conv2, conv4 and conv5 read their own tower; conv3, fc6, fc7 and fc8 read
// both towers (a then b). ReLU follows every conv and FC layer but fc8; LRN
// follows conv1 and conv2; 3/2 max pooling follows conv1, conv2 and conv5;
// dropout 0.5 follows fc6 and fc7. fc8 sits on tower a, as in cuda-convnet2.
// Options select the paper's ablations: tanh in place of every ReLU, no LRN
// (pool1 and pool2 then read conv1 and conv2), 2/2 pooling in place of 3/2;
// each keeps everything else, init included, and the net's name.
// Init (§5): weights N(0, 0.01²); biases 1 in conv2, conv4, conv5, fc6 and
// fc7, 0 elsewhere.
//
// The small nets keep the paper's init in the sense that matters: each
// layer multiplies its input's scale by what the paper's layer does. A
// layer's gain is std·√fan-in, and the small nets' fan-ins are 3 to 16 times
// smaller (conv1 reads 1×5×5 values, not 3×11×11), so their weights' std is
// 0.01·√(paper fan-in / fan-in). With a plain 0.01 the signal reaching fc8
// would be thousands of times weaker than in the paper's net and the small
// nets would not learn in any reasonable time.
func Build(name string, o Options) (*Net, error) {
	a, ok := nets[name]
	if !ok {
		return nil, fmt.Errorf("model: unknown net %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	if o.Channels < 0 {
		return nil, fmt.Errorf("--channels %d: a net's input needs at least 1 channel (0: the net's own)", o.Channels)
	}
	if o.Classes < 2 {
		return nil, fmt.Errorf("model: %s needs at least 2 classes, got %d", name, o.Classes)
	}
	ch := o.Channels
	if a.rgb || ch == 0 {
		ch = 3
	}
	if err := CheckOptions(o.LRN, o.Activation, o.Pool); err != nil {
		return nil, err
	}
	alpha := float32(1e-4)
	switch o.LRN {
	case "", "paper":
		o.LRN = "paper"
	case "caffe":
		alpha /= 5
	}
	relu := o.Activation != "tanh"
	if o.Activation == "" {
		o.Activation = "relu"
	}
	window, stride := 3, 2
	switch o.Pool {
	case "", "3/2":
		o.Pool = "3/2"
	case "2/2":
		window, stride = 2, 2
	}

	n := &Net{Name: name, Input: Shape{ch, a.size, a.size}, Classes: o.Classes, Towers: a.towers, LRN: o.LRN,
		Activation: o.Activation, Pool: o.Pool}
	add := func(l *Layer) { n.Layers = append(n.Layers, l) }
	suffix := func(t int) string {
		if a.towers == 1 {
			return ""
		}
		return string(rune('a' + t))
	}
	all := func(base string) []string {
		var out []string
		for t := 0; t < a.towers; t++ {
			out = append(out, base+suffix(t))
		}
		return out
	}
	conv := func(i, t int, inputs []string, bias float32) {
		c := a.conv[i]
		add(&Layer{Name: fmt.Sprintf("conv%d%s", i+1, suffix(t)), Kind: Conv, Inputs: inputs, Tower: t,
			Filters: c.filters, Kernel: c.kernel, Stride: c.stride, Pad: c.pad, ReLU: relu, Tanh: !relu,
			BiasInit: bias, WeightStd: 0.01})
	}
	// lrn adds norm(i) after conv(i) and returns the layer pool(i) reads.
	lrn := func(i, t int) string {
		if o.LRN == "none" {
			return fmt.Sprintf("conv%d", i)
		}
		add(&Layer{Name: fmt.Sprintf("norm%d%s", i, suffix(t)), Kind: LRN, Inputs: []string{fmt.Sprintf("conv%d%s", i, suffix(t))}, Tower: t,
			Kernel: 5, Alpha: alpha, Beta: 0.75, K: 2})
		return fmt.Sprintf("norm%d", i)
	}
	pool := func(i, t int, from string) {
		add(&Layer{Name: fmt.Sprintf("pool%d%s", i, suffix(t)), Kind: Pool, Inputs: []string{from + suffix(t)}, Tower: t, Kernel: window, Stride: stride})
	}
	fc := func(i, t int, inputs []string) {
		add(&Layer{Name: fmt.Sprintf("fc%d%s", i, suffix(t)), Kind: Linear, Inputs: inputs, Tower: t,
			Filters: a.fc[i-6], ReLU: relu, Tanh: !relu, BiasInit: 1, WeightStd: 0.01})
		add(&Layer{Name: fmt.Sprintf("drop%d%s", i, suffix(t)), Kind: Dropout, Inputs: []string{fmt.Sprintf("fc%d%s", i, suffix(t))}, Tower: t, P: 0.5})
	}

	add(&Layer{Name: "data", Kind: Input})
	for t := 0; t < a.towers; t++ {
		conv(0, t, []string{"data"}, 0)
		pool(1, t, lrn(1, t))
		conv(1, t, []string{"pool1" + suffix(t)}, 1)
		pool(2, t, lrn(2, t))
	}
	for t := 0; t < a.towers; t++ {
		conv(2, t, all("pool2"), 0)
		conv(3, t, []string{"conv3" + suffix(t)}, 1)
		conv(4, t, []string{"conv4" + suffix(t)}, 1)
		pool(5, t, "conv5")
	}
	for t := 0; t < a.towers; t++ {
		fc(6, t, all("pool5"))
	}
	for t := 0; t < a.towers; t++ {
		fc(7, t, all("drop6"))
	}
	add(&Layer{Name: "fc8", Kind: Linear, Inputs: all("drop7"), Tower: 0, Filters: o.Classes, WeightStd: 0.01})
	if err := n.finish(); err != nil {
		return nil, err
	}
	if a.ref != "" {
		ref, err := Build(a.ref, Options{Classes: o.Classes})
		if err != nil {
			return nil, err
		}
		for _, l := range n.Layers {
			if rl := ref.Layer(l.Name); l.HasParams() && rl != nil {
				l.WeightStd = rl.WeightStd * float32(math.Sqrt(float64(rl.fanIn())/float64(l.fanIn())))
			}
		}
	}
	return n, nil
}

// Describe returns one line per known net.
func Describe() string {
	var b strings.Builder
	for _, name := range Names() {
		fmt.Fprintf(&b, "%-20s %s\n", name, nets[name].desc)
	}
	return b.String()
}
