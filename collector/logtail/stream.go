package logtail

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/dockscope/dockscope/collector/logparse"
)

// SocketPath returns the unix socket whose log streams the agent reads
// on connections of its own (see unixStream), or "" when the daemon is
// reached another way (tcp, TLS, ssh), where the Docker client's streams
// are used.
func SocketPath(host string) string {
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok || !rawStreams || os.Getenv("DOCKER_CERT_PATH") != "" || os.Getenv("DOCKER_TLS_VERIFY") != "" {
		return ""
	}
	return path
}

// openLogs opens the container's log stream from since ("" for the
// start): GET /containers/{id}/logs?follow=1&stdout=1&stderr=1&timestamps=1,
// without follow=1 when follow is false.
func (t *tailer) openLogs(ctx context.Context, since string, follow bool) (io.ReadCloser, error) {
	m := t.m
	if m.opts.Socket != "" {
		s, err := dialUnixStream(ctx, m.opts.Socket)
		if err != nil {
			return nil, err
		}
		// The response header must come within the timeout; the stream
		// itself may stay silent for as long as the container does.
		timer := time.AfterFunc(m.opts.Timeout, s.interrupt)
		body, err := startLogs(s, *m.apiVer.Load(), t.id, since, follow)
		if !timer.Stop() {
			if err == nil {
				body.Close()
			} else {
				s.Close()
			}
			return nil, fmt.Errorf("reading the logs response header: no answer within %s", m.opts.Timeout)
		}
		if err != nil {
			s.Close()
			return nil, err
		}
		return body, nil
	}
	hctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(m.opts.Timeout, cancel)
	body, err := m.opts.Docker.ContainerLogs(hctx, t.id, client.ContainerLogsOptions{
		ShowStdout: true, ShowStderr: true, Follow: follow, Timestamps: true, Since: since,
	})
	if !timer.Stop() {
		if err == nil {
			body.Close()
		}
		return nil, fmt.Errorf("reading the logs response header: no answer within %s", m.opts.Timeout)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return readCloser{Reader: &coalescingReader{r: body}, Closer: closeFunc(func() error { defer cancel(); return body.Close() })}, nil
}

type closeFunc func() error

func (f closeFunc) Close() error { return f() }

type readCloser struct {
	io.Reader
	io.Closer
}

// startLogs sends the logs request on conn, a fresh connection to the
// daemon, and reads the response header. The returned body closes conn.
func startLogs(conn io.ReadWriteCloser, apiVersion, id, since string, follow bool) (io.ReadCloser, error) {
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}, "timestamps": {"1"}}
	if follow {
		q.Set("follow", "1")
	}
	if since != "" {
		q.Set("since", since)
	}
	path := "/containers/" + url.PathEscape(id) + "/logs"
	if apiVersion != "" {
		path = "/v" + apiVersion + path
	}
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Scheme: "http", Host: client.DummyHost, Path: path, RawQuery: q.Encode()},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"User-Agent": {"dockscope"}},
		Host:       client.DummyHost,
	}
	var b bytes.Buffer
	if err := req.Write(&b); err != nil {
		return nil, fmt.Errorf("writing the logs request: %w", err)
	}
	if _, err := conn.Write(b.Bytes()); err != nil {
		return nil, fmt.Errorf("sending the logs request: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fmt.Errorf("reading the logs response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, responseError(resp)
	}
	if len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked" {
		// What the header read brought of the body is decoded first; the
		// rest is read from conn straight into the caller's buffer.
		pre, _ := br.Peek(br.Buffered())
		return readCloser{Reader: logparse.NewChunkedReader(conn, bytes.Clone(pre)), Closer: conn}, nil
	}
	return readCloser{Reader: resp.Body, Closer: conn}, nil
}

// responseError reads the daemon's error message, as the Docker client
// reports it.
func responseError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(body))
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		msg = strings.TrimSpace(e.Message)
	}
	if msg == "" {
		msg = resp.Status
	}
	return fmt.Errorf("%s: Error response from daemon: %s", resp.Status, msg)
}
