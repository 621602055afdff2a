package main

import (
	"context"
	"os/exec"
	"strings"
	"time"

	"github.com/dockscope/dockscope/internal/procfs"
)

// memBytes is a process's VmRSS and VmHWM in bytes.
func memBytes(pid int) (rss, hwm uint64, err error) {
	rss, hwm, err = procfs.MemKiB(pid)
	return rss << 10, hwm << 10, err
}

// environment describes the host for the report.
type environment struct {
	date, docker, kernel, cpus string
	loadBefore, loadAfter      string
	foreign                    int // running containers not this benchmark's, at the start
	took                       time.Duration
}

func hostInfo(ctx context.Context) environment {
	e := environment{date: time.Now().UTC().Format(time.RFC3339), loadBefore: procfs.LoadAvg()}
	if out, err := docker(ctx, "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"); err == nil {
		e.docker = strings.TrimSpace(out)
	}
	if out, err := exec.CommandContext(ctx, "uname", "-r").Output(); err == nil {
		e.kernel = strings.TrimSpace(string(out))
	}
	if out, err := exec.CommandContext(ctx, "nproc").Output(); err == nil {
		e.cpus = strings.TrimSpace(string(out))
	}
	all, _ := docker(ctx, "ps", "-q")
	own, _ := docker(ctx, "ps", "-q", "--filter", "label="+logsLabel)
	e.foreign = len(strings.Fields(all)) - len(strings.Fields(own))
	return e
}
