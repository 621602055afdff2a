package collector

import (
	"regexp"
	"strings"

	"github.com/dockscope/dockscope/config"
)

// Container labels by which a container opts out.
const (
	labelEnable = "dockscope.enable"
	labelLogs   = "dockscope.logs"
)

// Selector decides which containers are followed and which of their labels
// are exported.
type Selector struct {
	include, exclude filter
	allow            []*regexp.Regexp
}

// filter is a config.Filter with its globs compiled.
type filter struct {
	names, images []*regexp.Regexp
	labels        []labelPattern
}

type labelPattern struct {
	key   string
	value *regexp.Regexp // nil: the label only has to be present
}

func (f filter) empty() bool { return len(f.names)+len(f.images)+len(f.labels) == 0 }

// NewSelector builds a selector from the discovery configuration, which
// config.Validate has already checked.
func NewSelector(c config.DiscoveryConfig) *Selector {
	return &Selector{
		include: compileFilter(c.Include),
		exclude: compileFilter(c.Exclude),
		allow:   compileGlobs(c.LabelAllowlist),
	}
}

func compileFilter(f config.Filter) filter {
	out := filter{names: compileGlobs(f.Names), images: compileGlobs(f.Images)}
	for _, p := range f.Labels {
		key, value, hasValue := strings.Cut(p, "=")
		lp := labelPattern{key: key}
		if hasValue {
			lp.value = compileGlob(value)
		}
		out.labels = append(out.labels, lp)
	}
	return out
}

func compileGlobs(patterns []string) []*regexp.Regexp {
	out := make([]*regexp.Regexp, 0, len(patterns))
	for _, p := range patterns {
		out = append(out, compileGlob(p))
	}
	return out
}

// compileGlob turns a shell glob into an anchored regexp. Unlike path.Match,
// "*" also crosses "/", because image names ("ghcr.io/org/app") and label
// keys are not paths and users expect "ghcr.io/*" to match them.
func compileGlob(glob string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '\\':
			if i+1 < len(glob) {
				i++
			}
			b.WriteString(regexp.QuoteMeta(glob[i : i+1]))
		case '[':
			end := strings.IndexByte(glob[i+1:], ']')
			if end < 0 {
				b.WriteString(regexp.QuoteMeta(glob[i:]))
				i = len(glob)
				continue
			}
			class := glob[i+1 : i+1+end]
			neg := strings.HasPrefix(class, "^") || strings.HasPrefix(class, "!")
			if neg {
				class = class[1:]
			}
			b.WriteString("[")
			if neg {
				b.WriteString("^")
			}
			b.WriteString(strings.ReplaceAll(class, `\`, `\\`))
			b.WriteString("]")
			i += end + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		// An odd class the validator let through: match it literally rather
		// than fail after start-up.
		return regexp.MustCompile("^" + regexp.QuoteMeta(glob) + "$")
	}
	return re
}

// Selected reports whether a container is followed at all. name is without
// the leading "/"; image is the reference the container was created from.
func (s *Selector) Selected(name, image string, labels map[string]string) bool {
	if v, ok := labels[labelEnable]; ok && isFalse(v) {
		return false
	}
	if !s.include.empty() && !s.include.matchAll(name, image, labels) {
		return false
	}
	if s.exclude.matchAny(name, image, labels) {
		return false
	}
	return true
}

// LogsSelected reports whether a followed container's logs are collected.
func (s *Selector) LogsSelected(labels map[string]string) bool {
	v, ok := labels[labelLogs]
	return !ok || !isFalse(v)
}

// LabelAllowed reports whether a container label is exported.
func (s *Selector) LabelAllowed(key string) bool {
	return matchGlobs(s.allow, key)
}

func isFalse(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "false", "0", "no", "off":
		return true
	}
	return false
}

// matchAll reports whether every non-empty list has a matching pattern: the
// include semantics ("name a* from image b*").
func (f filter) matchAll(name, image string, labels map[string]string) bool {
	return (len(f.names) == 0 || matchGlobs(f.names, name)) &&
		(len(f.images) == 0 || matchImage(f.images, image)) &&
		(len(f.labels) == 0 || matchLabels(f.labels, labels))
}

// matchAny reports whether any pattern of any list matches: the exclude
// semantics ("drop name a*, and drop image b*").
func (f filter) matchAny(name, image string, labels map[string]string) bool {
	return matchGlobs(f.names, name) || matchImage(f.images, image) || matchLabels(f.labels, labels)
}

func matchGlobs(patterns []*regexp.Regexp, s string) bool {
	for _, p := range patterns {
		if p.MatchString(s) {
			return true
		}
	}
	return false
}

// matchImage matches the full reference and, for convenience, the name
// without its tag, so "nginx" matches "nginx:1.27".
func matchImage(patterns []*regexp.Regexp, image string) bool {
	name, _ := splitImageRef(image)
	return matchGlobs(patterns, image) || matchGlobs(patterns, name)
}

func matchLabels(patterns []labelPattern, labels map[string]string) bool {
	for _, p := range patterns {
		v, ok := labels[p.key]
		if ok && (p.value == nil || p.value.MatchString(v)) {
			return true
		}
	}
	return false
}
