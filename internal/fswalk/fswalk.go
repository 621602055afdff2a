// Package fswalk adds up the disk use of directory trees, du-style, a
// bounded number of entries at a time. The agent measures containers'
// writable layers with it; bench/fswalk measures its cost.
package fswalk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Walk adds up the disk use of some directory trees, du-style, a bounded
// number of entries at a time: Step reads at most its budget of entries and
// keeps its place, so one container's layer of a million files cannot hold
// up the others or stall the agent, and a long walk simply continues at its
// next turn.
//
// It counts allocated blocks (st_blocks × 512, what du reports and what
// cAdvisor's fs usage counts), every file, directory and link once, hard
// links once per inode. It does not follow symbolic links nor cross into
// other filesystems (a bind mount seen below a layer is not the layer's).
type Walk struct {
	roots []string // not yet started
	stack []string // directories found, not yet read
	dir   *os.File // the directory being read; nil between directories
	path  string   // dir's path

	dev    uint64 // the current root's filesystem: the walk stays on it
	bytes  uint64
	inodes uint64
	// links holds the inodes with several names already counted. Only
	// those: a set of every inode would cost ~50 bytes a file.
	links map[fileKey]struct{}
}

type fileKey struct{ dev, ino uint64 }

// dirChunk is how many names are read from a directory at once.
const dirChunk = 256

// New returns a walk of the trees below roots, counted together.
func New(roots ...string) *Walk {
	return &Walk{roots: roots}
}

// Bytes is the disk space counted so far: allocated blocks × 512.
func (w *Walk) Bytes() uint64 { return w.bytes }

// Inodes is the files, directories and links counted so far.
func (w *Walk) Inodes() uint64 { return w.inodes }

// ErrRoot marks a root that cannot be measured: missing, unreadable, or
// not a directory. Below the roots, entries that vanish while the walk runs
// (a container deleting its temporary files) are skipped.
var ErrRoot = errors.New("filesystem root not readable")

// Step reads up to budget entries and reports how many it read and whether
// the walk is complete. An error ends the walk (close it); the sums are
// then incomplete.
func (w *Walk) Step(budget int) (n int, done bool, err error) {
	for n < budget {
		if w.dir == nil {
			if len(w.stack) == 0 {
				if len(w.roots) == 0 {
					return n, true, nil
				}
				// Only between trees: the stack holds one tree's directories.
				root := w.roots[0]
				w.roots = w.roots[1:]
				if err := w.openRoot(root); err != nil {
					return n, false, err
				}
				n++
				continue
			}
			p := w.stack[len(w.stack)-1]
			w.stack = w.stack[:len(w.stack)-1]
			f, err := os.Open(p)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
					continue // removed (or replaced) since it was counted
				}
				return n, false, fmt.Errorf("reading directory %s: %w", p, err)
			}
			w.dir, w.path = f, p
		}
		names, err := w.dir.Readdirnames(min(dirChunk, budget-n))
		if errors.Is(err, io.EOF) || errors.Is(err, os.ErrNotExist) || (err == nil && len(names) == 0) {
			// The end, or the directory was removed while being read.
			w.closeDir()
			continue
		}
		if err != nil {
			return n, false, fmt.Errorf("reading directory %s: %w", w.path, err)
		}
		fd := int(w.dir.Fd())
		for _, name := range names {
			n++
			var st unix.Stat_t
			err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
			if err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue // vanished between the listing and the stat
				}
				return n, false, fmt.Errorf("stat %s: %w", filepath.Join(w.path, name), err)
			}
			if uint64(st.Dev) != w.dev {
				continue // a mount point: another filesystem
			}
			w.count(&st)
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				w.stack = append(w.stack, filepath.Join(w.path, name))
			}
		}
	}
	return n, false, nil
}

func (w *Walk) openRoot(root string) error {
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrRoot, root, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%w: %s is not a directory", ErrRoot, root)
	}
	f, err := os.Open(root)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRoot, err)
	}
	if w.links == nil {
		w.links = make(map[fileKey]struct{})
	}
	// Each tree is counted on its own root's filesystem (the log directory
	// may be elsewhere than the layer when the data root is split by hand).
	w.dev = uint64(st.Dev)
	w.count(&st)
	w.dir, w.path = f, root
	return nil
}

func (w *Walk) count(st *unix.Stat_t) {
	if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		k := fileKey{uint64(st.Dev), st.Ino}
		if _, ok := w.links[k]; ok {
			return
		}
		w.links[k] = struct{}{}
	}
	w.inodes++
	w.bytes += uint64(st.Blocks) * 512
}

func (w *Walk) closeDir() {
	if w.dir != nil {
		w.dir.Close()
		w.dir = nil
	}
}

// Close releases the directory held open between steps.
func (w *Walk) Close() { w.closeDir() }
