//go:build integration

package harness

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// The harness's own tests run as a run, too: Main removes what they made.
func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestRunCleanupFindsAndRemovesWhatARunMade builds an image and runs a
// container under a label of the test's own, as a run does with RunLabel,
// and checks that leftovers finds both, that the container's removal and
// removeImages leave nothing (an image already gone is no error), and that
// the image is gone from the Engine.
func TestRunCleanupFindsAndRemovesWhatARunMade(t *testing.T) {
	label := RunLabelKey + "=cleanup-test-" + runID
	image := "dockscope-workload:cleanup-test-" + runID
	bin := BuildStatic(t, "./test/workload")
	if err := buildImage(bin, image, "LABEL "+label); err != nil {
		t.Fatalf("building %s: %v", image, err)
	}
	t.Cleanup(func() { TryDocker("image", "rm", "-f", image) })
	name := "dockscope-cleanup-test-" + runID
	Docker(t, "run", "-d", "--name", name, "--label", label, image, "sleep")
	t.Cleanup(func() { TryDocker("rm", "-f", name) })

	left, err := leftovers(label, []string{image})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 || !slices.ContainsFunc(left, func(s string) bool { return s == "image "+image }) ||
		!slices.ContainsFunc(left, func(s string) bool { return strings.HasPrefix(s, "container "+name+" ") }) {
		t.Fatalf("leftovers = %q, want the container %s and the image %s", left, name, image)
	}
	// An image a container still uses is not removed (never forced), and
	// removeImages says so.
	if err := removeImages([]string{image}); err == nil {
		t.Errorf("removeImages removed %s under a container, or did not say it could not", image)
	}

	Docker(t, "rm", "-f", name)
	if err := removeImages([]string{image, image}); err != nil {
		t.Fatalf("removeImages: %v", err)
	}
	if _, err := TryDocker("image", "inspect", image); err == nil {
		t.Fatalf("%s still exists after removeImages", image)
	}
	if left, err := leftovers(label, []string{image}); err != nil || len(left) != 0 {
		t.Fatalf("leftovers after the cleanup = %q, %v; want none", left, err)
	}
}

// TestRunImageNamesAreThisRuns checks RunImage's names: this run's ID in the
// tag, a registry port not taken for a tag, and recorded for Main.
func TestRunImageNamesAreThisRuns(t *testing.T) {
	for base, want := range map[string]string{
		"dockscope:swarm-test":          "dockscope:swarm-test-" + runID,
		"dockscope":                     "dockscope:" + runID,
		"registry.local:5000/dockscope": "registry.local:5000/dockscope:" + runID,
	} {
		if got := RunImage(base); got != want {
			t.Errorf("RunImage(%q) = %q, want %q", base, got, want)
		}
		madeMu.Lock()
		recorded := slices.Contains(madeImages, want)
		madeMu.Unlock()
		if !recorded {
			t.Errorf("RunImage(%q) not recorded for Main's cleanup", base)
		}
	}
}
