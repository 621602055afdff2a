package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// The references a value may hold.
const (
	envRef  = "${env:"
	fileRef = "${file:"
)

// maxSecretFile bounds what a ${file:...} reference reads: it is meant for
// a token or a password, not for data.
const maxSecretFile = 64 << 10

// sources resolve references: the environment, and files such as Docker
// or Kubernetes secrets (/run/secrets/<name>).
type sources struct {
	lookupEnv func(string) (string, bool)
	readFile  func(string) ([]byte, error)
}

// expandEnv replaces every ${env:NAME} in s with the variable's value and
// every ${file:/abs/path} with the file's content, less one trailing
// newline. An unset variable or unreadable file is an error rather than an
// empty string, because a missing secret or endpoint should stop the agent,
// not quietly change what it does. $${env:NAME} and $${file:...} stand for
// themselves; any other "$" is left alone, so passwords containing "$" need
// no escaping. Values are not expanded again.
func expandEnv(s string, src sources) (string, error) {
	if !strings.Contains(s, envRef) && !strings.Contains(s, fileRef) {
		return s, nil
	}
	var b strings.Builder
	for {
		i, ref := nextRef(s)
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString(ref)
			s = s[i+len(ref):]
			continue
		}
		b.WriteString(s[:i])
		rest := s[i+len(ref):]
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated %s...} reference", ref)
		}
		v, err := resolve(ref, rest[:end], src)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		s = rest[end+1:]
	}
}

// nextRef finds the first reference of either kind in s.
func nextRef(s string) (int, string) {
	e, f := strings.Index(s, envRef), strings.Index(s, fileRef)
	switch {
	case e < 0 && f < 0:
		return -1, ""
	case f < 0 || e >= 0 && e < f:
		return e, envRef
	default:
		return f, fileRef
	}
}

func resolve(ref, arg string, src sources) (string, error) {
	if ref == envRef {
		if !validEnvName(arg) {
			return "", fmt.Errorf("invalid environment variable name %q", arg)
		}
		v, ok := src.lookupEnv(arg)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", arg)
		}
		return v, nil
	}
	if !filepath.IsAbs(arg) {
		// Relative to what? The agent's working directory is rarely the
		// configuration's; an absolute path says what it means.
		return "", fmt.Errorf("file reference %q is not an absolute path", arg)
	}
	data, err := src.readFile(arg)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", arg, err)
	}
	if len(data) > maxSecretFile {
		return "", fmt.Errorf("file %s holds %d bytes; a ${file:...} reference reads at most %d", arg, len(data), maxSecretFile)
	}
	v := strings.TrimSuffix(string(data), "\n")
	return strings.TrimSuffix(v, "\r"), nil
}

// readSecretFile reads at most maxSecretFile+1 bytes of a regular file:
// enough to tell that it is too big. Anything else (a FIFO, /dev/stdin)
// could block the agent's start for ever, even at open.
func readSecretFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxSecretFile+1))
}

// validEnvName reports whether name is [A-Za-z_][A-Za-z0-9_]*, the names a
// shell can set.
func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
