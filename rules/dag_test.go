package rules_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/bkbcs/drplan-controller/rules"
)

func n(name string, deps ...string) rules.Node { return rules.Node{Name: name, DependsOn: deps} }

func TestDAGOrders(t *testing.T) {
	tests := []struct {
		name    string
		nodes   []rules.Node
		topo    []string
		reverse []string
	}{{
		// a
		name:    "single",
		nodes:   []rules.Node{n("a")},
		topo:    []string{"a"},
		reverse: []string{"a"},
	}, {
		// notify-start -> infrastructure -> applications -> validation -> notify-complete
		name: "guide scenario 2 chain",
		nodes: []rules.Node{
			n("notify-start"), n("infrastructure", "notify-start"), n("applications", "infrastructure"),
			n("validation", "applications"), n("notify-complete", "validation"),
		},
		topo:    []string{"notify-start", "infrastructure", "applications", "validation", "notify-complete"},
		reverse: []string{"notify-complete", "validation", "applications", "infrastructure", "notify-start"},
	}, {
		//      a
		//     / \
		//    b   c
		//     \ /
		//      d
		name:    "diamond",
		nodes:   []rules.Node{n("a"), n("b", "a"), n("c", "a"), n("d", "b", "c")},
		topo:    []string{"a", "b", "c", "d"},
		reverse: []string{"d", "c", "b", "a"},
	}, {
		// declared out of order: d depends on a stage declared after it
		//   x   a -> d
		name:    "declaration order breaks ties",
		nodes:   []rules.Node{n("d", "a"), n("x"), n("a")},
		topo:    []string{"x", "a", "d"},
		reverse: []string{"d", "a", "x"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, errs := rules.NewDAG(field.NewPath("spec", "stages"), tc.nodes)
			require.Empty(t, errs)
			assert.Equal(t, tc.topo, g.TopologicalOrder())
			assert.Equal(t, tc.reverse, g.ReverseTopologicalOrder())
			r := g.Reverse()
			assert.Equal(t, tc.reverse, r.TopologicalOrder(), "the reverse graph's order")
			assert.Equal(t, tc.topo, r.ReverseTopologicalOrder())
			for _, nd := range tc.nodes {
				assert.Equal(t, g.Dependents(nd.Name), r.DependsOn(nd.Name), "%s depends on its dependents", nd.Name)
				assert.Equal(t, g.DependsOn(nd.Name), r.Dependents(nd.Name), nd.Name)
			}
		})
	}
}

func TestDAGErrors(t *testing.T) {
	tests := []struct {
		name  string
		nodes []rules.Node
		want  []string
	}{{
		name:  "duplicate stage",
		nodes: []rules.Node{n("a"), n("a")},
		want:  []string{`spec.stages[1].name: Duplicate value: "a"`},
	}, {
		name:  "unknown dependency with suggestion",
		nodes: []rules.Node{n("infrastructure"), n("applications", "infrastructure"), n("validation", "aplications")},
		want:  []string{`spec.stages[2].dependsOn[0]: Invalid value: "aplications": unknown stage "aplications" (did you mean "applications"?)`},
	}, {
		name:  "unknown dependency without a near name",
		nodes: []rules.Node{n("a", "zzzzzz")},
		want:  []string{`spec.stages[0].dependsOn[0]: Invalid value: "zzzzzz": unknown stage "zzzzzz"`},
	}, {
		name:  "self dependency",
		nodes: []rules.Node{n("a", "a")},
		want:  []string{`spec.stages[0].dependsOn[0]: Invalid value: "a": a stage cannot depend on itself`},
	}, {
		// a -> b -> c -> a
		name:  "three-stage cycle printed whole",
		nodes: []rules.Node{n("a", "c"), n("b", "a"), n("c", "b")},
		want:  []string{`spec.stages[0].dependsOn: Invalid value: ["c"]: dependency cycle: a -> b -> c -> a`},
	}, {
		// ok -> x <-> y
		name:  "cycle behind a valid stage",
		nodes: []rules.Node{n("ok"), n("x", "ok", "y"), n("y", "x")},
		want:  []string{`spec.stages[1].dependsOn: Invalid value: ["ok","y"]: dependency cycle: x -> y -> x`},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, errs := rules.NewDAG(field.NewPath("spec", "stages"), tc.nodes)
			assert.Nil(t, g)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestDAGDependents(t *testing.T) {
	//   a -> b, a -> c
	g, errs := rules.NewDAG(field.NewPath("spec", "stages"), []rules.Node{n("a"), n("b", "a"), n("c", "a")})
	require.Empty(t, errs)
	assert.Equal(t, []string{"b", "c"}, g.Dependents("a"))
	assert.Equal(t, []string{"a"}, g.DependsOn("c"))
}

// TestDAGScale builds 500 stages, each depending on up to three earlier ones, and one long chain.
func TestDAGScale(t *testing.T) {
	var nodes []rules.Node
	for i := range 500 {
		var deps []string
		for _, back := range []int{1, 7, 31} {
			if i-back >= 0 {
				deps = append(deps, fmt.Sprintf("s%d", i-back))
			}
		}
		nodes = append(nodes, n(fmt.Sprintf("s%d", i), deps...))
	}
	g, errs := rules.NewDAG(field.NewPath("spec", "stages"), nodes)
	require.Empty(t, errs)
	pos := map[string]int{}
	for i, s := range g.TopologicalOrder() {
		pos[s] = i
	}
	for _, nd := range nodes {
		for _, d := range nd.DependsOn {
			assert.Less(t, pos[d], pos[nd.Name])
		}
	}
	// close the chain into a cycle: s0 depends on s499
	nodes[0].DependsOn = []string{"s499"}
	_, errs = rules.NewDAG(field.NewPath("spec", "stages"), nodes)
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].Error(), "dependency cycle: s0 -> ")
}

func TestNearest(t *testing.T) {
	tests := []struct {
		name       string
		candidates []string
		want       string
	}{
		{"aplications", []string{"infrastructure", "applications"}, "applications"},
		{"valdation", []string{"validation"}, "validation"},
		{"frist", []string{"first", "second"}, "first"},
		{"x", []string{"y"}, "y"},
		{"database", []string{"frontend"}, ""},
		{"a", nil, ""},
		{strings.Repeat("a", 129), []string{strings.Repeat("a", 128)}, ""},                     // too long to compare: no suggestion
		{"applications", []string{strings.Repeat("x", 10000), "applicatoins"}, "applicatoins"}, // a huge candidate is skipped
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, rules.Nearest(tc.name, tc.candidates), tc.name)
	}
}
