package templates

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/lru"
	"github.com/bkbcs/drplan-controller/rules"
)

// TemplateData is what an action's templates see:
//
//	{{ .params.<name> }}  a resolved parameter, typed as declared (string, int or bool)
//	{{ .planName }}       the plan's name
//	{{ .executionName }}  the execution's name
//	{{ .namespace }}      the execution's namespace
//	{{ .timestamp }}      the execution's start time, RFC 3339, the same for every action of a run
//
// and the function toJson, which writes a value as a JSON literal (quotes and escapes included):
// "message": {{ toJson .params.message }}.
type TemplateData struct {
	Params        map[string]any
	PlanName      string
	ExecutionName string
	Namespace     string
	Timestamp     string
}

// templateKeys are the top-level names a template may use, besides params.
var templateKeys = []string{"executionName", "namespace", "params", "planName", "timestamp"}

func (d TemplateData) asMap() map[string]any {
	params := d.Params
	if params == nil {
		params = map[string]any{}
	}
	return map[string]any{
		"params":        params,
		"planName":      d.PlanName,
		"executionName": d.ExecutionName,
		"namespace":     d.Namespace,
		"timestamp":     d.Timestamp,
	}
}

var templateFuncs = template.FuncMap{
	"toJson": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// ParseTemplate parses text as an action template. A missing key is an error when rendered,
// never "<no value>".
func ParseTemplate(text string) (*template.Template, error) {
	return template.New("").Option("missingkey=error").Funcs(templateFuncs).Parse(text)
}

// parsed keeps the templates Render parsed, by text: a run renders the same texts at admission,
// at start and in every execution of the plan. A parsed template is safe to execute at once from
// many goroutines. Texts over maxCachedTemplate bytes are parsed each time, so the cache holds at
// most parsedTemplates × maxCachedTemplate bytes of text.
var parsed = lru.New[string, *template.Template](parsedTemplates)

const (
	parsedTemplates   = 2048
	maxCachedTemplate = 4 << 10
)

// Render renders text with data.
func Render(text string, data TemplateData) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	return render(text, data.asMap())
}

// render renders text with the values of a TemplateData (asMap).
func render(text string, values map[string]any) (string, error) {
	t, ok := parsed.Get(text)
	if !ok {
		var err error
		if t, err = ParseTemplate(text); err != nil {
			return "", err
		}
		// Also here, not only at admission: a workflow stored before the check (or while the
		// webhook was down) must not make the controller loop or recurse.
		if err := referencesOnly(t); err != nil {
			return "", err
		}
		if len(text) <= maxCachedTemplate {
			t = parsed.Add(text, t)
		}
	}
	b := &cappedBuilder{}
	if err := t.Execute(b, values); err != nil {
		return "", err
	}
	return b.String(), nil
}

// MaxRenderedBytes caps what one template renders to.
const MaxRenderedBytes = 256 << 10

// cappedBuilder is a strings.Builder that refuses to grow past MaxRenderedBytes.
type cappedBuilder struct{ strings.Builder }

func (b *cappedBuilder) Write(p []byte) (int, error) {
	if b.Len()+len(p) > MaxRenderedBytes {
		return 0, fmt.Errorf("the rendered text would exceed %d bytes", MaxRenderedBytes)
	}
	return b.Builder.Write(p)
}

