//go:build ignore

// exprs is the helper of deploy/alerts/check.sh (run it through that script):
//
//	go run ./deploy/grafana/exprs.go -dashboard D.json -rules-out R.yml -names-out N.txt FILE.yml...
//
// It checks the Grafana dashboard's structure (schema version, data source
// and template variables, panel ids), turns every PromQL expression of the
// dashboard, with its Grafana variables substituted, into a recording rule
// in R.yml for `promtool check rules` to parse, and writes every metric name
// used by the dashboard and by the rule and rule-test files to N.txt (one
// "name<TAB>where" a line) for check.sh to compare with its allow-list.
//
// It is excluded from the module's packages (build tag ignore) and needs no
// dependency the module does not already have.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

func main() {
	dashboard := flag.String("dashboard", "", "the Grafana dashboard JSON")
	rulesOut := flag.String("rules-out", "", "where to write the dashboard's expressions as recording rules")
	namesOut := flag.String("names-out", "", "where to write the metric names used")
	flag.Parse()
	if *dashboard == "" || *rulesOut == "" || *namesOut == "" {
		flag.Usage()
		os.Exit(2)
	}
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	names := map[string]map[string]bool{} // metric name -> where
	use := func(where, expr string) {
		ns, err := metricNames(expr)
		if err != nil {
			fail("%s: %v", where, err)
		}
		for _, n := range ns {
			if names[n] == nil {
				names[n] = map[string]bool{}
			}
			names[n][where] = true
		}
	}

	// The dashboard.
	records, err := checkDashboard(*dashboard, fail, use)
	if err != nil {
		fail("%s: %v", *dashboard, err)
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": records}}})
	if err != nil {
		fail("%v", err)
	}
	if err := os.WriteFile(*rulesOut, out, 0o644); err != nil {
		fail("%v", err)
	}

	// Rule files and rule test files.
	for _, file := range flag.Args() {
		if err := scanRuleFile(file, use); err != nil {
			fail("%s: %v", file, err)
		}
	}

	var b bytes.Buffer
	for _, n := range sortedKeys(names) {
		for _, w := range sortedKeys(names[n]) {
			fmt.Fprintf(&b, "%s\t%s\n", n, w)
		}
	}
	if err := os.WriteFile(*namesOut, b.Bytes(), 0o644); err != nil {
		fail("%v", err)
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, p)
		}
		os.Exit(1)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type rule struct {
	Record string `yaml:"record"`
	Expr   string `yaml:"expr"`
}

// checkDashboard validates the dashboard and returns its expressions as
// recording rules.
func checkDashboard(file string, fail func(string, ...any), use func(string, string)) ([]rule, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var d map[string]any
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if v, ok := d["schemaVersion"].(json.Number); !ok {
		fail("%s: no schemaVersion", file)
	} else if n, _ := v.Int64(); n < 39 {
		fail("%s: schemaVersion %d < 39", file, n)
	}

	// Template variables.
	vars := map[string]map[string]any{}
	templating, _ := d["templating"].(map[string]any)
	list, _ := templating["list"].([]any)
	for _, v := range list {
		m, _ := v.(map[string]any)
		name, _ := m["name"].(string)
		vars[name] = m
	}
	if ds := vars["datasource"]; ds == nil || ds["type"] != "datasource" || ds["query"] != "prometheus" {
		fail("%s: no template variable \"datasource\" of type datasource for prometheus", file)
	}
	for _, name := range []string{"instance", "name"} {
		v := vars[name]
		if v == nil || v["type"] != "query" || v["multi"] != true || v["includeAll"] != true {
			fail("%s: template variable %q must be a multi-value query variable with All", file, name)
		}
	}

	var records []rule
	labelValues := regexp.MustCompile(`^\s*label_values\(\s*(.*?)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)
	for _, name := range sortedKeys(vars) {
		v := vars[name]
		if v["type"] != "query" {
			continue
		}
		checkDatasource(fmt.Sprintf("%s: variable %s", file, name), v, fail)
		q, _ := v["definition"].(string)
		if qm, ok := v["query"].(map[string]any); ok {
			q, _ = qm["query"].(string)
		} else if qs, ok := v["query"].(string); ok {
			q = qs
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			fail("%s: variable %s: query %q is not label_values(selector, label)", file, name, q)
			continue
		}
		expr, err := substitute(m[1], vars)
		if err != nil {
			fail("%s: variable %s: %v", file, name, err)
			continue
		}
		where := fmt.Sprintf("%s: variable %s", file, name)
		use(where, expr)
		records = append(records, rule{Record: "dashboard:variable_" + name, Expr: expr})
	}

	// Panels, rows' nested panels included.
	ids := map[string]bool{}
	var walk func(panels []any)
	walk = func(panels []any) {
		for _, p := range panels {
			panel, _ := p.(map[string]any)
			id := fmt.Sprint(panel["id"])
			title, _ := panel["title"].(string)
			where := fmt.Sprintf("%s: panel %s %q", file, id, title)
			if panel["id"] == nil || ids[id] {
				fail("%s: missing or duplicate id", where)
			}
			ids[id] = true
			if _, ok := panel["gridPos"].(map[string]any); !ok {
				fail("%s: no gridPos", where)
			}
			if nested, ok := panel["panels"].([]any); ok {
				walk(nested)
			}
			targets, _ := panel["targets"].([]any)
			if panel["type"] != "row" {
				if len(targets) == 0 {
					fail("%s: no targets", where)
				}
				checkDatasource(where, panel, fail)
			}
			for _, t := range targets {
				target, _ := t.(map[string]any)
				refID, _ := target["refId"].(string)
				tw := fmt.Sprintf("%s target %s", where, refID)
				checkDatasource(tw, target, fail)
				raw, _ := target["expr"].(string)
				if strings.TrimSpace(raw) == "" {
					fail("%s: no expr", tw)
					continue
				}
				expr, err := substitute(raw, vars)
				if err != nil {
					fail("%s: %v", tw, err)
					continue
				}
				use(tw, expr)
				records = append(records, rule{Record: fmt.Sprintf("dashboard:panel_%s_%s", id, refID), Expr: expr})
			}
		}
	}
	panels, _ := d["panels"].([]any)
	if len(panels) == 0 {
		fail("%s: no panels", file)
	}
	walk(panels)
	return records, nil
}

// checkDatasource wants {"type": "prometheus", "uid": "${datasource}"}.
func checkDatasource(where string, m map[string]any, fail func(string, ...any)) {
	ds, _ := m["datasource"].(map[string]any)
	if ds == nil || ds["type"] != "prometheus" || ds["uid"] != "${datasource}" {
		fail("%s: datasource is %v, want {type: prometheus, uid: ${datasource}}", where, m["datasource"])
	}
}

var (
	// $var, ${var}, ${var:format}, [[var]], [[var:format]]
	grafanaVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\[\[([A-Za-z_][A-Za-z0-9_]*)(?::[^\]]*)?\]\]`)
	// Grafana's interval variables, replaced by a duration.
	intervalVars = map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
)

// substitute replaces Grafana's interval variables with 5m and the
// dashboard's template variables with .* (they are only used in regex
// matchers); any other variable is an error.
func substitute(expr string, vars map[string]map[string]any) (string, error) {
	var errs []error
	out := grafanaVar.ReplaceAllStringFunc(expr, func(s string) string {
		m := grafanaVar.FindStringSubmatch(s)
		name := m[1] + m[2] + m[3]
		switch {
		case intervalVars[name]:
			return "5m"
		case vars[name] != nil:
			return ".*"
		}
		errs = append(errs, fmt.Errorf("unknown variable %s", s))
		return s
	})
	return out, errors.Join(errs...)
}

// scanRuleFile records the metric names of a Prometheus rule file (exprs) or
// of a promtool rule test file (input series, PromQL test expressions).
func scanRuleFile(file string, use func(string, string)) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
		Tests []struct {
			Name        string `yaml:"name"`
			InputSeries []struct {
				Series string `yaml:"series"`
			} `yaml:"input_series"`
			PromQLTests []struct {
				Expr string `yaml:"expr"`
			} `yaml:"promql_expr_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		return err
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			use(fmt.Sprintf("%s: %s", file, r.Alert+r.Record), r.Expr)
		}
	}
	for _, t := range f.Tests {
		for _, s := range t.InputSeries {
			use(fmt.Sprintf("%s: test %q input series", file, t.Name), s.Series)
		}
		for _, p := range t.PromQLTests {
			use(fmt.Sprintf("%s: test %q expr", file, t.Name), p.Expr)
		}
	}
	return nil
}

var (
	keywords = map[string]bool{"and": true, "or": true, "unless": true, "offset": true, "bool": true,
		"atan2": true, "inf": true, "nan": true}
	// grouping keywords, followed by a parenthesised list of label names
	grouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true}
	// aggregations, which may be followed by by/without instead of "("
	aggregations = map[string]bool{"sum": true, "min": true, "max": true, "avg": true, "group": true,
		"stddev": true, "stdvar": true, "count": true, "count_values": true, "bottomk": true,
		"topk": true, "quantile": true, "limitk": true, "limit_ratio": true}
)

// metricNames returns the metric names a PromQL expression selects. It is a
// tokenizer, not a parser (promtool parses): it skips strings, label
// matchers ({...}), ranges ([...]), numbers and durations, keywords, the
// label lists of by/without/on/ignoring/group_left/group_right, and function
// and aggregation names (identifiers followed by "(", or an aggregation
// followed by by/without); every other identifier is a metric name.
func metricNames(expr string) ([]string, error) {
	var names []string
	s := expr
	i := 0
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	skipSpace := func(j int) int {
		for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r') {
			j++
		}
		return j
	}
	// skipTo returns the index after the closing byte, honouring strings.
	skipTo := func(j int, closing byte) (int, error) {
		for j < len(s) {
			switch c := s[j]; {
			case c == closing:
				return j + 1, nil
			case c == '"' || c == '\'' || c == '`':
				k, err := skipString(s, j)
				if err != nil {
					return 0, err
				}
				j = k
			default:
				j++
			}
		}
		return 0, fmt.Errorf("unterminated %q", closing)
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			k, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = k
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '{':
			k, err := skipTo(i+1, '}')
			if err != nil {
				return nil, err
			}
			if strings.Contains(s[i:k], "__name__") {
				return nil, errors.New("__name__ matchers are not supported by the metric name check")
			}
			i = k
		case c == '[':
			k, err := skipTo(i+1, ']')
			if err != nil {
				return nil, err
			}
			i = k
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			next := skipSpace(j)
			lower := strings.ToLower(word)
			switch {
			case grouping[lower]:
				if next < len(s) && s[next] == '(' {
					k, err := skipTo(next+1, ')')
					if err != nil {
						return nil, err
					}
					j = k
				}
			case keywords[lower]:
			case next < len(s) && s[next] == '(':
				// a function or an aggregation
			case aggregations[lower] && (strings.HasPrefix(s[next:], "by") || strings.HasPrefix(s[next:], "without")):
				// an aggregation with its grouping first
			default:
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	return names, nil
}

// skipString returns the index after the string literal starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if q != '`' {
				j++
			}
		case q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at %d", i)
}
