package master

import (
	"net/netip"
	"sync"
	"time"
)

// bucket is a token bucket: burst tokens, refilled at one per every.
type bucket struct {
	tokens float64
	at     time.Time
}

// take spends one token if there is one.
func (b *bucket) take(now time.Time, burst int, every time.Duration) bool {
	if b.at.IsZero() {
		b.tokens, b.at = float64(burst), now
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(float64(burst), b.tokens+float64(d)/float64(every))
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// peerLogs bounds the log lines any one source address can cause. Every
// line a peer triggers (a refused handshake, a malformed frame, a closed
// connection) is worth seeing once, but a peer that reconnects in a loop,
// or sends a stream of bad frames, must not be able to write the journal
// at its own rate: per address, peerLogBurst lines, then one per
// peerLogEvery, and the next line that gets through says how many were
// suppressed.
type peerLogs struct {
	mu sync.Mutex
	m  map[netip.Addr]*peerLog
}

type peerLog struct {
	bucket
	suppressed int
}

const (
	peerLogBurst = 20
	peerLogEvery = 6 * time.Second // 10 a minute once the burst is spent
	// peerLogMax bounds the map: a scan from many addresses must not
	// grow it without end. When full, addresses whose bucket is full
	// again (quiet for burst×every) are forgotten first.
	peerLogMax = 4096
)

// allow says whether a line about addr may be logged now, and how many
// were suppressed since the last one that was.
func (p *peerLogs) allow(addr netip.Addr, now time.Time) (ok bool, suppressed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[netip.Addr]*peerLog{}
	}
	l := p.m[addr]
	if l == nil {
		if len(p.m) >= peerLogMax {
			p.prune(now)
		}
		l = &peerLog{}
		p.m[addr] = l
	}
	if !l.take(now, peerLogBurst, peerLogEvery) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.suppressed = 0
	return true, n
}

func (p *peerLogs) prune(now time.Time) {
	quiet := time.Duration(peerLogBurst) * peerLogEvery
	for a, l := range p.m {
		if now.Sub(l.at) >= quiet && l.suppressed == 0 {
			delete(p.m, a)
		}
	}
	if len(p.m) >= peerLogMax {
		// Everyone is noisy: start over rather than grow.
		clear(p.m)
	}
}
