package cpu

import (
	"fmt"
	"math"

	"github.com/alexnet-go/trainer/gpu"
)

// SoftmaxCrossEntropy sets prob (N, Classes) to the softmax of each row of
// logits (N, Classes) and loss[n] (N) to −log prob[n, labels[n]]. It works
// in float64 from the row's maximum, so neither overflows and a loss of a
// tiny probability stays accurate: loss = log Σ_j e^(z_j) − z_label with
// z = logit − max. A label that is not a class index is an error.
func (d *Device) SoftmaxCrossEntropy(prob, loss, logits, labels gpu.Buffer, s gpu.SoftmaxShape) error {
	checkSoftmax(s)
	pd := d.data("prob", prob, s.N*s.Classes)     // (N, Classes)
	ld := d.data("loss", loss, s.N)               // (N)
	zd := d.data("logits", logits, s.N*s.Classes) // (N, Classes)
	yd := d.data("labels", labels, s.N)           // (N)
	if err := d.checkLabels(yd, s); err != nil {
		return err
	}
	t := d.elemThreads(16 * int64(s.N) * int64(s.Classes))
	parallelFor(s.N, t, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			z, p := zd[n*s.Classes:(n+1)*s.Classes], pd[n*s.Classes:(n+1)*s.Classes]
			m := float64(z[0])
			for _, v := range z {
				m = max(m, float64(v))
			}
			var sum float64
			for _, v := range z {
				sum += math.Exp(float64(v) - m)
			}
			lse := math.Log(sum)
			for i, v := range z {
				p[i] = float32(math.Exp(float64(v) - m - lse))
			}
			ld[n] = float32(lse - (float64(z[int(yd[n])]) - m))
		}
	})
	return nil
}

// SoftmaxCrossEntropyBackward sets dlogits (N, Classes) =
// (prob − onehot(labels)) / N from prob (N, Classes) and labels (N).
func (d *Device) SoftmaxCrossEntropyBackward(dlogits, prob, labels gpu.Buffer, s gpu.SoftmaxShape) error {
	checkSoftmax(s)
	gd := d.data("dlogits", dlogits, s.N*s.Classes) // (N, Classes)
	pd := d.data("prob", prob, s.N*s.Classes)       // (N, Classes)
	yd := d.data("labels", labels, s.N)             // (N)
	if err := d.checkLabels(yd, s); err != nil {
		return err
	}
	nf := float32(s.N)
	t := d.elemThreads(int64(s.N) * int64(s.Classes))
	parallelFor(s.N, t, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			g, p := gd[n*s.Classes:(n+1)*s.Classes], pd[n*s.Classes:(n+1)*s.Classes]
			for i, v := range p {
				g[i] = v / nf
			}
			l := int(yd[n])
			g[l] = (p[l] - 1) / nf
		}
	})
	return nil
}

// checkSoftmax panics on a softmax shape without classes or with negative
// rows.
func checkSoftmax(s gpu.SoftmaxShape) {
	if s.N < 0 || s.Classes < 1 {
		panic(fmt.Sprintf("cpu: invalid softmax shape %+v", s))
	}
}

// checkLabels reports a label that is not a class index 0…Classes−1.
// Labels come from data, so a bad one is an error rather than a panic.
func (d *Device) checkLabels(labels []float32, s gpu.SoftmaxShape) error {
	for n, v := range labels {
		if !(v >= 0 && v < float32(s.Classes) && v == float32(int(v))) {
			return fmt.Errorf("cpu: %s: label %v of row %d is not a class in [0, %d)", d.name, v, n, s.Classes)
		}
	}
	return nil
}
