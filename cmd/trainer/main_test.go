package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/alexnet-go/trainer/model"
)

// run runs the trainer in-process and returns its error, as main would print
// it, with stdout captured.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	old := os.Stdout
	r, w, _ := os.Pipe()
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	err := app().Run(append([]string{"trainer"}, args...))
	w.Close()
	os.Stdout = old
	return <-done, err
}

func TestInspect(t *testing.T) {
	out, err := run(t, "inspect", "--net", "alexnet")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"conv1a", "conv1b", "48×55×55", "pool2a,pool2b", "fc8", "60,965,224"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
}

// writeIDX writes a small IDX data set (n training and n test images of
// 28×28) to dir, gzipped like Debian's.
func writeIDX(t *testing.T, dir string, n int) {
	rng := rand.New(rand.NewPCG(1, 2))
	write := func(name string, magic uint32, dims []uint32, body []byte) {
		var b bytes.Buffer
		binary.Write(&b, binary.BigEndian, magic)
		binary.Write(&b, binary.BigEndian, dims)
		b.Write(body)
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		z := gzip.NewWriter(f)
		z.Write(b.Bytes())
		z.Close()
		f.Close()
	}
	for _, split := range []string{"train", "t10k"} {
		pix := make([]byte, n*28*28)
		for i := range pix {
			pix[i] = byte(rng.IntN(256))
		}
		labels := make([]byte, n)
		for i := range labels {
			labels[i] = byte(i % 10)
		}
		write(split+"-images-idx3-ubyte.gz", 0x803, []uint32{uint32(n), 28, 28}, pix)
		write(split+"-labels-idx1-ubyte.gz", 0x801, []uint32{uint32(n)}, labels)
	}
}

