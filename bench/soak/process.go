package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/dockscope/dockscope/bench/internal/benchenv"
)

// process is a child (the agent, the collector) in its own process group,
// so that a Ctrl-C in the terminal reaches the soak only and the soak stops
// its children itself, in order.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done
}

// startProcess starts argv with stdout and stderr appended to logPath (a
// restarted collector keeps one log).
func startProcess(name, logPath string, argv ...string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating the log of %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	// Owned by the process: it ends when the process does.
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited, and how.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); the end of its log %s:\n%s", p.name, p.waitErr, p.logPath, benchenv.Tail(p.logPath, 20))
	default:
		return nil
	}
}

// stop sends SIGTERM and waits up to grace, then kills. It returns the
// process's exit error (nil for a clean exit) or that it had to be killed.
// Calling it again is harmless.
func (p *process) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.waitErr
	default:
	}
	if err := syscall.Kill(-p.pid(), syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sending SIGTERM to %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s did not exit within %s of SIGTERM and was killed", p.name, grace)
}
