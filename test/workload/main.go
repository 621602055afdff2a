// Command workload is the only process of the containers that dockscope's
// integration tests start. It is built statically (CGO_ENABLED=0) and put in
// a FROM scratch image, so no image ever has to be pulled.
//
// Usage:
//
//	workload sleep                          idle until SIGTERM/SIGINT (then exit 0)
//	workload burn [-cores N]                busy-loop on N goroutines (default 1)
//	workload alloc -mb N                    allocate and touch N MiB, print "allocated N MiB", idle
//	workload exit -code N [-after D]        exit with code N after duration D (default 0s)
//	workload log [-lines N] [-stderr-every K] [-line-bytes B] [-rate R] [-binary-every K] [-no-final-newline] [-then exit|sleep]
//	                                        print lines "line <n> <padding>" (n from 1) to stdout,
//	                                        every K-th to stderr; each line is B bytes long without
//	                                        its newline (never shorter than "line <n>"); R lines/s
//	                                        (0 = as fast as possible); then exit 0 or idle
//	workload probe -file PATH               exit 0 if PATH exists, 1 otherwise (for HEALTHCHECK)
//	workload touch PATH                     create PATH (and its parent directories)
//	workload rm PATH                        remove PATH (a missing PATH is not an error)
//	workload fill -file PATH -mb N          write N MiB of data to PATH (parents created)
//
// In every mode SIGTERM and SIGINT make the process exit 0 at once: as PID 1
// of a container it would otherwise ignore them and `docker stop` would wait
// for its timeout.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

const usage = `usage: workload <command> [flags]
commands:
  sleep
  burn  [-cores N]
  alloc -mb N [-after D]
  exit  -code N [-after D]
  log   [-lines N] [-stderr-every K] [-line-bytes B] [-rate R] [-then exit|sleep]
  probe -file PATH
  touch PATH
  rm    PATH
  fill  -file PATH -mb N
`

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		os.Exit(0)
	}()
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	fl := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fl.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	switch cmd {
	case "sleep":
		if fl.Parse(args) != nil {
			return 2
		}
		idle()
	case "burn":
		cores := fl.Int("cores", 1, "number of busy goroutines")
		if fl.Parse(args) != nil {
			return 2
		}
		burn(*cores)
	case "alloc":
		mb := fl.Int("mb", 0, "MiB to allocate and touch")
		// A container OOM-killed in its first moments may be reported with
		// no oom event and OOMKilled false (containerd 2.1 with Engine 28.5
		// on cgroup v1, about one run in four: containerd/containerd#8180).
		after := fl.Duration("after", 0, "wait this long before allocating")
		if fl.Parse(args) != nil {
			return 2
		}
		time.Sleep(*after)
		alloc(*mb)
	case "exit":
		code := fl.Int("code", 0, "exit code")
		after := fl.Duration("after", 0, "wait this long before exiting")
		if fl.Parse(args) != nil {
			return 2
		}
		time.Sleep(*after)
		return *code
	case "log":
		var o logOpts
		fl.IntVar(&o.lines, "lines", 10, "number of lines")
		fl.IntVar(&o.stderrEvery, "stderr-every", 0, "write every K-th line to stderr (0: none)")
		fl.IntVar(&o.lineBytes, "line-bytes", 0, "pad each line to this many bytes, newline excluded")
		fl.Float64Var(&o.rate, "rate", 0, "lines per second (0: as fast as possible)")
		fl.BoolVar(&o.noFinalNewline, "no-final-newline", false, "leave the newline off the last line")
		fl.IntVar(&o.binaryEvery, "binary-every", 0, "end every K-th line with the invalid UTF-8 bytes FF FE 00 1B (0: none)")
		then := fl.String("then", "sleep", "after the last line: exit (code 0) or sleep")
		if fl.Parse(args) != nil {
			return 2
		}
		if *then != "exit" && *then != "sleep" {
			fmt.Fprintf(os.Stderr, "workload log: -then must be exit or sleep, not %q\n", *then)
			return 2
		}
		if err := logLines(os.Stdout, os.Stderr, o); err != nil {
			fmt.Fprintln(os.Stderr, "workload log:", err)
			return 1
		}
		if *then == "sleep" {
			idle()
		}
	case "probe":
		file := fl.String("file", "", "path whose existence means healthy")
		if fl.Parse(args) != nil || *file == "" {
			fmt.Fprint(os.Stderr, usage)
			return 2
		}
		if _, err := os.Stat(*file); err != nil {
			fmt.Println("unhealthy:", err)
			return 1
		}
		fmt.Println("healthy")
	case "fill":
		file := fl.String("file", "", "file to write")
		mb := fl.Int("mb", 0, "MiB to write")
		if err := fl.Parse(args); err != nil || *file == "" || *mb < 0 {
			return 2
		}
		if err := fill(*file, *mb); err != nil {
			fmt.Fprintln(os.Stderr, "workload:", err)
			return 1
		}
	case "touch", "rm":
		if len(args) != 1 {
			fmt.Fprint(os.Stderr, usage)
			return 2
		}
		var err error
		if cmd == "touch" {
			err = touch(args[0])
		} else if err = os.Remove(args[0]); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "workload:", err)
			return 1
		}
	default:
		fmt.Fprintf(os.Stderr, "workload: unknown command %q\n%s", cmd, usage)
		return 2
	}
	return 0
}