// Every bad input ends with one line naming the problem.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.Mkdir(good, 0o755)
	writeIDX(t, good, 20)
	trunc := filepath.Join(dir, "trunc")
	os.Mkdir(trunc, 0o755)
	writeIDX(t, trunc, 20)
	raw, _ := os.ReadFile(filepath.Join(trunc, "train-images-idx3-ubyte.gz"))
	os.WriteFile(filepath.Join(trunc, "train-images-idx3-ubyte.gz"), raw[:len(raw)/2], 0o644)
	missing := filepath.Join(dir, "missing")
	os.Mkdir(missing, 0o755)
	writeIDX(t, missing, 20)
	os.Remove(filepath.Join(missing, "t10k-labels-idx1-ubyte.gz"))
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o555)

	out := func(name string) string { return filepath.Join(dir, "runs", name) }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"train", "--data", missing, "--out", out("1")}, "t10k-labels"},
		{[]string{"train", "--data", trunc, "--out", out("2")}, "train-images-idx3-ubyte.gz"},
		{[]string{"train", "--data", filepath.Join(dir, "nowhere"), "--out", out("3")}, "nowhere"},
		{[]string{"train", "--net", "resnet", "--data", good, "--out", out("4")}, `--net "resnet"`},
		{[]string{"train", "--batch", "0", "--data", good, "--out", out("5")}, "--batch 0"},
		{[]string{"train", "--lrn", "torch", "--data", good, "--out", out("6")}, "--lrn"},
		{[]string{"train", "--gpus", "0,1", "--data", good, "--out", out("7")}, "--gpus 0,1"},
		{[]string{"train", "--data", good, "--out", filepath.Join(ro, "run")}, "--out " + filepath.Join(ro, "run")},
		{[]string{"train", "--data", good, "--out", "/proc/version/run"}, "--out /proc/version/run"},
		{[]string{"train", "--epochs", "x"}, "epochs"},
		{[]string{"train", "--bogus"}, "bogus"},
		{[]string{"inspect", "--net", "vgg"}, `"vgg"`},
		{[]string{"forward", "--net", "alexnet-small", "--weights", filepath.Join(dir, "none.safetensors"), "--input", "x", "--output", "y"}, "none.safetensors"},
		{[]string{"forward", "--net", "alexnet-small", "--weights", filepath.Join(dir, "none.safetensors"), "--input", "x", "--output", "y", "--lrn", "bogus"}, `--lrn "bogus"`},
		{[]string{"forward", "--net", "alexnet-small", "--weights", dir, "--input", "x", "--output", "y"}, dir + " is a directory"},
		{[]string{"eval", "--weights", dir}, dir + " is a directory"},
		{[]string{"train", "--weight-decay", "nan", "--data", good, "--out", out("8")}, "--weight-decay NaN"},
		{[]string{"train", "--val-split", "-1", "--data", good, "--out", out("9")}, "--val-split -1"},
		{[]string{"train", "--val-split", "1000000", "--data", good, "--out", out("10")}, "--val-split 1000000"},
		{[]string{"train", "--lr-steps", "5,3", "--data", good, "--out", out("11")}, `--lr-steps "5,3"`},
		{[]string{"train", "--lr-margin", "2", "--data", good, "--out", out("12")}, "--lr-margin 2"},
		{[]string{"train", "--lr-drops", "-1", "--data", good, "--out", out("13")}, "--lr-drops -1"},
		{[]string{"inspect", "--channels", "-1"}, "--channels -1"},
		{[]string{"bench", "bogus"}, "bench bogus: no such benchmark"},
		{[]string{"bench", "speed", "--batch", "x"}, "trainer bench speed --help"},
	} {
		stdout, err := run(t, tc.args...)
		if stdout != "" && err != nil {
			t.Errorf("trainer %s printed on stdout, as well as its error:\n%s", strings.Join(tc.args, " "), stdout)
		}
		if os.Geteuid() == 0 && strings.HasPrefix(tc.want, "--out "+ro) {
			// Root writes anywhere: the trainer is run as nobody instead.
			err = runAsNobody(t, tc.args...)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("trainer %s:\n error %v\n want one line containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// forward writes logits and, with --layers, every layer; the layer outputs
// follow the documented layout: conv3a reads tower a's pool2 then tower b's,
// fc6a reads pool5a flattened in C,H,W order then pool5b, in PyTorch's
// (out, in, kh, kw) and (out, in) weight layouts.
func TestForwardLayout(t *testing.T) {
	dir := t.TempDir()
	net, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	w := model.Init(net, 3)
	for _, t := range w {
		for i := range t.Data {
			t.Data[i] *= 4 // a livelier net: most ReLUs pass something
		}
	}
	wpath, xpath, ypath := filepath.Join(dir, "w.safetensors"), filepath.Join(dir, "x.safetensors"), filepath.Join(dir, "y.safetensors")
	if err := model.WriteSafetensors(wpath, w, map[string]string{"lrn": "paper"}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 5))
	x := model.Tensor{Shape: []int{2, 1, 32, 32}, Data: make([]float32, 2*32*32)}
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64() * 50)
	}
	model.WriteSafetensors(xpath, map[string]model.Tensor{"input": x}, nil)
	if _, err := run(t, "forward", "--net", "alexnet-small", "--weights", wpath, "--input", xpath, "--output", ypath, "--layers", "--gpus", "cpu,cpu"); err != nil {
		t.Fatal(err)
	}
	y, _, err := model.ReadSafetensors(ypath)
	if err != nil {
		t.Fatal(err)
	}
	if s := y["logits"].Shape; len(s) != 2 || s[0] != 2 || s[1] != 10 {
		t.Fatalf("logits shape %v", s)
	}
	if s := y["conv3a"].Shape; len(s) != 4 || s[1] != 48 || s[2] != 7 {
		t.Fatalf("conv3a shape %v", s)
	}
	// conv3a = relu(conv(pool2a ‖ pool2b, w) + b), computed here in float64.
	pa, pb := y["pool2a"], y["pool2b"]
	cw, cb := w["conv3a.weight"], w["conv3a.bias"]
	C, H, W := pa.Shape[1], pa.Shape[2], pa.Shape[3]
	at := func(n, c, i, j int) float64 {
		if i < 0 || j < 0 || i >= H || j >= W {
			return 0
		}
		if c < C {
			return float64(pa.Data[((n*C+c)*H+i)*W+j])
		}
		return float64(pb.Data[((n*C+c-C)*H+i)*W+j])
	}
	got := y["conv3a"]
	K := cw.Shape[0]
	bad := 0
	for n := 0; n < 2; n++ {
		for k := 0; k < K; k++ {
			for i := 0; i < H; i++ {
				for j := 0; j < W; j++ {
					s := float64(cb.Data[k])
					for c := 0; c < 2*C; c++ {
						for r := 0; r < 3; r++ {
							for q := 0; q < 3; q++ {
								s += float64(cw.Data[((k*2*C+c)*3+r)*3+q]) * at(n, c, i+r-1, j+q-1)
							}
						}
					}
					s = math.Max(s, 0)
					g := float64(got.Data[((n*K+k)*H+i)*W+j])
					if math.Abs(g-s) > 1e-4*(1+math.Abs(s)) && bad < 5 {
						bad++
						t.Errorf("conv3a[%d,%d,%d,%d] = %g, from pool2a‖pool2b %g", n, k, i, j, g, s)
					}
				}
			}
		}
	}
	// fc6a = relu(W·(pool5a ‖ pool5b) + b), each flattened in C,H,W order.
	p5a, p5b, fw, fb := y["pool5a"], y["pool5b"], w["fc6a.weight"], w["fc6a.bias"]
	per := len(p5a.Data) / 2
	nz := 0
	for n := 0; n < 2; n++ {
		in := append(append([]float32{}, p5a.Data[n*per:(n+1)*per]...), p5b.Data[n*per:(n+1)*per]...)
		for o := 0; o < fw.Shape[0]; o++ {
			s := float64(fb.Data[o])
			for i, v := range in {
				s += float64(fw.Data[o*len(in)+i]) * float64(v)
			}
			s = math.Max(s, 0)
			g := float64(y["fc6a"].Data[n*fw.Shape[0]+o])
			if s > 0 {
				nz++
			}
			if math.Abs(g-s) > 1e-4*(1+math.Abs(s)) {
				t.Fatalf("fc6a[%d,%d] = %g, from pool5a‖pool5b %g", n, o, g, s)
			}
		}
	}
	if nz == 0 {
		t.Error("fc6a is all zero: the check checked nothing")
	}
	// Weights of another net are refused, naming the tensor.
	if _, err := run(t, "forward", "--net", "alexnet-small-1gpu", "--weights", wpath, "--input", xpath, "--output", filepath.Join(dir, "z.safetensors")); err == nil || !strings.Contains(err.Error(), "lack conv1.") {
		t.Errorf("alexnet-small weights for alexnet-small-1gpu: %v", err)
	}
	// The output never overwrites an input.
	if _, err := run(t, "forward", "--net", "alexnet-small", "--weights", wpath, "--input", xpath, "--output", wpath); err == nil {
		t.Error("--output equal to --weights accepted")
	}
}

// runAsNobody runs the trainer as the unprivileged user nobody (the test
// runs as root, which permissions do not stop) and returns its error line.
// The test binary is copied where nobody may run it, and the folders
// above the test's temporary directory are opened to it.
func runAsNobody(t *testing.T, args ...string) error {
	t.Helper()
	bin, err := os.MkdirTemp("", "trainer-nobody")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(bin)
	exe, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(bin, "trainer.test")
	if err := os.WriteFile(path, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(bin, 0o755)
	for d := t.TempDir(); d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			os.Chmod(d, fi.Mode().Perm()|0o011)
		}
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "TRAINER_TEST_MAIN=1")
	cmd.Dir = bin
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		return nil
	}
	line := strings.TrimSpace(string(out))
	if i := strings.LastIndex(line, "\n"); i >= 0 {
		line = line[i+1:]
	}
	return errors.New(strings.TrimPrefix(line, "trainer: "))
}
