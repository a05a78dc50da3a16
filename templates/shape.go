package templates

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// The shape of a structured text with templates (structured.go) is checked before any value goes
// in, the same way at admission (CheckBody) and when rendering: a value may only stand where a
// value goes, and the text may hold nothing that copies or multiplies structure. Refused:
//
//   - a template in a mapping key (YAML) or an object key (JSON): a value would choose the field;
//   - YAML anchors (&a), aliases (*a) and merge keys (<<): an alias copies structure elsewhere,
//     and nested aliases expand exponentially ("billion laughs");
//   - explicit YAML tags other than !!str, !!int, !!float, !!bool and !!null;
//   - a second YAML document (a manifest or a value is one; empty documents are skipped);
//   - a key written twice in one mapping or object (parsers disagree on which one wins);
//   - nesting deeper than MaxNesting mappings and lists, and a text over MaxRenderedBytes.

// MaxNesting is how deep the mappings and lists of a structured text with templates may nest.
const MaxNesting = 100

// probe is a structured text with a stand-in for each of its templates, and where each stand-in
// is, so that a position in it is a position in the author's text.
type probe struct {
	src  string     // the author's text
	ps   []piece    // its templates
	text string     // the text with stand-ins
	at   [][2]int   // where piece i's stand-in is in text
	tree *yaml.Node // a YAML text's parsed and checked tree
	deep string     // a JSON text's first place nested deeper than MaxNesting ("line:column")
}

// orig is the offset in the author's text of offset off in the probe's: a stand-in is where its
// template starts.
func (p *probe) orig(off int) int {
	i, _ := slices.BinarySearchFunc(p.at, off, func(s [2]int, o int) int { return s[0] - o })
	if i < len(p.at) && p.at[i][0] == off {
		return p.ps[i].start
	}
	if i--; i < 0 {
		return off
	}
	if off < p.at[i][1] {
		return p.ps[i].start
	}
	return p.ps[i].end + off - p.at[i][1]
}

// pos is "line:column" (from 1) in the author's text of offset off in the probe's.
func (p *probe) pos(off int) string { return lineColumn(p.src, p.orig(off)) }

// lineColumn is "line:column" (from 1, the column in characters) of offset o of s.
func lineColumn(s string, o int) string {
	o = min(max(o, 0), len(s))
	line := 1 + strings.Count(s[:o], "\n")
	col := 1 + utf8.RuneCountInString(s[strings.LastIndexByte(s[:o], '\n')+1:o])
	return strconv.Itoa(line) + ":" + strconv.Itoa(col)
}

// yamlPos is pos of a YAML node's line and column (from 1, the column in characters).
func (p *probe) yamlPos(n *yaml.Node) string {
	off := 0
	for l := 1; l < n.Line; l++ {
		i := strings.IndexByte(p.text[off:], '\n')
		if i < 0 {
			break
		}
		off += i + 1
	}
	for c := 1; c < n.Column && off < len(p.text); c++ {
		_, size := utf8.DecodeRuneInString(p.text[off:])
		off += size
	}
	return p.pos(off)
}

// template names piece i for an error: where it is and its text.
func (p *probe) template(i int) string {
	return fmt.Sprintf("template at %s (%q)", p.pos(p.at[i][0]), p.src[p.ps[i].start:p.ps[i].end])
}

// yamlProbe puts placeholder(i) in the place of each template of a YAML text.
func yamlProbe(text string, ps []piece) (*probe, error) {
	if strings.Contains(text, "drplan-value-") {
		return nil, fmt.Errorf("the text holds drplan-value-, which rendering reserves")
	}
	p := &probe{src: text, ps: ps, at: make([][2]int, len(ps))}
	var b strings.Builder
	last := 0
	for i, pc := range ps {
		b.WriteString(text[last:pc.start])
		p.at[i][0] = b.Len()
		b.WriteString(placeholder(i))
		p.at[i][1] = b.Len()
		last = pc.end
	}
	b.WriteString(text[last:])
	p.text = b.String()
	return p, nil
}

// parseYAML parses the probe's one document (empty ones aside).
func (p *probe) parseYAML() (*yaml.Node, error) {
	dec := yaml.NewDecoder(strings.NewReader(p.text))
	var doc *yaml.Node
	for {
		var d yaml.Node
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("does not parse as YAML with its templates as values: %w", err)
		}
		switch {
		case doc == nil:
			doc = &d
		case emptyDocument(&d):
		case emptyDocument(doc):
			doc = &d
		default:
			return nil, fmt.Errorf("a second YAML document at %s: one is expected (write one action per object)", p.yamlPos(&d))
		}
	}
	if doc == nil {
		return &yaml.Node{}, nil
	}
	return doc, nil
}

// emptyDocument reports whether a document holds nothing but comments.
func emptyDocument(d *yaml.Node) bool {
	return len(d.Content) == 1 && d.Content[0].Kind == yaml.ScalarNode && d.Content[0].Tag == "!!null" && d.Content[0].Value == ""
}

// standardTags are the explicit YAML tags a templated text may use.
var standardTags = []string{"!!str", "!!int", "!!float", "!!bool", "!!null"}

