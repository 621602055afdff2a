package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A test process is one run. What it makes that outlives a single test
// (images, its directory under $TMPDIR) carries the run's ID, so that Main
// removes exactly that after a successful run and nothing of another run's:
// several runs may share one Engine and one /tmp.
var runID = strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().Unix(), 36)

// RunLabelKey is the label every container and image of this run carries,
// with RunID as its value.
const RunLabelKey = "dockscope.test.run"

// RunID identifies this test process's run.
func RunID() string { return runID }

// RunLabel is RunLabelKey=RunID, for --label and --filter label=.
func RunLabel() string { return RunLabelKey + "=" + runID }

// KeepEnv, set to 1, keeps what a successful run made (images, RunDir with
// the profiles some tests take), as a failed run always does.
const KeepEnv = "DOCKSCOPE_TEST_KEEP"

var (
	madeMu     sync.Mutex
	madeImages []string
)

// RunImage returns an image name of this run: base with "-" and RunID added
// to its tag ("dockscope:cgroupns-test" becomes
// "dockscope:cgroupns-test-<run>"), and records it; Main removes it after a
// successful run. For images the test builds itself (scripts/build-image.sh).
func RunImage(base string) string {
	name := base + "-" + runID
	if !strings.Contains(base[strings.LastIndexByte(base, '/')+1:], ":") {
		name = base + ":" + runID
	}
	madeMu.Lock()
	defer madeMu.Unlock()
	madeImages = append(madeImages, name)
	return name
}

// removeImages removes images by name (docker image rm, never forced: an
// image still used by a container stays, and is reported); one already gone
// is fine.
func removeImages(names []string) error {
	var errs []string
	for _, n := range names {
		if _, err := TryDocker("image", "rm", n); err != nil && !strings.Contains(err.Error(), "No such image") &&
			!strings.Contains(strings.ToLower(err.Error()), "image not known") {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("removing images: %s", strings.Join(errs, "; "))
	}
	return nil
}

// leftovers lists what of the run labelled runLabel is still on the Engine:
// its containers, and which of images still exist.
func leftovers(runLabel string, images []string) ([]string, error) {
	var left []string
	out, err := TryDocker("ps", "-a", "--filter", "label="+runLabel, "--format", "container {{.Names}} ({{.Image}}, {{.Status}})")
	if err != nil {
		return nil, err
	}
	if out != "" {
		left = append(left, strings.Split(out, "\n")...)
	}
	for _, n := range images {
		if _, err := TryDocker("image", "inspect", "--format", "{{.Id}}", n); err == nil {
			left = append(left, "image "+n)
		}
	}
	out, err = TryDocker("images", "--filter", "label="+runLabel, "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !contains(left, "image "+strings.Fields(l)[0]) {
			left = append(left, "image "+l)
		}
	}
	return left, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// cleanUpRun removes what this run made, after a successful run: its images,
// its directory; then fails if anything with its label is left on the Engine
// (a container some test did not remove).
func cleanUpRun() error {
	madeMu.Lock()
	images := append([]string(nil), madeImages...)
	madeMu.Unlock()
	imageMu.Lock()
	for name, err := range imageDone {
		if err == nil {
			images = append(images, name)
		}
	}
	imageMu.Unlock()
	rmErr := removeImages(images)
	removeRunDir()
	left, err := leftovers(RunLabel(), images)
	switch {
	case err != nil:
		return fmt.Errorf("listing what the run left on the %s: %w", EngineDescription(), err)
	case len(left) > 0:
		return fmt.Errorf("the run left on the %s:\n  %s", EngineDescription(), strings.Join(left, "\n  "))
	}
	return rmErr
}

// keptMessage says what a failed (or DOCKSCOPE_TEST_KEEP=1) run kept and how
// to remove it.
func keptMessage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kept for debugging: ")
	if d := existingRunDir(); d != "" {
		fmt.Fprintf(&b, "%s (test output, profiles); ", d)
	}
	docker := os.Getenv(DockerCLIEnv)
	if docker == "" {
		docker = "docker"
	}
	if !IsDefaultEngine() {
		docker += " -H " + DockerHost()
	}
	fmt.Fprintf(&b, "images and containers labelled %s on the %s; remove them with\n"+
		"  %s ps -aq --filter label=%[1]s | xargs -r %[3]s rm -f -v\n"+
		"  %[3]s images --filter label=%[1]s --format '{{.Repository}}:{{.Tag}}' | xargs -r %[3]s image rm", RunLabel(), EngineDescription(), docker)
	if d := existingRunDir(); d != "" {
		fmt.Fprintf(&b, "\n  rm -r %s", d)
	}
	return b.String()
}

// noted holds the tests that will say, when they fail, which Engine they ran on.
var noted sync.Map

// noteEngineOnFailure makes a failed test end with the Engine it ran on
// (several Engines run the same tests in CI), once per test.
func noteEngineOnFailure(t testing.TB) {
	if _, loaded := noted.LoadOrStore(t, true); loaded {
		return
	}
	t.Cleanup(func() {
		noted.Delete(t)
		if t.Failed() {
			t.Logf("harness: this test ran against the %s", EngineDescription())
		}
	})
}
