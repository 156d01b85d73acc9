package mpi

import (
	"fmt"
	"strings"
	"time"
	"unsafe"
)

// Heartbeat message: [flags, n, entered[0..n)], int64s.
const (
	hbTag     = 1
	hbMax     = 64 // int64s in a heartbeat: at most hbMax-2 communicators
	hbBye     = 1  // flags: the last heartbeat, sent by Close
	staleBeat = 3  // heartbeats missed before a rank counts as not answering
)

// peer is what this rank knows of another through the heartbeat.
type peer struct {
	sendReq, recvReq uintptr
	sendBuf, recvBuf [hbMax]int64
	lastHeard        time.Time
	entered          []int64 // per comm, as last heard
	bye, byeSent     bool
}

// post posts the heartbeat receive from rank r.
func (w *World) post(r int) {
	p := w.peers[r]
	w.l.irecv(unsafe.Pointer(&p.recvBuf[0]), hbMax, w.l.tInt64, int32(r), hbTag, w.hbComm, &p.recvReq)
}

// tested reports whether req completed (clearing it) or is empty.
func (w *World) tested(req *uintptr) bool {
	if *req == 0 {
		return true
	}
	var flag int32
	if w.l.test(req, &flag, nil) != success || flag != 0 {
		*req = 0
		return true
	}
	return false
}

// receive takes in the heartbeats that arrived.
func (w *World) receive(now time.Time) {
	for r, p := range w.peers {
		if p == nil || p.recvReq == 0 || !w.tested(&p.recvReq) {
			continue
		}
		p.lastHeard = now
		n := int(min(max(p.recvBuf[1], 0), hbMax-2))
		p.entered = append(p.entered[:0], p.recvBuf[2:2+n]...)
		if p.recvBuf[0]&hbBye != 0 {
			p.bye = true
		} else {
			w.post(r)
		}
	}
}

// beat takes in the heartbeats that arrived and sends this rank's to every
// rank whose previous one has gone.
func (w *World) beat(now time.Time) {
	w.receive(now)
	for r, p := range w.peers {
		if p == nil || p.byeSent || !w.tested(&p.sendReq) {
			continue
		}
		w.send(r, 0)
	}
}

// send sends this rank's heartbeat to rank r.
func (w *World) send(r int, flags int64) {
	p := w.peers[r]
	p.sendBuf[0], p.sendBuf[1] = flags, int64(len(w.entered))
	copy(p.sendBuf[2:], w.entered)
	w.l.isend(unsafe.Pointer(&p.sendBuf[0]), int32(2+len(w.entered)), w.l.tInt64, int32(r), hbTag, w.hbComm, &p.sendReq)
}

// RankError is a collective that did not complete in time, with the ranks
// the heartbeat blames.
type RankError struct {
	// Ranks are the ranks missing from the collective; empty when every
	// rank answered and reached it (the network lost it).
	Ranks []int
	// Answering is false when those ranks stopped answering (died or
	// stopped), true when they answer but did not reach the collective.
	Answering bool
	Timeout   time.Duration
	msg       string
}

func (e *RankError) Error() string { return e.msg }

// blame names the ranks that keep o from completing: those whose heartbeat
// went silent, else those whose heartbeat says they have not entered it.
func (w *World) blame(o *op, now time.Time) *RankError {
	var closed, silent, behind []int
	var lastHeard time.Duration
	for r, p := range w.peers {
		if p == nil {
			continue
		}
		age := now.Sub(p.lastHeard)
		switch {
		case p.bye:
			closed = append(closed, r)
		case age > staleBeat*w.interval:
			silent = append(silent, r)
			lastHeard = max(lastHeard, age)
		case o.comm >= len(p.entered) || p.entered[o.comm] < o.seq:
			behind = append(behind, r)
		}
	}
	e := &RankError{Timeout: w.timeout}
	switch {
	case len(closed) > 0:
		e.Ranks, e.Answering = closed, true
		e.msg = fmt.Sprintf("mpi: %s closed MPI while rank %d waited in the %s: the ranks ran different collectives (a bug), or %s gave up first",
			w.ranks(closed), w.rank, o.what, pick(len(closed), "it", "they"))
	case len(silent) > 0:
		e.Ranks = silent
		e.msg = fmt.Sprintf("mpi: %s did not answer within %v (%s): %s (rank %d waited in the %s; last heard %v ago)",
			w.ranks(silent), w.timeout, w.flag, pick(len(silent), "it died or is stopped", "they died or are stopped"), w.rank, o.what, lastHeard.Round(time.Millisecond))
	case len(behind) > 0:
		e.Ranks, e.Answering = behind, true
		e.msg = fmt.Sprintf("mpi: %s answer%s but did not reach the %s within %v (%s): %s (rank %d waited)",
			w.ranks(behind), pick(len(behind), "s", ""), o.what, w.timeout, w.flag, pick(len(behind), "it hangs or is slower than the timeout", "they hang or are slower than the timeout"), w.rank)
	default:
		e.msg = fmt.Sprintf("mpi: the %s did not complete within %v (%s) though every rank answers and reached it (rank %d waited)", o.what, w.timeout, w.flag, w.rank)
	}
	return e
}

// ranks names ranks for a message: "rank 1 (node2, pid 4242)", "ranks 1, 3 (…)".
func (w *World) ranks(rs []int) string {
	var parts []string
	for _, r := range rs {
		s := fmt.Sprint(r)
		if r < len(w.hosts) && w.hosts[r] != "" {
			s += fmt.Sprintf(" (%s, pid %d)", w.hosts[r], w.pids[r])
		}
		parts = append(parts, s)
	}
	return pick(len(rs), "rank ", "ranks ") + strings.Join(parts, ", ")
}

func pick(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// farewell sends every rank the last heartbeat and waits for theirs, so
// that no message is in flight when MPI ends.
func (w *World) farewell() error {
	deadline := time.Now().Add(w.timeout)
	for sleep := pollMin; ; sleep = min(2*sleep, pollMax) {
		now := time.Now()
		w.receive(now)
		waiting := false
		var missing []int
		for r, p := range w.peers {
			if p == nil {
				continue
			}
			if w.tested(&p.sendReq) && !p.byeSent {
				w.send(r, hbBye)
				p.byeSent = true
			}
			if !p.bye {
				missing = append(missing, r)
			}
			if p.sendReq != 0 || !p.bye {
				waiting = true
			}
		}
		if !waiting {
			return nil
		}
		if now.After(deadline) {
			if len(missing) == 0 { // only this rank's last heartbeats are in flight
				return nil
			}
			return &RankError{Ranks: missing, Timeout: w.timeout, msg: fmt.Sprintf("mpi: %s did not close within %v (%s): it died, is stopped or did not finish (rank %d waited)",
				w.ranks(missing), w.timeout, w.flag, w.rank)}
		}
		time.Sleep(sleep)
	}
}
