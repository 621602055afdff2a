package prometheus

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// ProbeReady asks the agent serving on listenAddress whether it is ready
// (GET /readyz) and returns nil only on 200. It is the agent image's health
// check: the image is FROM scratch, with no curl or wget to do it. With
// useTLS (web.config_file set) it speaks https and does not verify the
// certificate: it talks to its own process over loopback.
func ProbeReady(ctx context.Context, listenAddress string, useTLS bool) error {
	host, port, err := net.SplitHostPort(listenAddress)
	if err != nil {
		return fmt.Errorf("probing readiness: listen address %q: %w", listenAddress, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	scheme := "http"
	transport := &http.Transport{DisableKeepAlives: true}
	if useTLS {
		scheme = "https"
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback to itself
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url := scheme + "://" + net.JoinHostPort(host, port) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probing readiness at %s: %w", url, err)
	}
	res, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return fmt.Errorf("probing readiness at %s: %w", url, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready (%s from %s): %s", res.Status, url, strings.TrimSpace(string(body)))
	}
	return nil
}