// fill writes mb MiB of non-zero data (no holes: the blocks are allocated)
// and syncs it, so that disk usage reflects it at once.
func fill(path string, mb int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i%251 + 1)
	}
	for range mb {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// idle blocks forever; the signal handler in main ends the process.
func idle() { select {} }

func burn(cores int) {
	for i := 0; i < cores; i++ {
		go func() {
			x := uint64(i)
			for {
				x = x*6364136223846793005 + 1442695040888963407
			}
		}()
	}
	idle()
}

func alloc(mb int) {
	const page = 4096
	chunks := make([][]byte, 0, mb)
	for i := 0; i < mb; i++ {
		c := make([]byte, 1<<20)
		for j := 0; j < len(c); j += page {
			c[j] = 1
		}
		chunks = append(chunks, c)
	}
	fmt.Printf("allocated %d MiB\n", mb)
	idle()
	runtime.KeepAlive(chunks)
}

type logOpts struct {
	lines          int
	stderrEvery    int
	lineBytes      int
	rate           float64
	binaryEvery    int
	noFinalNewline bool
}

// logLines writes the numbered lines. Each stream is buffered, and a buffer is
// flushed before the other stream is written to, so the order of writes seen by
// dockerd is the line order. A line is always written by one Write call unless
// it exceeds the buffer.
func logLines(stdout, stderr io.Writer, o logOpts) error {
	out := bufio.NewWriterSize(stdout, 64<<10)
	errw := bufio.NewWriterSize(stderr, 64<<10)
	var interval time.Duration
	if o.rate > 0 {
		interval = time.Duration(float64(time.Second) / o.rate)
	}
	start := time.Now()
	var line []byte
	var last *bufio.Writer
	for n := 1; n <= o.lines; n++ {
		w := out
		if o.stderrEvery > 0 && n%o.stderrEvery == 0 {
			w = errw
		}
		if last != nil && last != w {
			if err := last.Flush(); err != nil {
				return err
			}
		}
		last = w
		line = strconv.AppendInt(append(line[:0], "line "...), int64(n), 10)
		if pad := o.lineBytes - len(line) - 1; pad > 0 {
			line = append(line, ' ')
			for ; pad > 0; pad-- {
				line = append(line, 'x')
			}
		}
		if o.binaryEvery > 0 && n%o.binaryEvery == 0 {
			line = append(line, 0xff, 0xfe, 0x00, 0x1b)
		}
		if n < o.lines || !o.noFinalNewline {
			line = append(line, '\n')
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
		if interval > 0 {
			if err := w.Flush(); err != nil {
				return err
			}
			time.Sleep(time.Until(start.Add(time.Duration(n) * interval)))
		}
	}
	if err := out.Flush(); err != nil {
		return err
	}
	return errw.Flush()
}

func touch(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}
