package parallel_test

import (
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/model"
)

// The paper's ablations (tanh for ReLU, no LRN, 2/2 pooling) pass the same
// whole-net finite-difference check as the paper's net
// (TestWholeNetGradient), on fewer weights: the layers each variant
// changes and the ones that read them.
func TestVariantGradient(t *testing.T) {
	for _, tc := range []struct {
		name  string
		o     model.Options
		gain  float32 // every weight is multiplied by it
		check []string
	}{
		// With the init's weights a tanh net passes so little gradient
		// below fc6 (~1e-5, under the float32 loss's noise) that finite
		// differences would check nothing there; 4× the weights give
		// every layer gradients of 1e-2 to 1e-1.
		{"tanh", model.Options{Activation: "tanh"}, 4, []string{"conv1a.weight", "conv2b.bias", "conv5a.weight", "fc6b.weight", "fc7a.bias", "fc8.weight"}},
		{"lrn_none", model.Options{LRN: "none"}, 1, []string{"conv1b.weight", "conv2a.weight", "conv3a.weight", "fc8.bias"}},
		{"pool_2x2", model.Options{Pool: "2/2"}, 1, []string{"conv1a.weight", "conv2b.weight", "conv5b.weight", "fc6a.weight", "fc8.weight"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.Channels, o.Classes = 1, 10
			net, err := model.Build("alexnet-small", o)
			if err != nil {
				t.Fatal(err)
			}
			w := model.Init(net, 5)
			for name, wt := range w {
				if strings.HasSuffix(name, ".weight") {
					for i := range wt.Data {
						wt.Data[i] *= tc.gain
					}
				}
			}
			strong := gradCheck(t, net, w, tc.check, 2)
			if strong < len(tc.check)*2/3 {
				t.Errorf("only %d of %d gradients checked are above 5e-3, five times the tolerance: the check is too weak", strong, 2*len(tc.check))
			}
		})
	}
}
