package fswalk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// writeSized writes size bytes of data (not a hole: blocks are allocated).
func writeSized(t testing.TB, path string, size int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// walkAll runs a walk to its end in steps of budget entries, checking
// that no step reads more than its budget, and returns the step count.
func walkAll(t testing.TB, w *Walk, budget int) int {
	t.Helper()
	defer w.Close()
	for steps := 1; ; steps++ {
		n, done, err := w.Step(budget)
		if err != nil {
			t.Fatalf("step %d: %v", steps, err)
		}
		if n > budget {
			t.Fatalf("step %d read %d entries, over its budget of %d", steps, n, budget)
		}
		if done {
			return steps
		}
		if steps > 1_000_000 {
			t.Fatal("the walk does not end")
		}
	}
}

const mib = 1 << 20

func TestFSWalkCountsFilesAndBlocks(t *testing.T) {
	layer, logs := t.TempDir(), t.TempDir()
	// 1 + 3 directories, 5 files, 1 symlink in the layer; 1 + 1 in logs.
	writeSized(t, filepath.Join(layer, "a", "one"), mib)
	writeSized(t, filepath.Join(layer, "a", "b", "two"), 100)
	writeSized(t, filepath.Join(layer, "c", "three"), 0)
	writeSized(t, filepath.Join(layer, "four"), 5000)
	writeSized(t, filepath.Join(layer, "five"), 1)
	if err := os.Symlink("/nonexistent/target", filepath.Join(layer, "dangling")); err != nil {
		t.Fatal(err)
	}
	writeSized(t, filepath.Join(logs, "x-json.log"), 2*mib)

	w := New(layer, logs)
	walkAll(t, w, 1000)
	if want := uint64(1 + 3 + 5 + 1 + 1 + 1); w.Inodes() != want {
		t.Errorf("inodes = %d, want %d", w.Inodes(), want)
	}
	// 3 MiB of data plus a block or so per small file and directory.
	if w.Bytes() < 3*mib || w.Bytes() > 3*mib+64*1024 {
		t.Errorf("bytes = %d, want 3 MiB plus little", w.Bytes())
	}

	// Growing a file by 50 MiB grows the count by 50 MiB.
	before := w.Bytes()
	writeSized(t, filepath.Join(layer, "a", "one"), 51*mib)
	w = New(layer, logs)
	walkAll(t, w, 1000)
	if d := int64(w.Bytes()) - int64(before); d < 50*mib || d > 50*mib+64*1024 {
		t.Errorf("after writing 50 MiB more, bytes grew by %d", d)
	}
}

func TestFSWalkCountsHardLinksOnce(t *testing.T) {
	dir := t.TempDir()
	writeSized(t, filepath.Join(dir, "big"), 4*mib)
	w := New(dir)
	walkAll(t, w, 1000)
	inodes, bytes := w.Inodes(), w.Bytes()

	for i := range 3 {
		if err := os.Link(filepath.Join(dir, "big"), filepath.Join(dir, fmt.Sprintf("link%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// One more in another tree of the same walk (log directory and layer
	// on one filesystem).
	other := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "big"), filepath.Join(other, "link")); err != nil {
		t.Skipf("temp directories on different filesystems: %v", err)
	}
	w = New(dir, other)
	walkAll(t, w, 1000)
	// The second tree adds its directory, not the linked file again. The
	// directory's own size grew with its new entries: allow a block.
	if w.Inodes() != inodes+1 {
		t.Errorf("inodes = %d with 4 more names of one file, want %d (+1 for the second root)", w.Inodes(), inodes+1)
	}
	if w.Bytes() < bytes || w.Bytes() > bytes+16*1024 {
		t.Errorf("bytes = %d, want %d plus at most a directory block or two: the links counted again", w.Bytes(), bytes)
	}
}

func TestFSWalkBudgetAndContinuation(t *testing.T) {
	dir := t.TempDir()
	const dirs, perDir = 20, 50
	for d := range dirs {
		for f := range perDir {
			writeSized(t, filepath.Join(dir, fmt.Sprintf("d%02d", d), fmt.Sprintf("f%03d", f)), 10)
		}
	}
	total := uint64(1 + dirs + dirs*perDir)

	whole := New(dir)
	if steps := walkAll(t, whole, 1_000_000); steps != 1 {
		t.Errorf("an unbounded walk took %d steps", steps)
	}
	for _, budget := range []int{1, 7, 100, 999} {
		w := New(dir)
		steps := walkAll(t, w, budget)
		if w.Inodes() != total || w.Bytes() != whole.Bytes() {
			t.Errorf("budget %d: %d inodes, %d bytes; want the unbounded walk's %d, %d", budget, w.Inodes(), w.Bytes(), total, whole.Bytes())
		}
		// Each step but the last uses its whole budget.
		if minSteps := int(total)/budget + 1; steps < minSteps-1 || steps > minSteps+1 {
			t.Errorf("budget %d: %d steps for %d entries, want about %d", budget, steps, total, minSteps)
		}
	}
}

func TestFSWalkSurvivesEntriesVanishing(t *testing.T) {
	dir := t.TempDir()
	// A directory much larger than one read of names: the files deleted
	// after the first step are partly already listed (ENOENT at stat).
	for f := range 2000 {
		writeSized(t, filepath.Join(dir, "big", fmt.Sprintf("f%04d", f)), 1)
	}
	for d := range 10 {
		writeSized(t, filepath.Join(dir, fmt.Sprintf("sub%d", d), "deep", "file"), 1)
	}
	w := New(dir)
	defer w.Close()
	if _, done, err := w.Step(30); err != nil || done {
		t.Fatalf("first step: done %v, err %v", done, err)
	}
	// The whole tree goes, except the root: directories found but not read
	// yet, the directory being read, its remaining entries.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	for steps := 0; ; steps++ {
		_, done, err := w.Step(30)
		if err != nil {
			t.Fatalf("a vanished entry ended the walk: %v", err)
		}
		if done {
			break
		}
		if steps > 10_000 {
			t.Fatal("the walk does not end")
		}
	}
	if w.Inodes() >= 1+11+2000 {
		t.Errorf("counted %d inodes, as if nothing had been deleted", w.Inodes())
	}
}

func TestFSWalkRootErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeSized(t, file, 1)
	for name, root := range map[string]string{
		"missing":        filepath.Join(dir, "nope"),
		"not a dir":      file,
		"missing second": "",
	} {
		roots := []string{root}
		if root == "" {
			roots = []string{dir, filepath.Join(dir, "gone")}
		}
		w := New(roots...)
		var err error
		for done := false; err == nil && !done; {
			_, done, err = w.Step(100)
		}
		w.Close()
		if !errors.Is(err, ErrRoot) {
			t.Errorf("%s: err = %v, want ErrRoot", name, err)
		}
	}
}

func TestFSWalkUnreadableDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every directory")
	}
	dir := t.TempDir()
	writeSized(t, filepath.Join(dir, "private", "f"), 1)
	if err := os.Chmod(filepath.Join(dir, "private"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "private"), 0o755) })
	w := New(dir)
	defer w.Close()
	var err error
	for done := false; err == nil && !done; {
		_, done, err = w.Step(100)
	}
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("err = %v, want a permission error (an undercount must not pass as a measurement)", err)
	}
}