// CheckTemplate parses text and checks every name it uses: top-level fields must be one of the
// TemplateData names and .params.<name> must be a declared parameter, each a value (.params alone
// or .planName.x are not). It returns the parse error
// or the first unknown name, with a suggestion where one is near.
func CheckTemplate(text string, declared []string) error {
	if !strings.Contains(text, "{{") {
		return nil
	}
	t, err := ParseTemplate(text)
	if err != nil {
		return fmt.Errorf("template does not parse: %s", strings.TrimPrefix(err.Error(), "template: "))
	}
	if err := referencesOnly(t); err != nil {
		return err
	}
	var found error
	walkFields(t.Root, 0, func(ident []string) {
		if found != nil {
			return
		}
		if !slices.Contains(templateKeys, ident[0]) {
			found = fmt.Errorf("template uses .%s, which does not exist%s (use %s)", ident[0],
				rules.DidYouMean(ident[0], templateKeys), strings.Join(dotted(templateKeys), ", "))
			return
		}
		want := 1 // .planName
		if ident[0] == "params" {
			want = 2 // .params.<name>
		}
		switch {
		case len(ident) != want && ident[0] == "params":
			found = fmt.Errorf("template uses .%s: name one parameter, .params.<name>", strings.Join(ident, "."))
		case len(ident) != want:
			found = fmt.Errorf("template uses .%s: .%s is a value of its own, with no fields", strings.Join(ident, "."), ident[0])
		case ident[0] == "params" && !slices.Contains(declared, ident[1]):
			found = fmt.Errorf("template uses .params.%s, which the workflow does not declare%s", ident[1],
				rules.DidYouMean(ident[1], slices.Sorted(slices.Values(declared))))
		}
	})
	return found
}

// referencesOnly refuses a template that is anything but text, comments and references: a field
// ({{ .params.x }}, {{ .planName }}, ...) or toJson of one ({{ toJson .params.x }}). No other
// action (if, range, with, define, template, block, variables), function or pipe: a template
// cannot loop, recurse or compute, so rendering one costs no more than its text and the values it
// names. The error says where, as line:column in the text.
func referencesOnly(t *template.Template) error {
	for _, n := range t.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode, *parse.CommentNode:
		case *parse.ActionNode:
			if reference(n.Pipe) {
				continue
			}
			return notAReference(t, n)
		default:
			return notAReference(t, n)
		}
	}
	if len(t.Templates()) > 1 {
		return errors.New("template defines templates ({{define}} or {{block}}): a template is text and references only")
	}
	return nil
}

// reference reports whether a pipeline is one field, or toJson of one field.
func reference(p *parse.PipeNode) bool {
	if p == nil || len(p.Decl) > 0 || len(p.Cmds) != 1 {
		return false
	}
	args := p.Cmds[0].Args
	switch {
	case len(args) == 1:
		_, ok := args[0].(*parse.FieldNode)
		return ok
	case len(args) == 2:
		fn, ok := args[0].(*parse.IdentifierNode)
		_, field := args[1].(*parse.FieldNode)
		return ok && fn.Ident == "toJson" && field
	}
	return false
}

func notAReference(t *template.Template, n parse.Node) error {
	at, context := t.ErrorContext(n)
	return fmt.Errorf("template at %s: %q is not a reference: a template may only name a value ({{ .params.x }}, {{ .planName }}, {{ .executionName }}, {{ .namespace }}, {{ .timestamp }}) or write one as JSON ({{ toJson .params.x }}); no if, range, with, define, template, block, variables, pipes or other functions",
		strings.TrimPrefix(at, ":"), context)
}

// walkFields calls fn with the identifiers of every field reference whose dot is the template's
// root data (outside range and with, where dot means something else).
func walkFields(node parse.Node, depth int, fn func(ident []string)) {
	switch n := node.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walkFields(c, depth, fn)
		}
	case *parse.ActionNode:
		walkFields(n.Pipe, depth, fn)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walkFields(c, depth, fn)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walkFields(a, depth, fn)
		}
	case *parse.FieldNode:
		if depth == 0 {
			fn(n.Ident)
		}
	case *parse.ChainNode:
		walkFields(n.Node, depth, fn)
	case *parse.IfNode:
		walkFields(n.Pipe, depth, fn)
		walkFields(n.List, depth, fn)
		walkFields(n.ElseList, depth, fn)
	case *parse.RangeNode:
		walkFields(n.Pipe, depth, fn)
		walkFields(n.List, depth+1, fn)
		walkFields(n.ElseList, depth, fn)
	case *parse.WithNode:
		walkFields(n.Pipe, depth, fn)
		walkFields(n.List, depth+1, fn)
		walkFields(n.ElseList, depth, fn)
	case *parse.TemplateNode:
		walkFields(n.Pipe, depth, fn)
	}
}

