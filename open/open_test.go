package open

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/model"
)

// Opening and closing devices, with a net placed on them, in a loop holds
// nothing past Close: no worker goroutine, and the heap after the last
// round is what it was after the first.
func TestDevicesOpenCloseLoop(t *testing.T) {
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	w := model.Init(net, 1)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var after1 uint64
	goroutines := runtime.NumGoroutine()
	const rounds = 30
	for i := range rounds {
		p, err := Place(net, w, "cpu,cpu", DeviceOptions{Threads: 1}, 8)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Devices.Names(); strings.Join(got, ",") != "cpu:0,cpu:1" {
			t.Fatalf("devices %v, want cpu:0,cpu:1", got)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.Devices.Close(); err != nil {
			t.Fatalf("a second Close: %v", err)
		}
		if i == 0 {
			after1 = heap()
		}
	}
	// A stopped worker's goroutine ends soon after, not at once.
	for i := 0; i < 100 && runtime.NumGoroutine() > goroutines; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("%d goroutines after %d rounds of open and close, %d before: the runners' workers were not stopped", n, rounds, goroutines)
	}
	// A round holds the net's weights, momenta, gradients and activations
	// (several MB): keeping even one round's would show.
	if last := heap(); last > after1+(1<<20) {
		t.Errorf("heap after %d rounds of open and close: %d bytes; after the first: %d", rounds, last, after1)
	}
}

// closeCounter counts Close calls.
type closeCounter struct {
	gpu.Device
	closed *[]string
	name   string
	err    error
}

func (c closeCounter) Close() error { *c.closed = append(*c.closed, c.name); return c.err }

func TestDeviceListClose(t *testing.T) {
	var closed []string
	bad := errors.New("cuStreamSynchronize failed")
	ds := DeviceList{closeCounter{name: "a", closed: &closed}, closeCounter{name: "b", closed: &closed, err: bad}, closeCounter{name: "c", closed: &closed}}
	if err := ds.Close(); !errors.Is(err, bad) {
		t.Errorf("Close: %v, want the failing device's error", err)
	}
	if strings.Join(closed, "") != "cba" {
		t.Errorf("closed %v, want every device, the last first", closed)
	}
}

func TestDevicesErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"", "--gpus"},
		{" ", "one device per tower"},
		{"cpu,,cpu", `"" is neither cpu nor a CUDA ordinal`},
		{"gpu0", `"gpu0" is neither cpu nor a CUDA ordinal`},
		{"-1", "neither cpu nor a CUDA ordinal"},
	} {
		if ds, err := Devices(tc.spec, DeviceOptions{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			ds.Close()
			t.Errorf("Devices(%q): %v, want an error saying %q", tc.spec, err, tc.want)
		}
	}
	if _, err := Devices("cpu", DeviceOptions{Threads: -1}); err == nil || !strings.Contains(err.Error(), "--threads") {
		t.Errorf("--threads -1: %v", err)
	}
}

// A one-tower net takes the first device of a pair, and says so; a
// two-tower net takes both.
func TestForNet(t *testing.T) {
	one, _ := model.Build("alexnet-small-1gpu", model.Options{Channels: 1, Classes: 10})
	two, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if spec, note := ForNet(one, "cpu,0"); spec != "cpu" || !strings.Contains(note, "first device") {
		t.Errorf("one tower on cpu,0: %q, %q", spec, note)
	}
	if spec, note := ForNet(two, "0,1"); spec != "0,1" || note != "" {
		t.Errorf("two towers on 0,1: %q, %q", spec, note)
	}
	if spec, note := ForNet(one, "cpu"); spec != "cpu" || note != "" {
		t.Errorf("one tower on cpu: %q, %q", spec, note)
	}
	if spec, note := ForNet(two, "0,1,2,3"); spec != "0,1" || !strings.Contains(note, "first 2 devices") {
		t.Errorf("two towers on 0,1,2,3: %q, %q", spec, note)
	}
	if spec, note := ForNet(two, "cpu"); spec != "cpu" || note != "" {
		t.Errorf("two towers on cpu: %q, %q", spec, note)
	}
}

// --gpus with 2·R entries is R replicas of a two-tower net, pairs in
// order; R entries are R replicas of a one-tower net; a two-tower net on
// an odd number of devices (but one) is refused, naming --gpus.
func TestReplicaCount(t *testing.T) {
	one, _ := model.Build("alexnet-small-1gpu", model.Options{Channels: 1, Classes: 10})
	two, _ := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	for _, tc := range []struct {
		net  *model.Net
		spec string
		want int
	}{
		{two, "cpu", 1}, {two, "cpu,cpu", 1}, {two, "cpu,cpu,cpu,cpu", 2}, {two, "0,1,2,3,4,5,6,7", 4}, {two, "0,0,0,0", 2},
		{one, "cpu", 1}, {one, "cpu,cpu", 2}, {one, "0,1,2", 3},
	} {
		if got, err := ReplicaCount(tc.net, tc.spec); got != tc.want || err != nil {
			t.Errorf("%s on %s: %d replicas, %v; want %d", tc.net.Name, tc.spec, got, err, tc.want)
		}
	}
	if _, err := ReplicaCount(two, "cpu,cpu,cpu"); err == nil || !strings.Contains(err.Error(), "--gpus cpu,cpu,cpu: 3 devices for alexnet-small's 2 towers") {
		t.Errorf("two towers on three devices: %v", err)
	}
	ds := DeviceList{closeCounter{name: "a"}, closeCounter{name: "b"}, closeCounter{name: "c"}, closeCounter{name: "d"}}
	if s := ds.Split(2); len(s) != 2 || s[0][1] != ds[1] || s[1][0] != ds[2] || len(s[1]) != 2 {
		t.Errorf("four devices split in 2: %v", s)
	}
}

// Without --gpus, a one-tower net runs as one replica on the first device
// of the pair a two-tower net would get, and the line says so.
func TestAutoGPUsFor(t *testing.T) {
	pair, _ := AutoGPUs()
	first, _, _ := strings.Cut(pair, ",")
	if spec, why := AutoGPUsFor("alexnet-small-1gpu"); spec != first || !strings.Contains(why, "one tower") {
		t.Errorf("alexnet-small-1gpu: %q, %q; want %q", spec, why, first)
	}
	if spec, _ := AutoGPUsFor("alexnet-small"); spec != pair {
		t.Errorf("alexnet-small: %q, want %q", spec, pair)
	}
}
