package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// lineReserveBytes is what one log record needs in an OTLP request beyond
// its line: timestamps, attributes, its container's Resource and the
// request's framing. A Resource with the identity attributes and a few
// allow-listed labels encodes to well under 2 KiB; the rest is margin.
const lineReserveBytes = 16 << 10

// maxLineFitsBatch checks that the longest line, with its metadata, fits in
// one request: logs.batch.max_bytes bounds a request's encoded size, and a
// record that can never fit would be refused by the backend and dropped.
func (v *validator) maxLineFitsBatch(l LogsConfig) {
	if l.Batch.MaxBytes >= 1024 && l.MaxLineBytes > l.Batch.MaxBytes-lineReserveBytes {
		v.add("logs.max_line_bytes", "must leave %d bytes of logs.batch.max_bytes (%d) for the record's metadata: at most %d, got %d",
			lineReserveBytes, l.Batch.MaxBytes, max(l.Batch.MaxBytes-lineReserveBytes, 0), l.MaxLineBytes)
	}
}

// otlpHeaders checks every header where it is read, at load: a value that
// gRPC or HTTP cannot carry would otherwise fail every request at send
// time, long after the agent reported itself healthy.
func (v *validator) otlpHeaders(key string, h map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if err := CheckHeader(k, h[k]); err != nil {
			v.add(key+"."+k, "%s", err)
		}
	}
}

// reservedHeaders are set by the exporter or the transport itself.
var reservedHeaders = []string{"connection", "content-encoding", "content-length", "content-type", "host",
	"keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}

// CheckHeader reports why key: value cannot be sent as an OTLP header over
// both gRPC (metadata keys of [0-9a-z-_.], once lowercased; values of
// printable ASCII) and HTTP, or nil. The message never repeats the value,
// which is usually a secret.
func CheckHeader(key, value string) error {
	if key == "" {
		return fmt.Errorf("header name must not be empty")
	}
	lower := strings.ToLower(key)
	for i := 0; i < len(lower); i++ {
		c := lower[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("header name %q has a character other than letters, digits, '-', '_' and '.' at byte %d", key, i)
		}
	}
	if strings.HasPrefix(lower, "grpc-") || slices.Contains(reservedHeaders, lower) {
		return fmt.Errorf("header %q is set by the transport itself", key)
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < 0x20 || c > 0x7e {
			hint := ""
			if c == '\n' || c == '\r' {
				hint = " (a trailing newline read with ${file:...}?)"
			}
			return fmt.Errorf("value of header %q has a byte that is not printable ASCII (0x%02x) at byte %d%s", key, c, i, hint)
		}
	}
	return nil
}

// RedactURL hides the userinfo of a URL ("https://user:pass@host" becomes
// "https://***@host") so that a credential in an endpoint never reaches a
// log or an error message. It works on the text, so that a URL too broken
// to parse is redacted as well.
func RedactURL(s string) string {
	_, rest, ok := strings.Cut(s, "://")
	if !ok {
		rest = s
	}
	start := len(s) - len(rest)
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndexByte(rest[:end], '@')
	if at < 0 {
		return s
	}
	return s[:start] + "***" + s[start+at:]
}
