package train

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress reports an epoch's steps: on a terminal, one line redrawn in
// place with a bar, images/s, loss and ETA; elsewhere (CI, docker logs), a
// plain line every tenth of the epoch or every 30 seconds.
type progress struct {
	w        io.Writer
	terminal bool

	epoch, epochs, steps, first int
	began, last                 time.Time
	rate                        float64 // images/s, smoothed
	printed                     int
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *progress) start(epoch, epochs, steps, first int) {
	p.epoch, p.epochs, p.steps, p.first = epoch, epochs, steps, first
	p.began, p.last, p.rate, p.printed = time.Now(), time.Time{}, 0, first
}

func (p *progress) step(done int, loss, err, rate float64) {
	if p.rate == 0 {
		p.rate = rate
	} else {
		p.rate = 0.9*p.rate + 0.1*rate
	}
	now := time.Now()
	el := now.Sub(p.began)
	eta := time.Duration(float64(el) / float64(done-p.first) * float64(p.steps-done)).Round(time.Second)
	if p.terminal {
		if now.Sub(p.last) < 200*time.Millisecond && done != p.steps {
			return
		}
		const width = 24
		fill := width * done / p.steps
		bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
		fmt.Fprintf(p.w, "\repoch %d/%d [%s] %d/%d loss %.4f err %.2f%% %.0f img/s ETA %v  ", p.epoch, p.epochs, bar, done, p.steps, loss, 100*err, p.rate, eta)
		p.last = now
		return
	}
	every := max(1, p.steps/10)
	if done == p.steps || done/every > p.printed/every || now.Sub(p.last) >= 30*time.Second {
		fmt.Fprintf(p.w, "epoch %d/%d step %d/%d: loss %.4f err %.2f%% %.0f img/s ETA %v\n", p.epoch, p.epochs, done, p.steps, loss, 100*err, p.rate, eta)
		p.last, p.printed = now, done
	}
}

// done ends the epoch's line on a terminal.
func (p *progress) done() {
	if p.terminal {
		fmt.Fprintln(p.w)
	}
}
