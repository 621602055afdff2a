package config

import (
	"fmt"
	"strings"
)

const envRef = "${env:"

// expandEnv replaces every ${env:NAME} in s with the variable's value. An
// unset variable is an error rather than an empty string, because a missing
// secret or endpoint should stop the agent, not quietly change what it does.
// $${env:NAME} stands for a literal ${env:NAME}; any other "$" is left
// alone, so passwords containing "$" need no escaping. Values are not
// expanded again.
func expandEnv(s string, lookupEnv func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, envRef) {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, envRef)
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString(envRef)
			s = s[i+len(envRef):]
			continue
		}
		b.WriteString(s[:i])
		rest := s[i+len(envRef):]
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated %s...} reference", envRef)
		}
		name := rest[:end]
		if !validEnvName(name) {
			return "", fmt.Errorf("invalid environment variable name %q", name)
		}
		v, ok := lookupEnv(name)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		b.WriteString(v)
		s = rest[end+1:]
	}
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
