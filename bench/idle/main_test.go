package main

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/dockscope/dockscope/collector/logparse"
)

func TestParseOptions(t *testing.T) {
	o, err := parseOptions(nil)
	if err != nil || o.containers != 1000 || !slices.Equal(o.also, []int{100}) || o.samples != 3 {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
	o, err = parseOptions([]string{"-containers", "500", "-also", "10, 50", "-settle", "1s"})
	if err != nil || o.containers != 500 || !slices.Equal(o.also, []int{10, 50}) || o.settle != time.Second {
		t.Fatalf("parsed %+v, %v", o, err)
	}
	if o, err := parseOptions([]string{"-also", ""}); err != nil || len(o.also) != 0 {
		t.Errorf("-also empty: %+v, %v", o, err)
	}
	for _, args := range [][]string{{"-containers", "0"}, {"-also", "1000"}, {"-also", "x"}, {"-samples", "0"}, {"7"}} {
		if _, err := parseOptions(args); err == nil {
			t.Errorf("parseOptions(%q) accepted", args)
		}
	}
}

func TestParseMemStats(t *testing.T) {
	text := "heap profile: 1: 2 [3: 4] @ heap/1048576\n1: 2 [3: 4] @ 0x1\n\n# runtime.MemStats\n# Alloc = 3473408\n" +
		"# HeapInuse = 5242880\n# Stack = 655360 / 655360\n# NumGC = 7\n"
	ms, err := parseMemStats(text)
	if err != nil {
		t.Fatal(err)
	}
	if ms["HeapInuse"] != 5242880 || ms["Stack"] != 655360 || ms["NumGC"] != 7 {
		t.Errorf("parsed %v", ms)
	}
	if _, err := parseMemStats("heap profile: 0: 0 [0: 0] @ heap/1048576\n"); err == nil {
		t.Error("a profile without MemStats accepted")
	}
}

// The fake engine answers the Docker client as the agent uses it: a
// negotiated ping, the list, an inspect, and a follow stream that brings
// one line and then stays open.
func TestEngineServesTheDockerClient(t *testing.T) {
	e, err := startEngine(filepath.Join(t.TempDir(), "d.sock"), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	c, err := client.New(client.WithHost("unix://"+e.sock), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := c.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil || len(list.Items) != 3 {
		t.Fatalf("list: %+v, %v", list, err)
	}
	id := list.Items[1].ID
	insp, err := c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil || insp.Container.State == nil || !insp.Container.State.Running || insp.Container.Name != "/"+name(1) {
		t.Fatalf("inspect: %+v, %v", insp.Container, err)
	}
	if _, err := c.ContainerInspect(ctx, "nope", client.ContainerInspectOptions{}); err == nil {
		t.Error("inspect of an unknown container succeeded")
	}
	logs, err := c.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, Follow: true, Timestamps: true})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	r := logparse.NewReader(logs, false, 0)
	if l, err := r.Next(); err != nil || len(l.Body) == 0 {
		t.Fatalf("first line %q, %v", l.Body, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Next()
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the follow stream ended: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if n := e.following.Load(); n != 1 {
		t.Errorf("%d follow streams counted, want 1", n)
	}
	logs.Close()
	<-done // whatever Next says of a closed stream, it returns
	if u := e.unknownPaths(); len(u) > 0 {
		t.Errorf("unanswered paths: %v", u)
	}
}
