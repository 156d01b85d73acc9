package parallel

import (
	"runtime"
	"testing"
	"time"

	"github.com/alexnet-go/trainer/gpu"
	"github.com/alexnet-go/trainer/gpu/cpu"
	"github.com/alexnet-go/trainer/model"
)

// Each worker holds a P beyond the process's own while it lives (their
// returns from native calls would otherwise queue for one), and gives it
// back when the runner closes; GOMAXPROCS set by the user is left alone.
func TestWorkersReserveAP(t *testing.T) {
	if testing.Short() {
		t.Skip("opens a runner")
	}
	t.Setenv("GOMAXPROCS", "") // as unset (the test binary's own may be)
	settled()                  // earlier tests' workers may still be ending
	before := runtime.GOMAXPROCS(0)
	net, err := model.Build("alexnet-small", model.Options{Channels: 1, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	devs := []gpu.Device{cpu.New(cpu.Options{Index: 0, Threads: 1}), cpu.New(cpu.Options{Index: 1, Threads: 1})}
	r, err := New(net, devs, model.Init(net, 1), Options{Batch: 2, Seed: 1, Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	if got := runtime.GOMAXPROCS(0); got != before+2 {
		t.Errorf("GOMAXPROCS with two workers: %d, want %d", got, before+2)
	}
	r.Close()
	settled() // the workers' goroutines end after Close
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS after Close: %d, want %d again", got, before)
	}

	t.Setenv("GOMAXPROCS", "3")
	r, err = New(net, devs, model.Init(net, 1), Options{Batch: 2, Seed: 1, Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS set by the user: changed to %d", got)
	}
}

// settled waits until no worker has reserved or released a P for 50 ms.
func settled() {
	last, since := -1, time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		procs.Lock()
		n := procs.reserved
		procs.Unlock()
		if n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > 50*time.Millisecond {
			return
		}
	}
}