func dotted(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "." + n
	}
	return out
}

// RenderBody renders every string of an action body (URL, headers, body, names, manifest, the
// strings of a Job's pod template...) one by one, so that a value is never spliced into JSON or
// YAML syntax by accident. The error names the field.
//
// It walks the typed body (fields in the order of their JSON names, as the JSON tree's walk goes)
// rather than a JSON tree of it: a run renders every action at admission and at start, and the
// round trips through JSON were most of the cost. Raw JSON fields (a Job's pod template) are
// rendered through their tree.
func RenderBody(b drv1.ActionBody, data TemplateData) (drv1.ActionBody, error) {
	if err := checkHeaders(nil, b.HTTP); err != nil {
		return b, err
	}
	out := *b.DeepCopy()
	values := data.asMap()
	// The structured texts and the URL first, each as a whole (values cannot change their
	// structure, structured.go); set aside while every other string renders on its own.
	special := specialFields(nil, &out)
	rendered := make([]string, len(special))
	for i, f := range special {
		r, err := f.render(values)
		if err != nil {
			return b, fmt.Errorf("%s: %w", f.path, err)
		}
		rendered[i], *f.text = r, ""
	}
	err := renderFields(nil, reflect.ValueOf(&out).Elem(), func(p func() *field.Path, s string) (string, error) {
		out, err := render(s, values)
		if err != nil {
			return "", fmt.Errorf("%s: %w", p(), err)
		}
		return out, nil
	})
	if err != nil {
		return b, err
	}
	for i, f := range special {
		*f.text = rendered[i]
	}
	if out.HTTP != nil {
		for _, k := range slices.Sorted(maps.Keys(out.HTTP.Headers)) {
			if strings.ContainsAny(out.HTTP.Headers[k], "\r\n") {
				return b, fmt.Errorf("http.headers.%s: a header value may not hold a line break", k)
			}
		}
	}
	return out, nil
}

// specialField is a string of an action body rendered as a whole: a structured text, a URL, or a
// JSON pointer.
type specialField struct {
	path *field.Path
	text *string
	kind fieldKind
}

type fieldKind int

const (
	kindURL        fieldKind = iota
	kindStructured           // a manifest, an override value or a JSON body (structured.go)
	kindPointer              // an override's path: a value is one segment of the JSON pointer
)

// specialFields are the body's manifest, Clusternet override values, JSON HTTP body and URL, their
// paths under base (nil: the body).
func specialFields(base *field.Path, b *drv1.ActionBody) []specialField {
	at := func(name string, more ...string) *field.Path {
		if base == nil {
			return field.NewPath(name, more...)
		}
		return base.Child(name, more...)
	}
	var out []specialField
	if r := b.Resource; r != nil {
		out = append(out, specialField{at("resource", "manifest"), &r.Manifest, kindStructured})
	}
	if l := b.Localization; l != nil {
		for i := range l.Overrides {
			o := at("localization", "overrides").Index(i)
			out = append(out, specialField{o.Child("value"), &l.Overrides[i].Value, kindStructured},
				specialField{o.Child("path"), &l.Overrides[i].Path, kindPointer})
		}
	}
	if h := b.HTTP; h != nil {
		out = append(out, specialField{at("http", "url"), &h.URL, kindURL})
		if jsonBody(h) {
			out = append(out, specialField{at("http", "body"), &h.Body, kindStructured})
		}
	}
	return out
}

// render renders a special field with values.
func (f specialField) render(values map[string]any) (string, error) {
	switch f.kind {
	case kindStructured:
		return renderStructured(*f.text, values)
	case kindPointer:
		return renderPointer(*f.text, values)
	}
	return renderURL(*f.text, values)
}

