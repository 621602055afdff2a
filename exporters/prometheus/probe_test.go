package prometheus

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProbeReady(t *testing.T) {
	ready := false
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if !ready {
			http.Error(w, "docker: connection refused", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	srv.Start()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	// ":port" (every interface) is probed on loopback.
	err := ProbeReady(context.Background(), ":"+port, false)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("probe of a not-ready agent: %v", err)
	}
	ready = true
	if err := ProbeReady(context.Background(), ":"+port, false); err != nil {
		t.Fatalf("probe of a ready agent: %v", err)
	}
	if err := ProbeReady(context.Background(), "nonsense", false); err == nil {
		t.Fatal("a bad listen address probed fine")
	}

	tlsSrv := httptest.NewTLSServer(srv.Config.Handler)
	defer tlsSrv.Close()
	if err := ProbeReady(context.Background(), tlsSrv.Listener.Addr().String(), true); err != nil {
		t.Fatalf("probe over TLS: %v", err)
	}
}
