package model

import (
	"strings"
	"testing"
)

// The ablations change one thing each: the activation of every conv and FC
// layer but fc8, the LRN layers, or the pooling window; the parameters
// stay, the name stays, and the defaults are the paper's.
func TestVariants(t *testing.T) {
	def, err := Build("alexnet", Options{Classes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if def.Activation != "relu" || def.Pool != "3/2" || def.LRN != "paper" {
		t.Errorf("defaults: activation %q, pool %q, LRN %q; want relu, 3/2, paper", def.Activation, def.Pool, def.LRN)
	}
	explicit, err := Build("alexnet", Options{Classes: 1000, Activation: "relu", Pool: "3/2", LRN: "paper"})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := explicit.Describe(), def.Describe(); a != b {
		t.Errorf("relu, 3/2, paper spelled out differ from the defaults:\n%s\n%s", a, b)
	}

	tanh, err := Build("alexnet", Options{Classes: 1000, Activation: "tanh"})
	if err != nil {
		t.Fatal(err)
	}
	if tanh.Name != "alexnet" || tanh.Params() != 60965224 {
		t.Errorf("tanh: net %q with %d parameters, want alexnet with 60,965,224", tanh.Name, tanh.Params())
	}
	for _, l := range tanh.Layers {
		want := l.HasParams() && l.Name != "fc8"
		if l.Tanh != want || l.ReLU {
			t.Errorf("tanh: %s has Tanh %v, ReLU %v; want Tanh %v and no ReLU", l.Name, l.Tanh, l.ReLU, want)
		}
	}
	if d := tanh.Describe(); !strings.Contains(d, "conv+tanh") || !strings.Contains(d, "fc+tanh") || strings.Contains(d, "relu") {
		t.Errorf("tanh: Describe must show conv+tanh and fc+tanh, no relu:\n%s", d)
	}

	none, err := Build("alexnet", Options{Classes: 1000, LRN: "none"})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range none.Layers {
		if l.Kind == LRN {
			t.Errorf("LRN none: layer %s is an LRN layer", l.Name)
		}
	}
	for _, tw := range []string{"a", "b"} {
		for i, want := range []string{"conv1", "conv2"} {
			p := none.Layer("pool" + string(rune('1'+i)) + tw)
			if p == nil || len(p.Inputs) != 1 || p.Inputs[0] != want+tw {
				t.Errorf("LRN none: pool%d%s reads %v, want %s%s", i+1, tw, p.Inputs, want, tw)
			}
		}
	}
	if none.Params() != 60965224 || none.Layer("pool2a").Out != (Shape{128, 13, 13}) {
		t.Errorf("LRN none: %d parameters, pool2a %v; want 60,965,224 and 128×13×13", none.Params(), none.Layer("pool2a").Out)
	}
	if d := none.Describe(); !strings.Contains(d, "LRN none") || strings.Contains(d, "norm1a") {
		t.Errorf("LRN none: Describe:\n%s", d)
	}

	// 2/2 pooling: alexnet's maps come out the same sizes (55→27→13→6),
	// alexnet-small's are 32→16→8→4.
	p22, err := Build("alexnet", Options{Classes: 1000, Pool: "2/2"})
	if err != nil {
		t.Fatal(err)
	}
	if p22.Params() != 60965224 {
		t.Errorf("pool 2/2: alexnet has %d parameters, want 60,965,224", p22.Params())
	}
	for name, s := range map[string]Shape{"pool1a": {48, 27, 27}, "pool2b": {128, 13, 13}, "pool5a": {128, 6, 6}} {
		if l := p22.Layer(name); l.Out != s || l.Kernel != 2 || l.Stride != 2 {
			t.Errorf("pool 2/2: alexnet %s is %d/%d with output %v, want 2/2 and %v", name, l.Kernel, l.Stride, l.Out, s)
		}
	}
	small, err := Build("alexnet-small", Options{Channels: 1, Classes: 10, Pool: "2/2"})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]Shape{"conv1a": {16, 32, 32}, "pool1a": {16, 16, 16}, "pool2b": {32, 8, 8}, "pool5a": {32, 4, 4}, "fc6a": {256, 1, 1}} {
		if got := small.Layer(name).Out; got != s {
			t.Errorf("pool 2/2: alexnet-small %s output %v, want %v", name, got, s)
		}
	}
	if ws := small.Layer("fc6b").WeightShape(); ws[1] != 2*32*4*4 {
		t.Errorf("pool 2/2: alexnet-small fc6b.weight %v, want 512 inputs", ws)
	}
	if !strings.Contains(small.Describe(), "max pooling 2/2") {
		t.Errorf("pool 2/2: Describe does not say so:\n%s", small.Describe())
	}
	// The small nets' weight scale follows the fan-in, which 2/2 changes
	// for fc6 alone.
	ref, _ := Build("alexnet-small", Options{Channels: 1, Classes: 10})
	for _, l := range small.Layers {
		if !l.HasParams() {
			continue
		}
		rl := ref.Layer(l.Name)
		if same := l.WeightStd == rl.WeightStd; same != (l.fanIn() == rl.fanIn()) || same != (l.Name != "fc6a" && l.Name != "fc6b") {
			t.Errorf("pool 2/2: %s fan-in %d std %g, with 3/2 %d std %g", l.Name, l.fanIn(), l.WeightStd, rl.fanIn(), rl.WeightStd)
		}
	}
}

func TestVariantErrors(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Classes: 10, Activation: "sigmoid"}, `activation "sigmoid"`},
		{Options{Classes: 10, Pool: "3/3"}, `pooling "3/3"`},
		{Options{Classes: 10, LRN: "off"}, "none"},
	} {
		if _, err := Build("alexnet-small", tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.o, err, tc.want)
		}
	}
}

func TestPreprocessVariants(t *testing.T) {
	p := Preprocess{Net: "alexnet-small", LRN: "none", Activation: "tanh", Pool: "2/2", Classes: []string{"a", "b"},
		C: 1, ImageH: 28, ImageW: 28, Canvas: 1, Mean: []float32{3}}
	q, err := PreprocessFrom(p.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	if q.LRN != "none" || q.Activation != "tanh" || q.Pool != "2/2" {
		t.Errorf("round trip: LRN %q, activation %q, pool %q", q.LRN, q.Activation, q.Pool)
	}
	// Weights from before the options: the defaults.
	m := p.Metadata()
	delete(m, "activation")
	delete(m, "pool")
	q, err = PreprocessFrom(m)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Build(q.Net, Options{Channels: q.C, Classes: len(q.Classes), LRN: "paper", Activation: q.Activation, Pool: q.Pool})
	if err != nil || n.Activation != "relu" || n.Pool != "3/2" {
		t.Errorf("older metadata builds %v, %v; want relu, 3/2", n, err)
	}
}
