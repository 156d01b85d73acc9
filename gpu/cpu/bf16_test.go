package cpu

import (
	"math"
	"testing"
)

// bf16Cases are float32 bit patterns and their bfloat16 roundings, worked
// by hand: ties to even both ways, just above and below one half, signs,
// overflow to infinity, NaNs (signalling ones too, which naive bit
// arithmetic turns into infinities), and subnormals, which must round,
// not flush.
var bf16Cases = []struct {
	in, want uint32
	why      string
}{
	{0x3f800000, 0x3f800000, "1 is a bf16"},
	{0x3f808000, 0x3f800000, "1+2⁻⁸: a tie, 1 is even"},
	{0x3f818000, 0x3f820000, "1+3·2⁻⁸: a tie, 1+2⁻⁷ is odd, so up"},
	{0x3f808001, 0x3f810000, "just above one half: up"},
	{0x3f807fff, 0x3f800000, "just below one half: down"},
	{0xbf818000, 0xbf820000, "negative tie: away from zero to even"},
	{0xbf80ffff, 0xbf810000, "negative, above one half: away from zero"},
	{0x3fffffff, 0x40000000, "the carry steps the exponent: 2"},
	{0x7f7fffff, 0x7f800000, "float32's largest rounds to +Inf"},
	{0x7f7f8000, 0x7f800000, "the tie above bf16's largest: +Inf (even)"},
	{0x7f7f7fff, 0x7f7f0000, "below that tie: bf16's largest"},
	{0xff7fffff, 0xff800000, "−Inf"},
	{0x7f800000, 0x7f800000, "+Inf"},
	{0xff800000, 0xff800000, "−Inf stays"},
	{0x7fc00000, 0x7fc00000, "quiet NaN"},
	{0x7f800001, 0x7fc00000, "signalling NaN stays a NaN (not +Inf)"},
	{0xff800001, 0xffc00000, "negative NaN keeps its sign"},
	{0x7fffffff, 0x7fff0000, "NaN with every bit set: no carry into the sign"},
	{0x00000000, 0x00000000, "+0"},
	{0x80000000, 0x80000000, "−0"},
	{0x00000001, 0x00000000, "float32's smallest subnormal: to 0"},
	{0x00008000, 0x00000000, "subnormal tie, 0 even"},
	{0x00008001, 0x00010000, "bf16's smallest subnormal"},
	{0x00018000, 0x00020000, "subnormal tie, odd: up"},
	{0x807fffff, 0x80800000, "the largest subnormal rounds to −2⁻¹²⁶"},
}

func TestRoundBF16(t *testing.T) {
	d := New(Options{Threads: 3})
	d.grainElems = 2 // split even the small cases over threads
	n := len(bf16Cases)
	x, _ := d.Alloc(n + 1)
	y, _ := d.Alloc(n + 1)
	xs, ys := x.(*Buffer).data, y.(*Buffer).data
	for i, c := range bf16Cases {
		xs[i] = math.Float32frombits(c.in)
	}
	ys[n] = 7 // past n: untouched
	if err := d.RoundBF16(y, x, n); err != nil {
		t.Fatal(err)
	}
	for i, c := range bf16Cases {
		if got := math.Float32bits(ys[i]); got != c.want {
			t.Errorf("RoundBF16(%#08x) = %#08x, want %#08x: %s", c.in, got, c.want, c.why)
		}
	}
	if ys[n] != 7 {
		t.Errorf("RoundBF16 over %d values wrote [%d]", n, n)
	}
	// In place, and idempotent.
	if err := d.RoundBF16(y, y, n); err != nil {
		t.Fatal(err)
	}
	for i, c := range bf16Cases {
		if got := math.Float32bits(ys[i]); got != c.want {
			t.Errorf("RoundBF16 twice (%#08x) = %#08x, want %#08x", c.in, got, c.want)
		}
	}
}
