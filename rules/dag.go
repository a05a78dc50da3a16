package rules

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// Node is what the graph needs to know of a stage: its name and the names it depends on.
type Node struct {
	Name      string
	DependsOn []string
}

// DAG is a validated dependency graph of stages. Every order it returns is deterministic: ties
// are broken by declaration order.
type DAG struct {
	names      []string       // declaration order
	index      map[string]int // name -> declaration index
	deps       map[string][]string
	dependents map[string][]string
	topo       []string
}

// NewDAG validates nodes and builds their graph. Errors carry field paths below path (the stages
// list): duplicate names, unknown dependencies (with the nearest known name), self-dependencies
// and cycles (with the whole cycle spelled out).
func NewDAG(path *field.Path, nodes []Node) (*DAG, field.ErrorList) {
	var errs field.ErrorList
	g := &DAG{
		index:      make(map[string]int, len(nodes)),
		deps:       make(map[string][]string, len(nodes)),
		dependents: make(map[string][]string, len(nodes)),
	}
	for i, n := range nodes {
		if _, dup := g.index[n.Name]; dup {
			errs = append(errs, field.Duplicate(path.Index(i).Child("name"), n.Name))
			continue
		}
		g.index[n.Name] = i
		g.names = append(g.names, n.Name)
	}
	for i, n := range nodes {
		if g.index[n.Name] != i {
			continue // a duplicate, reported above
		}
		seen := map[string]bool{}
		for j, d := range n.DependsOn {
			p := path.Index(i).Child("dependsOn").Index(j)
			switch _, known := g.index[d]; {
			case d == n.Name:
				errs = append(errs, field.Invalid(p, d, "a stage cannot depend on itself"))
			case !known:
				errs = append(errs, field.Invalid(p, d, unknownStage(d, g.names)))
			case seen[d]:
				// listType=set makes the API server refuse this; tolerate it for offline use.
			default:
				seen[d] = true
				g.deps[n.Name] = append(g.deps[n.Name], d)
				g.dependents[d] = append(g.dependents[d], n.Name)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if cycle := g.findCycle(); cycle != nil {
		first := cycle[0]
		return nil, field.ErrorList{field.Invalid(path.Index(g.index[first]).Child("dependsOn"),
			g.deps[first], "dependency cycle: "+strings.Join(cycle, " -> "))}
	}
	g.topo = g.kahn()
	return g, nil
}

// StageDAG validates a plan's stages and builds their graph (see NewDAG): the one place a stage
// becomes a node.
func StageDAG(path *field.Path, stages []drv1.Stage) (*DAG, field.ErrorList) {
	nodes := make([]Node, len(stages))
	for i, s := range stages {
		nodes[i] = Node{Name: s.Name, DependsOn: s.DependsOn}
	}
	return NewDAG(path, nodes)
}

func unknownStage(name string, known []string) string {
	return fmt.Sprintf("unknown stage %q", name) + DidYouMean(name, known)
}

// DidYouMean returns ` (did you mean "x"?)` for the known name nearest to name, or "".
func DidYouMean(name string, known []string) string {
	if s := Nearest(name, known); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}

// findCycle returns a cycle as a path that starts and ends with the same stage, or nil. The search
// starts from stages in declaration order, so the reported cycle is deterministic.
func (g *DAG) findCycle() []string {
	const (
		unvisited = iota
		onStack
		done
	)
	state := make(map[string]int, len(g.names))
	var stack []string
	var visit func(n string) []string
	visit = func(n string) []string {
		state[n] = onStack
		stack = append(stack, n)
		for _, d := range g.deps[n] {
			switch state[d] {
			case onStack:
				for i, s := range stack {
					if s == d {
						return append(append([]string{}, stack[i:]...), d)
					}
				}
			case unvisited:
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		return nil
	}
	for _, n := range g.names {
		if state[n] == unvisited {
			if c := visit(n); c != nil {
				// The walk follows dependsOn edges; print the cycle in execution order instead.
				for i, j := 0, len(c)-1; i < j; i, j = i+1, j-1 {
					c[i], c[j] = c[j], c[i]
				}
				return c
			}
		}
	}
	return nil
}

// kahn orders stages so that every stage comes after its dependencies; among stages that are
// ready together, declaration order wins.
func (g *DAG) kahn() []string {
	indegree := make(map[string]int, len(g.names))
	for _, n := range g.names {
		indegree[n] = len(g.deps[n])
	}
	out := make([]string, 0, len(g.names))
	done := make(map[string]bool, len(g.names))
	for len(out) < len(g.names) {
		for _, n := range g.names { // lowest declaration index first
			if !done[n] && indegree[n] == 0 {
				done[n] = true
				out = append(out, n)
				for _, m := range g.dependents[n] {
					indegree[m]--
				}
				break
			}
		}
	}
	return out
}

// TopologicalOrder lists every stage after all of its dependencies.
func (g *DAG) TopologicalOrder() []string { return append([]string(nil), g.topo...) }

// ReverseTopologicalOrder lists every stage after all stages that depend on it: the order Revert
// undoes them in.
func (g *DAG) ReverseTopologicalOrder() []string {
	out := g.TopologicalOrder()
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// Reverse is the graph with every edge turned around: each stage depends on the stages that
// depended on it. Its topological order is ReverseTopologicalOrder: the order a Revert undoes the
// stages in.
func (g *DAG) Reverse() *DAG {
	order := g.ReverseTopologicalOrder()
	r := &DAG{
		names:      order,
		index:      make(map[string]int, len(order)),
		deps:       make(map[string][]string, len(order)),
		dependents: make(map[string][]string, len(order)),
		topo:       append([]string(nil), order...),
	}
	for i, name := range order {
		r.index[name] = i
		r.deps[name] = g.Dependents(name)
		r.dependents[name] = g.DependsOn(name)
	}
	return r
}

// DependsOn lists the stages name depends on, in declaration order of its dependsOn.
func (g *DAG) DependsOn(name string) []string { return append([]string(nil), g.deps[name]...) }

// Dependents lists the stages that depend on name, in declaration order.
func (g *DAG) Dependents(name string) []string {
	return append([]string(nil), g.dependents[name]...)
}

// Nearest returns the candidate closest to name by edit distance, if it is close enough to be a
// likely typo (at most a third of the name's length, and at least 1 edit allowed), else "".
func Nearest(name string, candidates []string) string {
	if len(name) > maxSuggestLength {
		return "" // a suggestion costs length x length per candidate: only for names of sane size
	}
	best, bestDist := "", -1
	for i, c := range candidates {
		if i == maxSuggestCandidates {
			break
		}
		if len(c) > maxSuggestLength {
			continue
		}
		d := editDistance(name, c)
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	limit := max(1, len([]rune(name))/3)
	if bestDist < 0 || bestDist > limit {
		return ""
	}
	return best
}

// Bounds of a "did you mean" suggestion: names up to maxSuggestLength bytes, among the first
// maxSuggestCandidates candidates. User input of any length costs at most
// maxSuggestCandidates x maxSuggestLength² steps.
const (
	maxSuggestLength     = 128
	maxSuggestCandidates = 1000
)

// editDistance is the optimal-string-alignment distance: insertions, deletions, substitutions
// and transpositions of neighbours ("frist" -> "first") each cost one.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
