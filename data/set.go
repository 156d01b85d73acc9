package data

import "fmt"

// Set is an in-memory image classification data set.
type Set struct {
	// Name identifies the set in logs, e.g. "fashion-mnist/train".
	Name string
	// N images of C channels, H rows and W columns each.
	N, C, H, W int
	// Pixels holds the images, 8 bits per value, W fastest.
	Pixels []uint8 // (N, C, H, W)
	// Labels holds each image's class index, in [0, len(Classes)).
	Labels []int // (N)
	// Classes names the classes, by label.
	Classes []string
}

// Validate checks that the set's slices agree with its dimensions and that
// every label names a class.
func (s *Set) Validate() error {
	switch {
	case s.N < 0 || s.C <= 0 || s.H <= 0 || s.W <= 0:
		return fmt.Errorf("data: set %q: bad dimensions N=%d C=%d H=%d W=%d", s.Name, s.N, s.C, s.H, s.W)
	case len(s.Pixels) != s.N*s.C*s.H*s.W:
		return fmt.Errorf("data: set %q: %d pixel values, want N·C·H·W = %d", s.Name, len(s.Pixels), s.N*s.C*s.H*s.W)
	case len(s.Labels) != s.N:
		return fmt.Errorf("data: set %q: %d labels, want N = %d", s.Name, len(s.Labels), s.N)
	case len(s.Classes) == 0:
		return fmt.Errorf("data: set %q: no class names", s.Name)
	}
	for i, l := range s.Labels {
		if l < 0 || l >= len(s.Classes) {
			return fmt.Errorf("data: set %q: label %d of image %d is out of range for %d classes", s.Name, l, i, len(s.Classes))
		}
	}
	return nil
}

// Image returns image i's pixels, (C, H, W), sharing the set's memory.
func (s *Set) Image(i int) []uint8 {
	n := s.C * s.H * s.W
	return s.Pixels[i*n : (i+1)*n]
}

// Limit returns a set of the first n images of s, sharing its memory. If n is
// not positive or not less than s.N, it returns s itself.
func Limit(s *Set, n int) *Set {
	if n <= 0 || n >= s.N {
		return s
	}
	t := *s
	t.Name = fmt.Sprintf("%s[:%d]", s.Name, n)
	t.N = n
	t.Pixels = s.Pixels[: n*s.C*s.H*s.W : n*s.C*s.H*s.W]
	t.Labels = s.Labels[:n:n]
	return &t
}