// checkYAML refuses what a structured YAML text may not hold (above) in the tree of n, at depth
// levels of mappings and lists; key says that n is (inside) a mapping key.
func (p *probe) checkYAML(n *yaml.Node, depth int, key bool) error {
	const forbidden = "anchors, aliases and merge keys are not allowed in a manifest, an override or a JSON body with templates: write the structure out"
	switch {
	case n.Kind == yaml.AliasNode:
		return fmt.Errorf("alias *%s at %s: %s", n.Value, p.yamlPos(n), forbidden)
	case n.Anchor != "":
		return fmt.Errorf("anchor &%s at %s: %s", n.Anchor, p.yamlPos(n), forbidden)
	case n.Style&yaml.TaggedStyle != 0 && (n.Kind != yaml.ScalarNode || !slices.Contains(standardTags, n.Tag)):
		return fmt.Errorf("tag %s at %s: only the tags %s are allowed in a text with templates", n.Tag, p.yamlPos(n), strings.Join(standardTags, ", "))
	case key && n.Kind == yaml.ScalarNode:
		if m := placeholders.FindStringSubmatch(n.Value); m != nil {
			i, _ := strconv.Atoi(m[1])
			return fmt.Errorf("%s is in a mapping key: a value may not choose a field; write the key and put the template in its value", p.template(i))
		}
	case n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode:
		if depth++; depth > MaxNesting {
			return nestingError(p.yamlPos(n))
		}
	}
	if n.Kind != yaml.MappingNode {
		for _, c := range n.Content {
			if err := p.checkYAML(c, depth, key); err != nil {
				return err
			}
		}
		return nil
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			return fmt.Errorf("merge key << at %s: %s", p.yamlPos(k), forbidden)
		}
		if err := p.checkYAML(k, depth, true); err != nil {
			return err
		}
		if k.Kind == yaml.ScalarNode {
			if seen[k.Value] {
				return fmt.Errorf("the key %q at %s is written twice in one mapping", k.Value, p.yamlPos(k))
			}
			seen[k.Value] = true
		}
		if err := p.checkYAML(n.Content[i+1], depth, key); err != nil {
			return err
		}
	}
	return nil
}

// errNotJSON: the text is not JSON with its templates as values.
var errNotJSON = errors.New("not JSON once rendered (the templates are values: put one where a value goes)")

// spliceJSON puts put(i, inString) in the place of each template of a JSON text, inString saying
// whether it stands inside a string, and records where each went and where the text first nests
// deeper than MaxNesting.
func spliceJSON(text string, ps []piece, put func(i int, inString bool) (string, error)) (*probe, error) {
	p := &probe{src: text, ps: ps, at: make([][2]int, len(ps))}
	var b strings.Builder
	inString, escaped, last, next, depth := false, false, 0, 0, 0
	for i := 0; i < len(text); i++ {
		if next < len(ps) && i == ps[next].start {
			b.WriteString(text[last:i])
			s, err := put(next, inString)
			if err != nil {
				return nil, err
			}
			p.at[next] = [2]int{b.Len(), b.Len() + len(s)}
			b.WriteString(s)
			last, i, next = ps[next].end, ps[next].end-1, next+1
			continue
		}
		switch c := text[i]; {
		case escaped:
			escaped = false
		case inString:
			escaped, inString = c == '\\', c != '"'
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth == MaxNesting+1 && p.deep == "" {
				p.deep = lineColumn(text, i)
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	b.WriteString(text[last:])
	p.text = b.String()
	return p, nil
}

// jsonProbe is the text with placeholder(i) for each template, as a string of its own outside a
// string (so a template there must be a whole value: `{"n": -{{ .params.n }}}` is not JSON):
// errNotJSON when that is not JSON, and an error when it is JSON nested deeper than MaxNesting
// (encoding/json itself stops at 10,000). deep is where the text, read as JSON, first nests deeper
// than MaxNesting ("" if it does not).
func jsonProbe(text string, ps []piece) (p *probe, deep string, err error) {
	p, err = spliceJSON(text, ps, func(i int, inString bool) (string, error) {
		if inString {
			return placeholder(i), nil
		}
		return `"` + placeholder(i) + `"`, nil
	})
	switch {
	case err != nil:
		return nil, "", err
	case !json.Valid([]byte(p.text)):
		return nil, p.deep, errNotJSON
	case p.deep != "":
		return nil, p.deep, nestingError(p.deep)
	}
	return p, "", nil
}

func nestingError(at string) error {
	return fmt.Errorf("nested more than %d levels deep (mappings, objects or lists) at %s", MaxNesting, at)
}

// checkJSON refuses a template in an object key and a key written twice in one object.
func (p *probe) checkJSON() error {
	if strings.Contains(p.src, "drplan-value-") {
		return fmt.Errorf("the text holds drplan-value-, which rendering reserves")
	}
	type object struct {
		keys    map[string]bool
		wantKey bool
	}
	var stack []*object // nil for a list
	dec := json.NewDecoder(strings.NewReader(p.text))
	for {
		off := int(dec.InputOffset())
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return errNotJSON
		}
		var top *object
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &object{keys: map[string]bool{}, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, nil)
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		default:
			if top != nil && top.wantKey {
				if err := p.jsonKey(top.keys, tok.(string), off); err != nil {
					return err
				}
				top.wantKey = false
				continue
			}
		}
		if len(stack) > 0 && stack[len(stack)-1] != nil {
			stack[len(stack)-1].wantKey = true
		}
	}
}

// jsonKey checks an object's key, read after offset off of the probe.
func (p *probe) jsonKey(keys map[string]bool, k string, off int) error {
	if m := placeholders.FindStringSubmatch(k); m != nil {
		i, _ := strconv.Atoi(m[1])
		return fmt.Errorf("%s is in an object key: a value may not choose a field; write the key and put the template in its value", p.template(i))
	}
	for off < len(p.text) && strings.IndexByte(" \t\r\n,{", p.text[off]) >= 0 {
		off++
	}
	if keys[k] {
		return fmt.Errorf("the key %q at %s is written twice in one object", k, p.pos(off))
	}
	keys[k] = true
	return nil
}
