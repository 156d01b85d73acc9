package data

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/jpeg"
	pngenc "image/png"
	"os"
	"path/filepath"
	"testing"
)

func FuzzReadIDXImages(f *testing.F) {
	valid := idxImages(synthSet(3, 1, 4, 5, 10, 1))
	f.Add(valid)
	for _, k := range []int{0, 3, 15, 16, 17, len(valid) - 1} {
		f.Add(valid[:k])
	}
	f.Add(append(valid, 1))
	hostile := binary.BigEndian.AppendUint32(nil, imagesMagic)
	hostile = binary.BigEndian.AppendUint32(hostile, 1<<31)
	hostile = binary.BigEndian.AppendUint32(hostile, 28)
	hostile = binary.BigEndian.AppendUint32(hostile, 28)
	f.Add(append(hostile, make([]byte, 100)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, h, w, pix, err := ReadIDXImages(bytes.NewReader(b), "fuzz")
		if err != nil {
			if pix != nil {
				t.Error("pixels returned with an error")
			}
			return
		}
		if n*h*w != len(pix) || 16+len(pix) != len(b) || h <= 0 || w <= 0 {
			t.Errorf("n, h, w = %d, %d, %d with %d pixels from %d bytes", n, h, w, len(pix), len(b))
		}
	})
}

func FuzzReadIDXLabels(f *testing.F) {
	valid := idxLabels(synthSet(5, 1, 1, 1, 10, 1))
	f.Add(valid)
	for _, k := range []int{0, 3, 7, 8, 9, len(valid) - 1} {
		f.Add(valid[:k])
	}
	f.Add(append(valid, 1))
	hostile := binary.BigEndian.AppendUint32(nil, labelsMagic)
	hostile = binary.BigEndian.AppendUint32(hostile, 0xffffffff)
	f.Add(append(hostile, 1, 2, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		labels, err := ReadIDXLabels(bytes.NewReader(b), "fuzz")
		if err != nil {
			return
		}
		if 8+len(labels) != len(b) {
			t.Errorf("%d labels from %d bytes", len(labels), len(b))
		}
		for _, l := range labels {
			if l < 0 || l > 255 {
				t.Errorf("label %d", l)
			}
		}
	})
}

// FuzzDecodeImage feeds arbitrary bytes to the image decoders prepare and
// predict use (libjpeg-turbo where present, Go's PNG, JPEG and GIF): an
// error is fine, a crash or a hang is not.
func FuzzDecodeImage(f *testing.F) {
	var png, jpg bytes.Buffer
	img := image.NewRGBA(image.Rect(0, 0, 9, 7))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 37)
	}
	pngenc.Encode(&png, img)
	jpeg.Encode(&jpg, img, nil)
	f.Add(png.Bytes())
	f.Add(jpg.Bytes())
	f.Add(jpg.Bytes()[:jpg.Len()/2])
	f.Add([]byte("GIF89a"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if img, err := DecodeJPEG(b); err == nil {
			FromImage(img, 3, 8, 8)
		}
		p := filepath.Join(dir, "x")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if img, err := DecodeImage(p); err == nil {
			FromImage(img, 1, 5, 5)
		}
	})
}
