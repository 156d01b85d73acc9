package model

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The paper's parameter counts (the paper, §3.5), layer by layer.
func TestAlexNetParams(t *testing.T) {
	n, err := Build("alexnet", Options{Classes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Params(); got != 60965224 {
		t.Errorf("alexnet has %d parameters, the paper's net 60,965,224", got)
	}
	want := map[string]int{"conv1": 34944, "conv2": 307456, "conv3": 885120, "conv4": 663936,
		"conv5": 442624, "fc6": 37752832, "fc7": 16781312, "fc8": 4097000}
	for base, w := range want {
		got := 0
		for _, l := range n.Layers {
			if strings.TrimRight(l.Name, "ab") == base {
				got += l.Params()
			}
		}
		if got != w {
			t.Errorf("%s: %d parameters, want %d", base, got, w)
		}
	}
	shapes := map[string]Shape{"conv1a": {48, 55, 55}, "pool1b": {48, 27, 27}, "conv2a": {128, 27, 27},
		"pool2a": {128, 13, 13}, "conv3b": {192, 13, 13}, "pool5a": {128, 6, 6}, "fc6a": {2048, 1, 1}, "fc8": {1000, 1, 1}}
	for name, s := range shapes {
		if got := n.Layer(name).Out; got != s {
			t.Errorf("%s output %v, want %v", name, got, s)
		}
	}
	if ws := n.Layer("conv3a").WeightShape(); !slices.Equal(ws, []int{192, 256, 3, 3}) {
		t.Errorf("conv3a.weight %v, want (192,256,3,3)", ws)
	}
	if ws := n.Layer("fc6a").WeightShape(); !slices.Equal(ws, []int{2048, 9216}) {
		t.Errorf("fc6a.weight %v, want (2048,9216)", ws)
	}
	edges := strings.Join(n.CrossEdges(), " ")
	wantEdges := "pool2b→conv3a pool2a→conv3b pool5b→fc6a pool5a→fc6b drop6b→fc7a drop6a→fc7b drop7b→fc8"
	if edges != wantEdges {
		t.Errorf("cross edges\n got %s\nwant %s", edges, wantEdges)
	}
}

// Footnote 4's one-GPU net has about as many parameters as the two-GPU net.
func TestOneGPUNets(t *testing.T) {
	for _, pair := range [][2]string{{"alexnet", "alexnet-1gpu"}, {"alexnet-small", "alexnet-small-1gpu"}} {
		two, err := Build(pair[0], Options{Channels: 1, Classes: 10})
		if err != nil {
			t.Fatal(err)
		}
		one, err := Build(pair[1], Options{Channels: 1, Classes: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(one.CrossEdges()) != 0 || one.Towers != 1 {
			t.Errorf("%s: one tower expected, cross edges %v", pair[1], one.CrossEdges())
		}
		r := float64(one.Params()) / float64(two.Params())
		if r < 0.85 || r > 1.15 {
			t.Errorf("%s has %d parameters, %s %d: not about the same", pair[1], one.Params(), pair[0], two.Params())
		}
	}
	small, _ := Build("alexnet-small", Options{Channels: 1, Classes: 10})
	if got := strings.Join(small.CrossEdges(), " "); got != "pool2b→conv3a pool2a→conv3b pool5b→fc6a pool5a→fc6b drop6b→fc7a drop6a→fc7b drop7b→fc8" {
		t.Errorf("alexnet-small must keep alexnet's cross edges, has %s", got)
	}
	if s := small.Layer("pool5a").Out; s.H < 2 {
		t.Errorf("alexnet-small pool5a %v: too small", s)
	}
}

func TestBuildErrors(t *testing.T) {
	if _, err := Build("vgg", Options{Classes: 10}); err == nil || !strings.Contains(err.Error(), "alexnet-small") {
		t.Errorf("unknown net: %v, want a list of known nets", err)
	}
	if _, err := Build("alexnet", Options{Classes: 10, LRN: "torch"}); err == nil {
		t.Error("unknown LRN convention accepted")
	}
	if _, err := Build("alexnet", Options{Classes: 1}); err == nil {
		t.Error("1 class accepted")
	}
	if _, err := Build("alexnet-small", Options{Classes: 10, Channels: -1}); err == nil || !strings.Contains(err.Error(), "--channels -1") {
		t.Errorf("-1 channels: %v, want an error naming --channels", err)
	}
	c, _ := Build("alexnet", Options{Classes: 10, LRN: "caffe"})
	p, _ := Build("alexnet", Options{Classes: 10})
	if got, want := c.Layer("norm1a").Alpha, p.Layer("norm1a").Alpha/5; math.Abs(float64(got-want)) > 1e-12 {
		t.Errorf("caffe α %g, want %g", got, want)
	}
}

func TestInit(t *testing.T) {
	n, _ := Build("alexnet-small", Options{Channels: 1, Classes: 10})
	w := Init(n, 7)
	if err := w.Check(n); err != nil {
		t.Fatal(err)
	}
	for name, bias := range map[string]float32{"conv1a.bias": 0, "conv2b.bias": 1, "conv3a.bias": 0, "conv4a.bias": 1, "conv5b.bias": 1, "fc6a.bias": 1, "fc7b.bias": 1, "fc8.bias": 0} {
		for _, v := range w[name].Data {
			if v != bias {
				t.Fatalf("%s holds %g, want %g", name, v, bias)
			}
		}
	}
	d := w["fc6a.weight"].Data
	var s, s2 float64
	for _, v := range d {
		s += float64(v)
		s2 += float64(v) * float64(v)
	}
	mean, std := s/float64(len(d)), math.Sqrt(s2/float64(len(d)))
	// The paper's gain: fc6a reads 576 values where alexnet's reads 9216.
	if want := 0.01 * math.Sqrt(9216.0/576); math.Abs(mean) > 1e-3 || math.Abs(std-want) > 0.05*want {
		t.Errorf("fc6a.weight mean %g std %g, want N(0, %g²)", mean, std, want)
	}
	big, _ := Build("alexnet", Options{Classes: 1000})
	for _, l := range big.Layers {
		if l.HasParams() && l.WeightStd != 0.01 {
			t.Errorf("alexnet %s: weight std %g, the paper's is 0.01", l.Name, l.WeightStd)
		}
	}
	if std := n.Layer("conv1a").WeightStd; math.Abs(float64(std)-0.01*math.Sqrt(363.0/25)) > 1e-6 {
		t.Errorf("alexnet-small conv1a std %g: the gain of alexnet's conv1 (fan-in 363) on a fan-in of 25", std)
	}
	if Init(n, 7)["conv1a.weight"].Data[3] != w["conv1a.weight"].Data[3] || Init(n, 8)["conv1a.weight"].Data[3] == w["conv1a.weight"].Data[3] {
		t.Error("init must be a function of the seed")
	}
	other, _ := Build("alexnet-small-1gpu", Options{Channels: 1, Classes: 10})
	if err := w.Check(other); err == nil {
		t.Error("weights of alexnet-small accepted by alexnet-small-1gpu")
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.safetensors")
	in := map[string]Tensor{
		"a.weight": {Shape: []int{2, 3}, Data: []float32{1, -2, 3.5, 4, 5, float32(math.Inf(1))}},
		"a.bias":   {Shape: []int{2}, Data: []float32{0.25, -0.5}},
	}
	if err := WriteSafetensors(path, in, map[string]string{"net": "x"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if hl := int(raw[0]) | int(raw[1])<<8; (8+hl)%8 != 0 || raw[8] != '{' {
		t.Errorf("header length %d: data must start 8-aligned after a JSON header", hl)
	}
	out, meta, err := ReadSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	if meta["net"] != "x" {
		t.Errorf("metadata %v", meta)
	}
	for name, want := range in {
		got := out[name]
		if !slices.Equal(got.Shape, want.Shape) {
			t.Fatalf("%s shape %v want %v", name, got.Shape, want.Shape)
		}
		for i := range want.Data {
			if got.Data[i] != want.Data[i] {
				t.Fatalf("%s[%d] = %g want %g", name, i, got.Data[i], want.Data[i])
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary file left behind: %v", entries)
	}
	// Truncations and garbage are refused with ErrFormat, never a panic.
	for _, cut := range []int{0, 4, 8, 20, len(raw) - 1} {
		bad := filepath.Join(dir, "bad.safetensors")
		os.WriteFile(bad, raw[:cut], 0o644)
		if _, _, err := ReadSafetensors(bad); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), bad) {
			t.Errorf("file cut at %d bytes: %v, want ErrFormat naming the file", cut, err)
		}
	}
}

func FuzzReadSafetensors(f *testing.F) {
	dir := f.TempDir()
	good := filepath.Join(dir, "good.safetensors")
	WriteSafetensors(good, map[string]Tensor{"x": {Shape: []int{3}, Data: []float32{1, 2, 3}}}, nil)
	raw, _ := os.ReadFile(good)
	f.Add(raw)
	f.Add(raw[:12])
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f.safetensors")
		os.WriteFile(p, b, 0o644)
		ReadSafetensors(p) // must not panic
	})
}

func TestDescribe(t *testing.T) {
	n, _ := Build("alexnet", Options{Classes: 1000})
	d := n.Describe()
	for _, want := range []string{"conv1a", "conv3b", "pool2a,pool2b", "48×55×55", "60,965,224", "fc8"} {
		if !strings.Contains(d, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, d)
		}
	}
}

func TestPreprocessRoundTrip(t *testing.T) {
	p := Preprocess{Net: "alexnet-small", LRN: "paper", Classes: []string{"T-shirt/top", "Ankle boot"}, C: 1, ImageH: 28, ImageW: 28, Canvas: 2,
		Mean: []float32{1.5, -2, 255, 0.125}}
	q, err := PreprocessFrom(p.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	if q.Net != p.Net || q.LRN != p.LRN || strings.Join(q.Classes, "|") != "T-shirt/top|Ankle boot" || q.C != 1 || q.ImageH != 28 || q.ImageW != 28 || q.Canvas != 2 {
		t.Errorf("round trip: %+v", q)
	}
	for i, v := range p.Mean {
		if q.Mean[i] != v {
			t.Errorf("mean[%d] = %g, want %g", i, q.Mean[i], v)
		}
	}
	if _, err := PreprocessFrom(map[string]string{"net": "x"}); err == nil || !strings.Contains(err.Error(), "trainer train") {
		t.Errorf("metadata of another tool: %v", err)
	}
	m := p.Metadata()
	m["mean"] = m["mean"][:8]
	if _, err := PreprocessFrom(m); err == nil {
		t.Error("a short mean accepted")
	}
}

// A directory given as a weights file says so, not "too short".
func TestReadSafetensorsDirectory(t *testing.T) {
	dir := t.TempDir()
	_, _, err := ReadSafetensors(dir)
	if err == nil || !strings.Contains(err.Error(), "is a directory") || !strings.Contains(err.Error(), "weights.safetensors") {
		t.Errorf("ReadSafetensors(a directory): %v", err)
	}
}
