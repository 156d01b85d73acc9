package open

import (
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/gpu"
)

// --precision bf16 wraps every device in package bf16's rounding; fp32 and
// tf32 leave the CPU devices as they are; anything else is refused in one
// line naming the flag.
func TestDevicesPrecision(t *testing.T) {
	type unwrapper interface{ Unwrap() gpu.Device }
	for _, p := range []string{"", "fp32", "tf32", "bf16"} {
		ds, err := Devices("cpu,cpu", DeviceOptions{Threads: 1, Precision: p})
		if err != nil {
			t.Fatalf("precision %q: %v", p, err)
		}
		for _, d := range ds {
			if _, wrapped := d.(unwrapper); wrapped != (p == "bf16") {
				t.Errorf("precision %q: %s is %T", p, d.Name(), d)
			}
		}
		if err := ds.Close(); err != nil {
			t.Error(err)
		}
	}
	_, err := Devices("cpu", DeviceOptions{Precision: "fp16"})
	if err == nil || !strings.Contains(err.Error(), `--precision "fp16": use fp32, tf32 or bf16`) || strings.Contains(err.Error(), "\n") {
		t.Errorf("precision fp16: %v", err)
	}
}
