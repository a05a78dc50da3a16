package rules_test

import (
	"testing"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// FuzzCompileGuard: any guard a workflow could hold compiles or is refused, without panicking.
func FuzzCompileGuard(f *testing.F) {
	for _, s := range []string{"params.replicas >= 2", "stages['a'].phase == 'Succeeded'", "[1,2].map(x, [x,x].map(y, y))", "'a' * 1000000", "("} {
		f.Add(s)
	}
	env, err := rules.NewEnv(rules.Options{})
	if err != nil {
		f.Fatal(err)
	}
	declared := []drv1.Parameter{{Name: "replicas", Type: drv1.ParameterTypeInt}, {Name: "region"}}
	f.Fuzz(func(t *testing.T, expr string) {
		_, _ = env.CompileGuard(expr, declared)
	})
}
