//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// TestImageNamesReleaseAndCommit builds the agent image with
// scripts/build-image.sh where Go's own VCS stamping is off
// (GOFLAGS=-buildvcs=false, as in this machine's Go environment and in
// container builds without .git) and checks that `--version` in the image,
// and the image's OCI labels, name the release and the commit.
func TestImageNamesReleaseAndCommit(t *testing.T) {
	t.Parallel()
	root := harness.RepoRoot(t)
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	commit := strings.TrimSpace(string(head))
	const version = "v0.0.0-newuser-test"
	tag := "dockscope-newuser-version:test"
	build := exec.Command("bash", filepath.Join(root, "scripts", "build-image.sh"), tag)
	build.Dir = root
	build.Env = append(os.Environ(), "VERSION="+version, "GOFLAGS=-buildvcs=false")
	build.Env = envWithout(build.Env, "REVISION=") // the script finds the commit itself
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent image: %v\n%s", err, out)
	}
	t.Cleanup(func() { harness.TryDocker("image", "rm", tag) })

	out := harness.Docker(t, "run", "--rm", "--label", harness.TestLabel, tag, "--version")
	if want := "dockscope " + version + " (revision " + commit + ", "; !strings.HasPrefix(out, want) {
		t.Errorf("--version in the image: %q, want it to start with %q", out, want)
	}
	if !strings.Contains(out, runtime.Version()) {
		t.Logf("the image's Go version differs from the test's: %q", out)
	}
	labels := harness.Docker(t, "image", "inspect", "-f",
		`{{index .Config.Labels "org.opencontainers.image.version"}} {{index .Config.Labels "org.opencontainers.image.revision"}}`, tag)
	if want := version + " " + commit; labels != want {
		t.Errorf("image labels version, revision = %q, want %q", labels, want)
	}
}

// envWithout drops the environment entries that start with prefix.
func envWithout(env []string, prefix string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}
