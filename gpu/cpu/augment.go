package cpu

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/alexnet-go/trainer/gpu"
)

// Augment crops, reflects, mean-subtracts and colour-shifts N images, the
// operation documented on gpu.Ops:
//
//	dst[n,c,y,x] = (float32(src[n,c,Y+y,X+x′]) − mean[c,Y+y,X+x′]) + off[n,c]
//
// with x′ = Crop−1−x if Flip, else x; src is bytes packed four per word
// (gpu.PackBytes), params (N, 3+C) holds X, Y, Flip, off[0..C) per image.
// One image per thread; the result does not depend on the thread count.
// data.RenderCrop computes the same function on the host and its tests
// check the two agree bit for bit.
func (d *Device) Augment(dst, src, mean, params gpu.Buffer, s gpu.AugmentShape) error {
	validate(s)
	dd := d.data("dst", dst, s.DstLen())          // (N, C, Crop, Crop)
	sd := d.data("src", src, s.SrcLen())          // N·C·Size·Size bytes, packed
	md := d.data("mean", mean, s.MeanLen())       // (C, Size, Size)
	pd := d.data("params", params, s.ParamsLen()) // (N, 3+C)
	// Check every image's parameters here, in the calling goroutine, so
	// that a bad one panics where the caller can see it.
	np := 3 + s.C
	for n := range s.N {
		p := pd[n*np:]
		if !cropAt(p[0], s) || !cropAt(p[1], s) || (p[2] != 0 && p[2] != 1) {
			panic(fmt.Sprintf("cpu: %s: Augment: image %d: X, Y, Flip = %g, %g, %g; want integers in [0, %d] and 0 or 1",
				d.name, n, p[0], p[1], p[2], s.Size-s.Crop))
		}
	}
	bytes := byteView(sd, s.N*s.C*s.Size*s.Size)
	img, out := s.C*s.Size*s.Size, s.C*s.Crop*s.Crop
	t := d.elemThreads(int64(s.DstLen()))
	parallelFor(s.N, t, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			p := pd[n*np : (n+1)*np]
			x0, y0, flip := int(p[0]), int(p[1]), p[2] == 1
			for c := range s.C {
				off := p[3+c]
				for y := range s.Crop {
					at := (c*s.Size+y0+y)*s.Size + x0
					srow := bytes[n*img+at : n*img+at+s.Crop]
					mrow := md[at : at+s.Crop]
					o := n*out + (c*s.Crop+y)*s.Crop
					drow := dd[o : o+s.Crop]
					if flip {
						augmentRowFlip(drow, srow, mrow, off)
					} else {
						augmentRow(drow, srow, mrow, off)
					}
				}
			}
		}
	})
	return nil
}

// cropAt reports whether v is an integer offset in [0, Size−Crop].
func cropAt(v float32, s gpu.AugmentShape) bool {
	return v >= 0 && v <= float32(s.Size-s.Crop) && v == float32(math.Trunc(float64(v)))
}

// augmentRow sets d[x] = (float32(s[x]) − m[x]) + off.
func augmentRow(d []float32, s []uint8, m []float32, off float32) {
	s, m = s[:len(d)], m[:len(d)]
	for x := range d {
		d[x] = (float32(s[x]) - m[x]) + off
	}
}

// augmentRowFlip sets d[len−1−j] = (float32(s[j]) − m[j]) + off.
func augmentRowFlip(d []float32, s []uint8, m []float32, off float32) {
	n := len(d)
	s, m = s[:n], m[:n]
	for j := n - 1; j >= 0; j-- {
		d[n-1-j] = (float32(s[j]) - m[j]) + off
	}
}

// littleEndian reports whether the host stores the low byte of a word
// first, as gpu.PackBytes does.
var littleEndian = func() bool {
	w := uint32(1)
	return *(*byte)(unsafe.Pointer(&w)) == 1
}()

// byteView returns the first n bytes packed in w: on a little-endian host
// the words' own memory, read as bytes; elsewhere an unpacked copy.
func byteView(w []float32, n int) []uint8 {
	if !littleEndian || len(w) == 0 {
		return gpu.UnpackBytes(w, n)
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), 4*len(w))[:n:n]
}