// pointerSegment escapes a value as one segment of a JSON pointer (RFC 6901): a "/" in it cannot
// reach another field.
var pointerSegment = strings.NewReplacer("~", "~0", "/", "~1")

// renderPointer renders a JSON pointer, each value escaped as one segment.
func renderPointer(text string, values map[string]any) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	ps, err := pieces(text, values)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	last := 0
	for _, p := range ps {
		v, err := p.text()
		if err != nil {
			return "", err
		}
		b.WriteString(text[last:p.start])
		b.WriteString(pointerSegment.Replace(v))
		last = p.end
	}
	b.WriteString(text[last:])
	return b.String(), nil
}

// checkHeaders refuses what would make how the body renders depend on a value or on chance: a
// Content-Type that is a template (whether the body is JSON is decided before rendering), and two
// headers whose names differ only in case (HTTP does not tell them apart).
func checkHeaders(base *field.Path, h *drv1.HTTPAction) *field.Error {
	if h == nil {
		return nil
	}
	at := field.NewPath("http", "headers")
	if base != nil {
		at = base.Child("http", "headers")
	}
	names := slices.Sorted(maps.Keys(h.Headers))
	for i, k := range names {
		for _, other := range names[i+1:] {
			if strings.EqualFold(k, other) {
				return field.Invalid(at, other, fmt.Sprintf("%s and %s are the same header (HTTP ignores case): set it once", k, other))
			}
		}
		if strings.EqualFold(k, "Content-Type") && strings.Contains(h.Headers[k], "{{") {
			return field.Invalid(at.Key(k), h.Headers[k], "the Content-Type may not be a template: it decides how the body's values are written (as JSON or as text) before they are known")
		}
	}
	return nil
}

// jsonBody reports whether an HTTP action's body is JSON: its Content-Type says so, or it has none
// and the body is a JSON object or list once its templates are values.
func jsonBody(h *drv1.HTTPAction) bool {
	for k, v := range h.Headers {
		if strings.EqualFold(k, "Content-Type") {
			return strings.Contains(strings.ToLower(v), "json")
		}
	}
	body := strings.TrimSpace(h.Body)
	return (strings.HasPrefix(body, "{") || strings.HasPrefix(body, "[")) && !strings.HasPrefix(body, "{{") && IsJSON(body)
}

