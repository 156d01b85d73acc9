package open

import (
	"os"
	"strings"
	"testing"

	"github.com/alexnet-go/trainer/data"
)

// On CI (CI set, as .ci/run's callers set it) the native libraries .ci/run
// installs must load: a broken install would otherwise fall back to pure
// Go silently and every test would still pass, only slower and without
// testing the native paths. Elsewhere the fallbacks are legitimate and the
// test only reports what is in use.
func TestNativeLibrariesOnCI(t *testing.T) {
	blas, jpeg := BLAS(), data.JPEGDecoder()
	t.Logf("BLAS: %s; JPEG: %s", blas, jpeg)
	if os.Getenv("CI") == "" {
		return
	}
	if !strings.HasPrefix(blas, "OpenBLAS") {
		t.Errorf("CI: the CPU device's BLAS is %q, not OpenBLAS: .ci/run installs libopenblas0-pthread", blas)
	}
	if !strings.HasPrefix(jpeg, "libjpeg-turbo") {
		t.Errorf("CI: the JPEG decoder is %q, not libjpeg-turbo: .ci/run installs libturbojpeg0", jpeg)
	}
}
