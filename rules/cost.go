package rules

import (
	"fmt"
	"math"
	"strings"

	"github.com/google/cel-go/checker"
	celast "github.com/google/cel-go/common/ast"
	"k8s.io/apiserver/pkg/cel/library"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// What the compile-time cost estimate assumes of the variables: the largest value each may hold,
// in characters for a string and entries for a list or map. The variables are maps of dyn, so a
// value found under a path is bounded by one number whatever its kind. Where the schema or the
// controller bounds a value, that bound is used; where nothing does (the object a waitFor watches,
// a parameter read from a Secret), the bound is stated here and in docs/rules.md, and a bigger
// value is still evaluated under CostLimit and EvalTimeout.
const (
	// sizeName is a Kubernetes object name (253, the CRDs' maxLength on references).
	sizeName = 253
	// sizeParam is a parameter's value: a plan's, an execution's or a default (values read from
	// Secrets may be longer).
	sizeParam = drv1.MaxParamValue
	// sizeParams is how many parameters a workflow declares or a plan sets (the schema's maxItems).
	sizeParams = 256
	// sizeStages is how many stages a plan has, and how many a stage depends on (maxItems).
	sizeStages = 100
	// sizeActions is how many actions a workflow has (maxItems).
	sizeActions = 200
	// sizePhase is a step's phase (Cancelled is the longest).
	sizePhase = 16
	// sizeMessage is a step's status message (the controller truncates them to 1 KiB).
	sizeMessage = 1024
	// sizeRecordedBody is an HTTP body kept in outputs (1 KiB and the truncation mark).
	sizeRecordedBody = 1024 + 16
	// sizeBody is an HTTP response body and any string or list parsed from it (64 KiB read).
	sizeBody = 64 << 10
	// sizeHeaders bounds a response's headers (1 MiB read, at least 4 bytes a header) and a
	// header's value.
	sizeHeaders, sizeHeader = (1 << 20) / 4, 1 << 20
	// sizeObject is a stated bound on any string, list or map of the object a waitFor watches:
	// the maxLength of a condition's message, far more entries than a list of an object has.
	sizeObject = 32 << 10
	// sizeComputed is a stated bound on a value the expression computes and whose size the
	// estimate cannot derive: an element of a list made by map or filter, a conversion.
	sizeComputed = 32 << 10
)

// sizes are the bounds by path: first as cel-go writes it ("@keys" the keys of a map, "@values"
// its values, "@items" the items of a list), then with "*" for any entry (keys and values of a
// dyn are not told apart), then as the longest listed prefix followed by "**".
var sizes = map[string]uint64{
	VarParams:                 sizeParams,
	VarParams + ".**":         sizeParam,
	VarStage + ".name":        63,
	VarStage + ".dependsOn":   sizeStages,
	VarStage + ".dependsOn.*": 63,
	VarStages:                 sizeStages,
	VarStages + ".@keys":      63,
	VarStages + ".*.phase":    sizePhase,
	VarStages + ".**":         sizeMessage,
	VarActions:                sizeActions,
	VarActions + ".@keys":     128,
	VarActions + ".*.phase":   sizePhase,
	VarActions + ".*.outputs.httpResponse.body": sizeRecordedBody,
	VarActions + ".**":                          sizeMessage,
	VarPlan + ".**":                             sizeName,
	VarExecution + ".**":                        sizeName,
	VarWorkflow + ".**":                         sizeName,
	VarLockHolder + ".**":                       sizeName,
	VarTarget + ".**":                           sizeName,
	VarOperation:                                sizePhase,
	VarResponse:                                 4,
	VarResponse + ".headers":                    sizeHeaders,
	VarResponse + ".headers.*":                  sizeHeader,
	VarResponse + ".**":                         sizeBody,
	VarObject:                                   sizeObject,
	VarObject + ".**":                           sizeObject,
}

// estimator answers the estimate's questions: the size of a variable from sizes, the cost of
// a Kubernetes library function as the API server prices it. A value whose size cel-go cannot
// derive (an element of a list made by map or filter, a conversion) is taken as large as the
// largest value seen so far in the expression, and at least sizeComputed.
type estimator struct {
	library *library.CostEstimator
	largest uint64
}

func newEstimator() *estimator {
	e := &estimator{largest: sizeComputed}
	e.library = &library.CostEstimator{SizeEstimator: e}
	return e
}

func (e *estimator) EstimateSize(node checker.AstNode) *checker.SizeEstimate {
	n := e.bound(node.Path())
	e.largest = max(e.largest, n)
	return &checker.SizeEstimate{Max: n}
}

func (e *estimator) bound(path []string) uint64 {
	if len(path) == 0 {
		return e.largest
	}
	if n, ok := sizes[strings.Join(path, ".")]; ok {
		return n
	}
	parts := make([]string, len(path))
	for i, p := range path {
		parts[i] = p
		if strings.HasPrefix(p, "@") { // @items, @values, @keys, @indices
			parts[i] = "*"
		}
	}
	if n, ok := sizes[strings.Join(parts, ".")]; ok {
		return n
	}
	for i := len(parts) - 1; i > 0; i-- {
		if n, ok := sizes[strings.Join(parts[:i], ".")+".**"]; ok {
			return n
		}
	}
	return e.largest
}

func (e *estimator) EstimateCallCost(function, overload string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	nodes := args
	if target != nil {
		nodes = append(nodes[:len(nodes):len(nodes)], *target)
	}
	for _, a := range nodes {
		if sz := a.ComputedSize(); sz != nil && sz.Max != math.MaxUint64 {
			e.largest = max(e.largest, sz.Max)
		}
	}
	est := e.library.EstimateCallCost(function, overload, target, args)
	if function == "replace" && target != nil && len(args) >= 2 {
		est = replaceCost(*target, args[1])
	}
	if est != nil && est.ResultSize != nil && est.ResultSize.Max != math.MaxUint64 {
		e.largest = max(e.largest, est.ResultSize.Max)
	}
	return est
}

// replaceCost is replace's worst case: every character of the target replaced, and the result
// built, which costs as much as traversing it (boundedReplace refuses at run time a result over
// MaxBuiltString, whatever the estimate assumed).
func replaceCost(target, repl checker.AstNode) *checker.CallEstimate {
	size := func(n checker.AstNode) uint64 {
		if sz := n.ComputedSize(); sz != nil {
			return sz.Max
		}
		return math.MaxUint64
	}
	t, r := size(target), size(repl)
	result := uint64(math.MaxUint64)
	if t < math.MaxUint32 && r < math.MaxUint32 {
		result = t + (t+1)*r
	}
	cost := result / 10 // the API server's cost of a character traversed, as for other strings
	if result == math.MaxUint64 {
		cost = result
	}
	return &checker.CallEstimate{CostEstimate: checker.CostEstimate{Min: 1, Max: cost}, ResultSize: &checker.SizeEstimate{Min: 0, Max: result}}
}

// costTracker counts the Kubernetes library functions at run time as the estimate does.
var costTracker = &library.CostEstimator{}

// checkCost refuses a checked expression whose estimated worst case exceeds CostLimit, saying by
// how much and where: the part that costs most, with its position.
func checkCost(checked *celast.AST, source string) error {
	total := estimate(checked, checked.Expr())
	if total <= CostLimit {
		return nil
	}
	part := costliest(checked, checked.Expr())
	text, start := snippet(checked, part, source)
	loc := checked.SourceInfo().GetLocationByOffset(start)
	where := fmt.Sprintf("at %d:%d", loc.Line(), loc.Column()+1)
	if part.ID() != checked.Expr().ID() {
		where = fmt.Sprintf("most of it in %q at %d:%d (estimated cost %d)", text, loc.Line(), loc.Column()+1, estimate(checked, part))
	}
	return fmt.Errorf("estimated cost %d exceeds the limit %d, %s: lists, maps and strings are assumed as large as docs/rules.md says",
		total, CostLimit, where)
}

// estimate is the worst-case cost of e, a part of checked (a part keeps its ids, and so its
// types and sizes).
func estimate(checked *celast.AST, e celast.Expr) uint64 {
	part := celast.NewCheckedAST(celast.NewAST(e, checked.SourceInfo()), checked.TypeMap(), checked.ReferenceMap())
	cost, err := checker.Cost(part, newEstimator())
	if err != nil {
		return ^uint64(0)
	}
	return cost.Max
}

// costliest descends from e into the one part that alone exceeds CostLimit, as long as there is
// one; a comprehension's loop is not separated from it (its variables are bound by it).
func costliest(checked *celast.AST, e celast.Expr) celast.Expr {
	for {
		next := e
		for _, child := range parts(e) {
			if estimate(checked, child) > CostLimit {
				next = child
				break
			}
		}
		if next == e {
			return e
		}
		e = next
	}
}

// parts are the subexpressions of e that are expressions of their own.
func parts(e celast.Expr) []celast.Expr {
	switch e.Kind() {
	case celast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			return append([]celast.Expr{c.Target()}, c.Args()...)
		}
		return c.Args()
	case celast.SelectKind:
		return []celast.Expr{e.AsSelect().Operand()}
	case celast.ListKind:
		return e.AsList().Elements()
	case celast.ComprehensionKind:
		return []celast.Expr{e.AsComprehension().IterRange()}
	}
	return nil
}

// snippet is the source text of e, from the first character of its parts to the last and the
// parentheses that close it, and the offset where it starts.
func snippet(checked *celast.AST, e celast.Expr, source string) (string, int32) {
	ranges := checked.SourceInfo().OffsetRanges()
	text := []rune(source)
	start, stop := int32(len(text)), int32(0)
	celast.PostOrderVisit(e, celast.NewExprVisitor(func(x celast.Expr) {
		if r, ok := ranges[x.ID()]; ok {
			start, stop = min(start, r.Start), max(stop, r.Stop)
		}
	}))
	if start >= stop || int(stop) > len(text) {
		return source, 0
	}
	open := strings.Count(string(text[start:stop]), "(") - strings.Count(string(text[start:stop]), ")")
	for ; open > 0 && int(stop) < len(text); stop++ {
		if text[stop] == ')' {
			open--
		}
	}
	return string(text[start:stop]), start
}
