package cuda

import "testing"

// pick takes the fastest algorithm cudnnFind* returned that ran, that is
// not a tensor-core one unless TF32 is on, and that is deterministic when
// Deterministic asks for it.
func TestPick(t *testing.T) {
	perf := []convPerf{ // as cudnnFind* returns them: fastest first
		{Algo: 7, Status: 9, MathType: cudnnFMAMath, Determinism: cudnnDeterministic}, // failed
		{Algo: 6, MathType: cudnnTensorOpMath, Determinism: cudnnDeterministic, Memory: 60},
		{Algo: 5, MathType: cudnnFMAMath, Determinism: 0, Memory: 50},
		{Algo: 4, MathType: cudnnDefaultMath, Determinism: cudnnDeterministic, Memory: 40},
		{Algo: 3, MathType: cudnnFMAMath, Determinism: cudnnDeterministic, Memory: 30},
	}
	for _, tc := range []struct {
		opt  Options
		want int32
	}{
		{Options{}, 5},
		{Options{TF32: true}, 6},
		{Options{Deterministic: true}, 4},
		{Options{TF32: true, Deterministic: true}, 6},
	} {
		d := &Device{name: "test", opt: tc.opt}
		a, err := d.pick(perf, int32(len(perf)), "find")
		if err != nil || a.id != tc.want || a.ws != uint64(10*tc.want) {
			t.Errorf("%+v: picked %+v, %v; want algorithm %d", tc.opt, a, err, tc.want)
		}
	}
	d := &Device{name: "test", opt: Options{Deterministic: true}}
	if _, err := d.pick(perf[:3], 3, "find"); err == nil {
		t.Error("no deterministic FP32 algorithm among the results, and no error")
	}
}
