package templates

import (
	"encoding/json"
	"errors"
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
// references only.
func pieces(text string, values map[string]any) ([]piece, error) {
	t, err := ParseTemplate(text)
	if err != nil {
		return nil, err
	}
	if err := referencesOnly(t); err != nil {
		return nil, err
	}
	ps, err := spans(text)
	if err != nil {
		return nil, err
	}
	for i := range ps {
		p := &ps[i]
		inner := strings.TrimSpace(text[p.start+2 : p.end-2])
		if strings.HasPrefix(inner, "/*") {
			p.value = ""
			continue
		}
		if rest, ok := strings.CutPrefix(inner, "toJson "); ok {
			p.json, inner = true, strings.TrimSpace(rest)
		}
		if p.value, err = lookup(inner, values); err != nil {
			return nil, fmt.Errorf("template %q: %w", text[p.start:p.end], err)
		}
	}
	return ps, nil
}

// spans finds where the template actions of text are, without their values; trim markers are
// refused (they would move the text around the value).
func spans(text string) ([]piece, error) {
	var out []piece
	for _, m := range action.FindAllStringIndex(text, -1) {
		src := text[m[0]:m[1]]
		if strings.HasPrefix(src, "{{-") || strings.HasSuffix(src, "-}}") {
			return nil, fmt.Errorf("template %q: trim markers ({{- and -}}) are not allowed in a manifest, an override or a JSON body", src)
		}
		out = append(out, piece{start: m[0], end: m[1]})
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
// templates as values, else as YAML. Its shape is checked first (shape.go), and neither it nor
// what it renders to may exceed MaxRenderedBytes.
func renderStructured(text string, values map[string]any) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	if err := tooLong(text); err != nil {
		return "", err
	}
	ps, err := pieces(text, values)
	if err != nil {
		return "", err
	}
	if err := fitsRendered(text, ps); err != nil {
		return "", err
	}
	p, isJSON, err := checkShape(text, ps)
	if err != nil {
		return "", err
	}
	var out string
	if isJSON {
		out, err = renderJSON(text, ps)
	} else {
		out, err = renderYAML(p, ps)
	}
	if err != nil {
		return "", err
	}
	if len(out) > MaxRenderedBytes {
		return "", fmt.Errorf("the rendered text would exceed %d bytes", MaxRenderedBytes)
	}
	return out, nil
}

// fitsRendered refuses, before anything is built, a text whose values would make it render to
// more than MaxRenderedBytes: each value counts as written in a JSON string, the most escaping any
// of its places gives it (6 bytes for a control character), and the count stops at the cap.
func fitsRendered(text string, ps []piece) error {
	size := len(text)
	for _, p := range ps {
		t, err := p.text()
		if err != nil {
			return err
		}
		q, _ := json.Marshal(t) // a string always marshals
		if size += len(q) - (p.end - p.start); size > MaxRenderedBytes {
			return fmt.Errorf("the rendered text would exceed %d bytes", MaxRenderedBytes)
		}
	}
	return nil
}

// tooLong refuses a structured text with templates over MaxRenderedBytes.
func tooLong(text string) error {
	if len(text) > MaxRenderedBytes {
		return fmt.Errorf("the text is %d bytes, over the %d a manifest, an override or a JSON body with templates may have", len(text), MaxRenderedBytes)
	}
	return nil
}

// checkShape checks the shape of a structured text with templates (ps: their places): isJSON says
// whether it is JSON, else the probe's YAML tree is in tree.
func checkShape(text string, ps []piece) (p *probe, isJSON bool, err error) {
	p, deep, err := jsonProbe(text, ps)
	switch {
	case err == nil:
		return p, true, p.checkJSON()
	case !errors.Is(err, errNotJSON):
		return nil, false, err // JSON nested too deep
	}
	if p, err = yamlProbe(text, ps); err != nil {
		return nil, false, err
	}
	if p.tree, err = p.parseYAML(); err != nil {
		if deep != "" { // what says more than YAML's own "exceeded max depth of 10000"
			return nil, false, nestingError(deep)
		}
		return nil, false, err
	}
	return p, false, p.checkYAML(p.tree, 0, false)
}

// CheckStructured checks the shape of a manifest, an override value or a JSON HTTP body with
// templates (shape.go) without rendering it: what it refuses, rendering refuses too.
func CheckStructured(text string) error {
	if !strings.Contains(text, "{{") {
		return nil
	}
	if err := tooLong(text); err != nil {
		return err
	}
	ps, err := spans(text)
	if err != nil {
		return err
	}
	_, _, err = checkShape(text, ps)
	return err
}

// IsJSON reports whether a text with templates is JSON once its templates are values (or so
// deeply nested JSON that rendering refuses it): an HTTP body is rendered as JSON then.
func IsJSON(text string) bool {
	var ps []piece
	for _, m := range action.FindAllStringIndex(text, -1) {
		ps = append(ps, piece{start: m[0], end: m[1]})
	}
	_, deep, err := jsonProbe(text, ps)
	return deep != "" || !errors.Is(err, errNotJSON)
}

// renderJSON splices each value into the JSON text: outside a string as one JSON value, inside a
// string as escaped text. The text keeps its formatting.
func renderJSON(text string, ps []piece) (string, error) {
	p, err := spliceJSON(text, ps, func(i int, inString bool) (string, error) {
		if !inString {
			q, err := json.Marshal(ps[i].value)
			return string(q), err
		}
		t, err := ps[i].text()
		if err != nil {
			return "", err
		}
		q, _ := json.Marshal(t)
		return string(q[1 : len(q)-1]), nil
	})
	if err != nil {
		return "", err
	}
	if !json.Valid([]byte(p.text)) {
		return "", errNotJSON
	}
	return p.text, nil
}

// placeholder stands for piece i in the YAML text while it is parsed.
func placeholder(i int) string { return "drplan-value-" + strconv.Itoa(i) + "-x" }

var placeholders = regexp.MustCompile(`drplan-value-(\d+)-x`)

// renderYAML puts each value in its scalar of the probe's checked tree, and writes the YAML again.
func renderYAML(p *probe, ps []piece) (string, error) {
	if err := fill(p.tree, ps); err != nil {
		return "", err
	}
	out, err := yaml.Marshal(p.tree)
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
