package templates

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Structured texts (a manifest, a Clusternet override, a JSON HTTP body) are rendered so that a
// value can never change their structure: the template actions are taken out, the text is parsed,
// and each value goes back in its place as a value:
//
//   - a template that is a whole unquoted scalar becomes one scalar of its value's type (an int
//     stays a number: `replicas: {{ .params.replicas }}` gives 5);
//   - a template inside a quoted string, or inside a longer scalar, becomes part of that string,
//     escaped for it: it cannot close the string;
//   - toJson writes one JSON value (for a whole scalar: that value; inside a string: its text).
//
// A rendered value is never a mapping, a list, a key of its own or another document.

// action matches one template action of a references-only template (referencesOnly): no action
// holds "}}".
var action = regexp.MustCompile(`\{\{-?\s*(.*?)\s*-?\}\}`)

// piece is one template action of a structured text: where it is, and its value.
type piece struct {
	start, end int
	value      any  // the field's value
	json       bool // toJson: the value is written as JSON
}

// text is the piece as text inside a string: the value, or its JSON.
func (p piece) text() (string, error) {
	if p.json {
		b, err := json.Marshal(p.value)
		return string(b), err
	}
	return fmt.Sprint(p.value), nil
}

// pieces finds the template actions of text and their values. The template was checked to be
// references only; trim markers are refused here (they would move the text around the value).
func pieces(text string, values map[string]any) ([]piece, error) {
	t, err := ParseTemplate(text)
	if err != nil {
		return nil, err
	}
	if err := referencesOnly(t); err != nil {
		return nil, err
	}
	var out []piece
	for _, m := range action.FindAllStringSubmatchIndex(text, -1) {
		src := text[m[0]:m[1]]
		if strings.HasPrefix(src, "{{-") || strings.HasSuffix(src, "-}}") {
			return nil, fmt.Errorf("template %q: trim markers ({{- and -}}) are not allowed in a manifest, an override or a JSON body", src)
		}
		inner := strings.TrimSpace(text[m[2]:m[3]])
		if strings.HasPrefix(inner, "/*") {
			out = append(out, piece{start: m[0], end: m[1], value: ""})
			continue
		}
		p := piece{start: m[0], end: m[1]}
		if rest, ok := strings.CutPrefix(inner, "toJson "); ok {
			p.json, inner = true, strings.TrimSpace(rest)
		}
		if p.value, err = lookup(inner, values); err != nil {
			return nil, fmt.Errorf("template %q: %w", src, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// lookup is the value of a field reference (".params.x", ".planName") in values.
func lookup(field string, values map[string]any) (any, error) {
	names := strings.Split(strings.TrimPrefix(field, "."), ".")
	var cur any = values
	for _, n := range names {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: %s is not a map", field, n)
		}
		if cur, ok = m[n]; !ok {
			return nil, fmt.Errorf(`map has no entry for key %q`, n)
		}
	}
	return cur, nil
}

// renderStructured renders a manifest, an override or a JSON body: as JSON if it is JSON with its
// templates as values, else as YAML.
func renderStructured(text string, values map[string]any) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	ps, err := pieces(text, values)
	if err != nil {
		return "", err
	}
	if isJSON(text, ps) {
		return renderJSON(text, ps)
	}
	return renderYAML(text, ps)
}

// IsJSON reports whether a text with templates is JSON once its templates are values: an HTTP
// body is rendered as JSON then.
func IsJSON(text string) bool {
	var ps []piece
	for _, m := range action.FindAllStringIndex(text, -1) {
		ps = append(ps, piece{start: m[0], end: m[1]})
	}
	return isJSON(text, ps)
}

// isJSON reports whether text is JSON with each of its templates (ps) a value: a number outside
// strings, a letter inside.
func isJSON(text string, ps []piece) bool {
	probe := make([]piece, len(ps))
	for i, p := range ps {
		probe[i] = piece{start: p.start, end: p.end, value: 0}
	}
	out, err := renderJSON(text, probe)
	return err == nil && out != ""
}

// renderJSON splices each value into the JSON text: outside a string as one JSON value, inside a
// string as escaped text. The text keeps its formatting.
func renderJSON(text string, ps []piece) (string, error) {
	var b strings.Builder
	inString, escaped, last := false, false, 0
	next := 0
	for i := 0; i < len(text); i++ {
		if next < len(ps) && i == ps[next].start {
			p := ps[next]
			b.WriteString(text[last:i])
			var s string
			var err error
			if inString {
				var t string
				if t, err = p.text(); err == nil {
					q, _ := json.Marshal(t)
					s = string(q[1 : len(q)-1])
				}
			} else {
				var q []byte
				q, err = json.Marshal(p.value)
				s = string(q)
			}
			if err != nil {
				return "", err
			}
			b.WriteString(s)
			last, i, next = p.end, p.end-1, next+1
			continue
		}
		switch c := text[i]; {
		case escaped:
			escaped = false
		case c == '\\' && inString:
			escaped = true
		case c == '"':
			inString = !inString
		}
	}
	b.WriteString(text[last:])
	out := b.String()
	if !json.Valid([]byte(out)) {
		return "", fmt.Errorf("not JSON once rendered (the templates are values: put one where a value goes)")
	}
	return out, nil
}

// placeholder stands for piece i in the YAML text while it is parsed.
func placeholder(i int) string { return "drplan-value-" + strconv.Itoa(i) + "-x" }

var placeholders = regexp.MustCompile(`drplan-value-(\d+)-x`)

// renderYAML parses the text with placeholders for the values, puts each value in its scalar, and
// writes the YAML again.
func renderYAML(text string, ps []piece) (string, error) {
	if strings.Contains(text, "drplan-value-") {
		return "", fmt.Errorf("the text holds drplan-value-, which rendering reserves")
	}
	var b strings.Builder
	last := 0
	for i, p := range ps {
		b.WriteString(text[last:p.start])
		b.WriteString(placeholder(i))
		last = p.end
	}
	b.WriteString(text[last:])
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(b.String()), &doc); err != nil {
		return "", fmt.Errorf("does not parse as YAML with its templates as values: %w", err)
	}
	if err := fill(&doc, ps); err != nil {
		return "", err
	}
	out, err := yaml.Marshal(&doc)
	return string(out), err
}

// fill puts the values in the scalars of a YAML tree.
func fill(n *yaml.Node, ps []piece) error {
	for _, c := range n.Content {
		if err := fill(c, ps); err != nil {
			return err
		}
	}
	if n.Kind != yaml.ScalarNode || !strings.Contains(n.Value, "drplan-value-") {
		return nil
	}
	if m := placeholders.FindStringSubmatchIndex(n.Value); m != nil && m[0] == 0 && m[1] == len(n.Value) && n.Style == 0 {
		i, _ := strconv.Atoi(n.Value[m[2]:m[3]])
		return scalar(n, ps[i])
	}
	var err error
	n.Value = placeholders.ReplaceAllStringFunc(n.Value, func(s string) string {
		i, _ := strconv.Atoi(placeholders.FindStringSubmatch(s)[1])
		t, terr := ps[i].text()
		if terr != nil {
			err = terr
		}
		return t
	})
	n.Tag, n.Style = "!!str", yaml.DoubleQuotedStyle
	return err
}

// scalar makes n the value of p, typed: a number, a bool, or a string.
func scalar(n *yaml.Node, p piece) error {
	v := p.value
	if p.json {
		// toJson's one JSON value, as YAML reads it: the same scalar.
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		var back any
		if err := json.Unmarshal(b, &back); err != nil {
			return err
		}
		v = back
	}
	n.Style = 0
	switch v := v.(type) {
	case string:
		n.Tag, n.Value, n.Style = "!!str", v, yaml.DoubleQuotedStyle
	case bool:
		n.Tag, n.Value = "!!bool", strconv.FormatBool(v)
	case int64:
		n.Tag, n.Value = "!!int", strconv.FormatInt(v, 10)
	case int:
		n.Tag, n.Value = "!!int", strconv.Itoa(v)
	case float64:
		n.Tag, n.Value = "!!float", strconv.FormatFloat(v, 'g', -1, 64)
	case nil:
		n.Tag, n.Value = "!!null", "null"
	default:
		return fmt.Errorf("a value of type %T cannot stand for a scalar", v)
	}
	return nil
}

// renderURL renders an HTTP action's URL: a template that is the whole URL is taken as it is and
// must be an http(s) URL; a value in the path, query or fragment is escaped for it, and one in the
// host may only be a host name's letters, digits, dots and hyphens, so no value changes the host.
func renderURL(text string, values map[string]any) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	ps, err := pieces(text, values)
	if err != nil {
		return "", err
	}
	if len(ps) == 1 && ps[0].start == 0 && ps[0].end == len(text) {
		whole, err := ps[0].text()
		if err != nil {
			return "", err
		}
		if u, err := url.Parse(whole); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("the URL %q is not an http(s) URL", whole)
		}
		return whole, nil
	}
	hostEnd := len(text)
	if i := strings.Index(text, "://"); i >= 0 {
		if j := strings.IndexAny(text[i+3:], "/?#"); j >= 0 {
			hostEnd = i + 3 + j
		}
	}
	query := strings.IndexByte(text, '?')
	var b strings.Builder
	last := 0
	for _, p := range ps {
		b.WriteString(text[last:p.start])
		v, err := p.text()
		if err != nil {
			return "", err
		}
		switch {
		case p.start < hostEnd:
			if !hostChars.MatchString(v) {
				return "", fmt.Errorf("the value %q cannot stand in a URL's host: only letters, digits, dots and hyphens", v)
			}
		case query >= 0 && p.start > query:
			v = url.QueryEscape(v)
		default:
			v = url.PathEscape(v)
		}
		b.WriteString(v)
		last = p.end
	}
	b.WriteString(text[last:])
	return b.String(), nil
}

var hostChars = regexp.MustCompile(`^[A-Za-z0-9.-]*$`)
