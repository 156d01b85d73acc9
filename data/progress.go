package data

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// prepProgress reports Prepare's progress: on a terminal one line redrawn
// in place with a bar, images/s and ETA; elsewhere a plain line every tenth
// or every 30 seconds.
type prepProgress struct {
	mu          sync.Mutex
	w           io.Writer
	terminal    bool
	total, done int
	began, last time.Time
	printed     int
}

func newPrepProgress(w io.Writer, total int) *prepProgress {
	p := &prepProgress{w: w, total: total, began: time.Now()}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	if !p.terminal {
		p.last = p.began // the first plain line after a tenth or 30 s
	}
	return p
}

func (p *prepProgress) add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	now := time.Now()
	el := now.Sub(p.began)
	rate := float64(p.done) / el.Seconds()
	eta := time.Duration(float64(el) / float64(p.done) * float64(p.total-p.done)).Round(time.Second)
	if p.terminal {
		if now.Sub(p.last) < 200*time.Millisecond && p.done != p.total {
			return
		}
		const width = 24
		fill := width * p.done / max(p.total, 1)
		fmt.Fprintf(p.w, "\rprepare [%s%s] %d/%d images %.0f img/s ETA %v  ", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), p.done, p.total, rate, eta)
		p.last = now
		return
	}
	every := max(1, p.total/10)
	if p.done == p.total || p.done/every > p.printed/every || now.Sub(p.last) >= 30*time.Second {
		fmt.Fprintf(p.w, "prepare: %d/%d images %.0f img/s ETA %v\n", p.done, p.total, rate, eta)
		p.last, p.printed = now, p.done
	}
}

// finish ends the line on a terminal.
func (p *prepProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal && p.done > 0 {
		fmt.Fprintln(p.w)
	}
}
