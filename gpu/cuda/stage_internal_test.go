package cuda

import (
	"slices"
	"testing"
)

// StageUpload on the host GPU: the data arrives, src may be reused as soon
// as the call returns, the page-locked buffers are cycled and grown, and
// Close releases them with the copy stream.
func TestStageUploadOnHostGPU(t *testing.T) {
	g := newHostGPU(t, nil, 2)
	d := g.open(Options{})
	var after []any
	for k, n := range []int{10, 1000, 10, 5000, 7} {
		dst, err := d.Alloc(n)
		if err != nil {
			t.Fatal(err)
		}
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(k*100000 + i)
		}
		want := slices.Clone(src)
		var prev any
		if len(after) > 0 {
			prev = after[len(after)-1]
		}
		ev, err := d.StageUpload(dst, src, prev)
		if err != nil || ev == nil {
			t.Fatalf("stage %d: %v, event %v", k, err, ev)
		}
		clear(src) // the copy was taken: src is free
		if err := d.Wait(ev); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, n)
		if err := d.Download(got, dst); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("stage %d: %d values arrived wrong", k, n)
		}
		r, err := d.Record()
		if err != nil {
			t.Fatal(err)
		}
		after = append(after, r)
		d.Free(dst)
	}
	g.mu.Lock()
	pinned := len(g.pinned)
	g.mu.Unlock()
	if pinned == 0 || pinned > stageSlots {
		t.Errorf("%d page-locked buffers for 5 stages; want 1 to %d, cycled", pinned, stageSlots)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pinned) != 0 || len(g.streams) != 0 {
		t.Errorf("after Close: %d page-locked buffers and %d streams left", len(g.pinned), len(g.streams))
	}
}
