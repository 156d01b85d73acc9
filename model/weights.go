package model

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/alexnet-go/trainer/internal/safefile"
)

// Tensor is a dense float32 array in row-major order.
type Tensor struct {
	Shape []int
	Data  []float32
}

// Len is the product of the shape.
func (t Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Weights are a net's parameters by name: "<layer>.weight" and "<layer>.bias".
type Weights map[string]Tensor

// Init draws a net's initial weights from the seed (the paper, §5): every
// weight from N(0, WeightStd²), every bias set to BiasInit. Each layer draws
// from its own stream, so adding a layer does not change the others.
func Init(n *Net, seed uint64) Weights {
	w := Weights{}
	for i, l := range n.Layers {
		if !l.HasParams() {
			continue
		}
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		wt := Tensor{Shape: l.WeightShape()}
		wt.Data = make([]float32, wt.Len())
		for j := range wt.Data {
			wt.Data[j] = float32(rng.NormFloat64()) * l.WeightStd
		}
		b := Tensor{Shape: []int{l.Filters}, Data: make([]float32, l.Filters)}
		for j := range b.Data {
			b.Data[j] = l.BiasInit
		}
		w[l.Name+".weight"] = wt
		w[l.Name+".bias"] = b
	}
	return w
}

// Check reports the first tensor the net needs that w lacks or has in
// another shape, and any tensor w has that the net does not.
func (w Weights) Check(n *Net) error {
	want := map[string][]int{}
	for _, l := range n.Layers {
		if l.HasParams() {
			want[l.Name+".weight"] = l.WeightShape()
			want[l.Name+".bias"] = []int{l.Filters}
		}
	}
	for _, name := range sortedKeys(want) {
		t, ok := w[name]
		if !ok {
			return fmt.Errorf("model: weights lack %s %v that net %s needs (weights of another net?)", name, want[name], n.Name)
		}
		if !slices.Equal(t.Shape, want[name]) {
			return fmt.Errorf("model: weights hold %s as %v, net %s needs %v (weights of another net or data set?)", name, t.Shape, n.Name, want[name])
		}
	}
	for name := range w {
		if _, ok := want[name]; !ok {
			return fmt.Errorf("model: weights hold %s, which net %s does not have (weights of another net?)", name, n.Name)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The safetensors format (huggingface/safetensors): an 8-byte little-endian
// header length, a JSON header mapping each tensor's name to its dtype, shape
// and [begin, end) byte offsets in the data that follows, and the data.

type stEntry struct {
	DType   string   `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// maxHeader bounds the JSON header a reader accepts (the format's own limit).
const maxHeader = 100 << 20

// WriteSafetensors writes tensors, and string metadata if any, to path:
// to a temporary file in the same folder first, renamed into place once it
// is complete, so a reader never sees half a file.
func WriteSafetensors(path string, tensors map[string]Tensor, meta map[string]string) error {
	f, err := safefile.Create(path)
	if err != nil {
		return fmt.Errorf("model: writing %s: %v", path, err)
	}
	defer f.Close()
	if err := EncodeSafetensors(f, tensors, meta); err != nil {
		return fmt.Errorf("model: writing %s: %v", path, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("model: writing %s: %v", path, err)
	}
	return nil
}

// EncodeSafetensors writes tensors, and string metadata if any, to w in
// the safetensors format, tensors in name order. The same tensors and
// metadata always give the same bytes.
func EncodeSafetensors(w io.Writer, tensors map[string]Tensor, meta map[string]string) error {
	names := sortedKeys(tensors)
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var off int64
	for _, name := range names {
		t := tensors[name]
		if t.Len() != len(t.Data) {
			return fmt.Errorf("model: tensor %s: shape %v holds %d values, data has %d", name, t.Shape, t.Len(), len(t.Data))
		}
		n := int64(4 * len(t.Data))
		header[name] = stEntry{DType: "F32", Shape: t.Shape, Offsets: [2]int64{off, off + n}}
		off += n
	}
	js, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	buf := make([]byte, 8, 1<<20)
	binary.LittleEndian.PutUint64(buf, uint64(len(js)))
	buf = append(buf, js...)
	for _, name := range names {
		for _, v := range tensors[name].Data {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			if len(buf) >= 1<<20 {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
	}
	_, err = w.Write(buf)
	return err
}

// ErrFormat is wrapped by every error about a file that is not a valid
// float32 safetensors file.
var ErrFormat = errors.New("not a valid safetensors file")

// ReadSafetensors reads every tensor of a safetensors file, and its metadata.
// Only F32 tensors are supported.
func ReadSafetensors(path string) (map[string]Tensor, map[string]string, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, nil, fmt.Errorf("model: %s is a directory: give a .safetensors file in it (a run's weights are RUN/weights.safetensors)", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("model: %w", err)
	}
	tensors, meta, err := DecodeSafetensors(b)
	if err != nil {
		return nil, nil, fmt.Errorf("model: %s: %w", path, err)
	}
	return tensors, meta, nil
}

// DecodeSafetensors decodes a whole safetensors file held in b. Its errors
// wrap ErrFormat.
func DecodeSafetensors(b []byte) (map[string]Tensor, map[string]string, error) {
	size := int64(len(b))
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, a...))
	}
	if size < 8 {
		return nil, nil, bad("file of %d bytes is too short for the header", size)
	}
	hl := binary.LittleEndian.Uint64(b)
	if hl > maxHeader || int64(hl) > size-8 {
		return nil, nil, bad("header length %d does not fit the file of %d bytes", hl, size)
	}
	js := b[8 : 8+hl]
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, nil, bad("header is not JSON: %v", err)
	}
	data := b[8+hl:]
	dataLen := int64(len(data))
	tensors := map[string]Tensor{}
	var meta map[string]string
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, bad("metadata is not a map of strings: %v", err)
			}
			continue
		}
		var e stEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, nil, bad("tensor %s: %v", name, err)
		}
		if e.DType != "F32" {
			return nil, nil, bad("tensor %s has dtype %s; only F32 is supported (convert with tensor.float())", name, e.DType)
		}
		t := Tensor{Shape: e.Shape}
		n := int64(1)
		for _, d := range e.Shape {
			if d < 0 || d > math.MaxInt32 {
				return nil, nil, bad("tensor %s has shape %v", name, e.Shape)
			}
			n *= int64(d)
			if n > dataLen {
				break
			}
		}
		b, end := e.Offsets[0], e.Offsets[1]
		if b < 0 || end < b || end > dataLen || end-b != 4*n {
			return nil, nil, bad("tensor %s: offsets %v do not hold shape %v in %d bytes of data", name, e.Offsets, e.Shape, dataLen)
		}
		t.Data = make([]float32, n)
		for i := range t.Data {
			t.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[b+4*int64(i):]))
		}
		tensors[name] = t
	}
	return tensors, meta, nil
}

// DescribeTensors lists tensors one per line, name and shape, sorted by name.
func DescribeTensors(tensors map[string]Tensor) string {
	var b strings.Builder
	for _, name := range sortedKeys(tensors) {
		fmt.Fprintf(&b, "%s %v\n", name, tensors[name].Shape)
	}
	return b.String()
}
