package data

// Spread returns n images of src spread evenly over it, for training or
// validating on a part of a data set (--limit): image i of the result is
// image ⌊(2i+1)·N/(2n)⌋ of src, the middle of the i-th of n equal
// stretches of it, in order. A source stored in class order, as a prepared
// set's shards are (Prepare keeps the source's order, class folder by class
// folder), so gives each class its share of the n images, about
// n·(its images)/N, where the first n images would all be of the first
// class or few. The choice depends on n and N alone: the same n of the same
// source always gives the same images. If n is not positive or not less
// than src.N(), Spread returns src itself.
//
// Reads are src's, so the result is as safe for concurrent use as src.
func Spread(src CropSource, n int) CropSource {
	if n <= 0 || n >= src.N() {
		return src
	}
	return spread{src, n}
}

// spread is Spread's view of a source.
type spread struct {
	CropSource
	n int
}

// index returns the source index of image i.
func (s spread) index(i int) int {
	return int((2*uint64(i) + 1) * uint64(s.CropSource.N()) / (2 * uint64(s.n)))
}

func (s spread) N() int { return s.n }

func (s spread) Label(i int) int { return s.CropSource.Label(s.index(i)) }

func (s spread) Read(i int, dst []uint8) error { return s.CropSource.Read(s.index(i), dst) }
