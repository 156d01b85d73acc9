package gputest_test

import (
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/gpu/gputest"
)

// brokenAugment computes Augment on the host with one plausible mistake.
type brokenAugment struct {
	gpu.Device
	bug string
}

func (d brokenAugment) Augment(dst, src, mean, params gpu.Buffer, s gpu.AugmentShape) error {
	bytes := gpu.UnpackBytes(get(d.Device, src, s.SrcLen()), s.N*s.C*s.Size*s.Size)
	if d.bug == "big-endian" {
		for i := 0; i+4 <= len(bytes); i += 4 {
			bytes[i], bytes[i+1], bytes[i+2], bytes[i+3] = bytes[i+3], bytes[i+2], bytes[i+1], bytes[i]
		}
	}
	m, p := get(d.Device, mean, s.MeanLen()), get(d.Device, params, s.ParamsLen())
	out := make([]float32, s.DstLen())
	i := 0
	for n := range s.N {
		q := p[n*(3+s.C):]
		x0, y0, flip := int(q[0]), int(q[1]), q[2] == 1 && d.bug != "no-flip"
		for c := range s.C {
			for y := range s.Crop {
				for x := range s.Crop {
					sx := x0 + x
					if flip {
						sx = x0 + s.Crop - 1 - x
					}
					at := (c*s.Size+y0+y)*s.Size + sx
					b, mv := float32(bytes[n*s.MeanLen()+at]), m[at]
					switch d.bug {
					case "mean-at-output":
						mv = m[(c*s.Size+y0+y)*s.Size+x0+x]
					case "offset-first":
						out[i] = (b + q[3+c]) - mv
						i++
						continue
					}
					out[i] = (b - mv) + q[3+c]
					i++
				}
			}
		}
	}
	return d.Device.Upload(dst, out)
}

func TestAugmentCheckCatchesBrokenOps(t *testing.T) {
	healthy := cpu.New(cpu.Options{Threads: 1})
	if fails := gputest.Failures(healthy, "Augment"); len(fails) > 0 {
		t.Fatalf("the CPU device fails Augment:\n%s", strings.Join(fails, "\n"))
	}
	if fails := gputest.Failures(brokenAugment{healthy, ""}, "Augment"); len(fails) > 0 {
		t.Fatalf("the host reference of this test fails Augment:\n%s", strings.Join(fails, "\n"))
	}
	for _, tc := range []struct{ bug, want string }{
		{"no-flip", "rgb_9to5: dst:"},
		{"mean-at-output", "rgb_9to5: dst:"},
		{"big-endian", "rgb_9to5: dst:"},
		{"offset-first", "dst in float32"},
	} {
		t.Run(tc.bug, func(t *testing.T) {
			fails := strings.Join(gputest.Failures(brokenAugment{healthy, tc.bug}, "Augment"), "\n")
			switch {
			case fails == "":
				t.Errorf("Augment passes a device that is broken")
			case !strings.Contains(fails, tc.want):
				t.Errorf("Augment fails the broken device, but with no failure containing %q:\n%s", tc.want, fails)
			default:
				first, _, _ := strings.Cut(fails, "\n  ")
				t.Logf("as it should, Augment reports: %s …", first)
			}
		})
	}
}
