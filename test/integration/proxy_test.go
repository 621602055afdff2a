//go:build integration

package integration

import (
	"io"
	"net"
	"os"
	"sync"
	"testing"
)

// socketProxy forwards a unix socket to another, so a test can cut the
// agent off from dockerd and restore it without touching the daemon.
type socketProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	closed bool // set by close, under mu: no connection is forwarded after it
	wg     sync.WaitGroup
	once   sync.Once
}

func startSocketProxy(t *testing.T, path, target string) *socketProxy {
	t.Helper()
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listening on %s: %v", path, err)
	}
	p := &socketProxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.closed {
				// close ran between Accept and here: it did not see these.
				p.mu.Unlock()
				c.Close()
				up.Close()
				return
			}
			p.conns = append(p.conns, c, up)
			p.wg.Add(2)
			p.mu.Unlock()
			go func() { defer p.wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer p.wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(p.close)
	return p
}

// close stops accepting, cuts every forwarded connection and removes the
// socket, as a daemon that died would.
func (p *socketProxy) close() {
	p.once.Do(func() {
		p.ln.Close()
		p.mu.Lock()
		p.closed = true
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
}
