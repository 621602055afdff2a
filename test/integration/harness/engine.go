package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Engine is a minimal client of the Docker Engine API on its unix socket,
// for tests that create and remove containers by the thousand: a docker
// CLI process per container would cost more than the containers.
type Engine struct {
	hc *http.Client
}

// NewEngine talks to the daemon at DockerHost.
func NewEngine() *Engine {
	sock := DockerSocketPath()
	return &Engine{hc: &http.Client{
		Timeout: DockerTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
			MaxIdleConnsPerHost: 16,
		},
	}}
}

// ContainerSpec is what Run creates: an image, its command and labels.
type ContainerSpec struct {
	Name   string
	Image  string
	Cmd    []string
	Labels map[string]string
	// NoNetwork runs it with --network none: no veth pair to set up and
	// tear down, which is most of a short container's cost to the daemon.
	NoNetwork bool
}

// Run creates and starts a container labelled with TestLabel and RunLabel and returns
// its id.
func (e *Engine) Run(ctx context.Context, s ContainerSpec) (string, error) {
	labels := map[string]string{"dockscope.test": "1", RunLabelKey: runID}
	for k, v := range s.Labels {
		labels[k] = v
	}
	create := map[string]any{"Image": s.Image, "Cmd": s.Cmd, "Labels": labels}
	if s.NoNetwork {
		create["HostConfig"] = map[string]any{"NetworkMode": "none"}
	}
	body, _ := json.Marshal(create)
	var created struct{ ID string }
	if err := e.do(ctx, http.MethodPost, "/containers/create?name="+url.QueryEscape(s.Name), body, &created); err != nil {
		return "", fmt.Errorf("creating %s: %w", s.Name, err)
	}
	if err := e.do(ctx, http.MethodPost, "/containers/"+created.ID+"/start", nil, nil); err != nil {
		return created.ID, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	return created.ID, nil
}

// Remove removes a container, running or not.
func (e *Engine) Remove(ctx context.Context, id string) error {
	if err := e.do(ctx, http.MethodDelete, "/containers/"+id+"?force=1", nil, nil); err != nil {
		return fmt.Errorf("removing %s: %w", id, err)
	}
	return nil
}

// Close drops the idle connections to the daemon.
func (e *Engine) Close() { e.hc.CloseIdleConnections() }

func (e *Engine) do(ctx context.Context, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://docker"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}