// renderFields puts fn's result in the place of every string reachable from v (addressable):
// strings, and the strings of structs, pointers, slices, maps and raw JSON, each with the path of
// its JSON field (made only when asked for).
func renderFields(path func() *field.Path, v reflect.Value, fn func(func() *field.Path, string) (string, error)) error {
	switch v.Kind() {
	case reflect.String:
		s := v.String()
		if !strings.Contains(s, "{{") {
			return nil
		}
		out, err := fn(path, s)
		if err == nil {
			v.SetString(out)
		}
		return err
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return renderFields(path, v.Elem(), fn)
	case reflect.Slice:
		for i := range v.Len() {
			if err := renderFields(index(path, i), v.Index(i), fn); err != nil {
				return err
			}
		}
	case reflect.Map:
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			if err := renderFields(child(path, k.String()), e, fn); err != nil {
				return err
			}
			v.SetMapIndex(k, e)
		}
	case reflect.Struct:
		if raw, ok := v.Addr().Interface().(*runtime.RawExtension); ok {
			return renderRaw(path, &raw.Raw, fn)
		}
		for _, f := range jsonFields(v.Type()) {
			if err := renderFields(child(path, f.name), v.Field(f.index), fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// renderRaw renders the strings of raw JSON through its tree.
func renderRaw(path func() *field.Path, raw *[]byte, fn func(func() *field.Path, string) (string, error)) error {
	if len(*raw) == 0 || !bytes.Contains(*raw, []byte("{{")) {
		return nil
	}
	var tree any
	if err := json.Unmarshal(*raw, &tree); err != nil {
		return err
	}
	var at *field.Path
	if path != nil {
		at = path()
	}
	err := eachString(at, tree, func(p *field.Path, s string) (string, error) {
		return fn(func() *field.Path { return p }, s)
	})
	if err != nil {
		return err
	}
	out, err := json.Marshal(tree)
	if err == nil {
		*raw = out
	}
	return err
}

func child(path func() *field.Path, name string) func() *field.Path {
	return func() *field.Path {
		if path == nil {
			return field.NewPath(name)
		}
		return path().Child(name)
	}
}

func index(path func() *field.Path, i int) func() *field.Path {
	return func() *field.Path {
		if path == nil {
			return field.NewPath("").Index(i)
		}
		return path().Index(i)
	}
}

// jsonField is a struct field that JSON encodes: its index and name.
type jsonField struct {
	index int
	name  string
}

var fieldsOf sync.Map // reflect.Type: []jsonField

// jsonFields are the JSON-encoded fields of a struct type, by name.
func jsonFields(t reflect.Type) []jsonField {
	if fs, ok := fieldsOf.Load(t); ok {
		return fs.([]jsonField)
	}
	var fs []jsonField
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fs = append(fs, jsonField{index: i, name: name})
	}
	slices.SortFunc(fs, func(a, b jsonField) int { return strings.Compare(a.name, b.name) })
	fieldsOf.Store(t, fs)
	return fs
}

// CheckBody checks every string of an action body as a template (CheckTemplate), each error at
// the string's field under path; then, when they are sound, the shape of its structured texts
// (CheckStructured).
func CheckBody(path *field.Path, b *drv1.ActionBody, declared []string) field.ErrorList {
	tree, err := bodyTree(b)
	if err != nil {
		return field.ErrorList{field.InternalError(path, err)}
	}
	var errs field.ErrorList
	_ = eachString(path, tree, func(p *field.Path, s string) (string, error) {
		if err := CheckTemplate(s, declared); err != nil {
			errs = append(errs, field.Invalid(p, s, err.Error()))
		}
		return s, nil
	})
	if len(errs) > 0 {
		return errs
	}
	if err := checkHeaders(path, b.HTTP); err != nil {
		return field.ErrorList{err}
	}
	for _, f := range specialFields(path, b) {
		if f.kind == kindStructured {
			if err := CheckStructured(*f.text); err != nil {
				// Not quoted: a manifest may hold a Secret's data.
				at := f.path.String()
				errs = append(errs, field.Invalid(f.path, "<"+at[strings.LastIndexByte(at, '.')+1:]+">", err.Error()))
			}
		}
	}
	return errs
}

// bodyTree is an action body as a JSON tree: what eachString walks.
func bodyTree(b *drv1.ActionBody) (any, error) {
	raw, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return nil, err
	}
	return tree, nil
}

// eachString calls fn with the field path (under path) and the text of every string of a JSON
// tree (an action body's: its root is an object), object keys in sorted order, and puts what fn
// returns in the string's place; it stops at fn's first error. A string fn returns unchanged is
// left as it is (not boxed again).
func eachString(path *field.Path, v any, fn func(*field.Path, string) (string, error)) error {
	switch v := v.(type) {
	case []any:
		for i, x := range v {
			if s, ok := x.(string); ok {
				out, err := fn(path.Index(i), s)
				if err != nil {
					return err
				}
				if out != s {
					v[i] = out
				}
			} else if err := eachString(path.Index(i), x, fn); err != nil {
				return err
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if s, ok := v[k].(string); ok {
				out, err := fn(path.Child(k), s)
				if err != nil {
					return err
				}
				if out != s {
					v[k] = out
				}
			} else if err := eachString(path.Child(k), v[k], fn); err != nil {
				return err
			}
		}
	}
	return nil
}
