// Package examples holds the user guide's YAML documents; this test checks them offline. The e2e
// suite applies the same files to a real API server.
package examples_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/validation"
)

// invalidWorkflows are the guide's workflows that apply but are Invalid, with the reason.
var invalidWorkflows = map[string]string{
	// The guide's parameterised example creates a Localization without a feed.
	"workflows/parameterized-workflow.yaml": "spec.actions[0].localization.feed: Required value",
}

func TestGuideExamplesDecodeStrictly(t *testing.T) {
	files, err := filepath.Glob("*/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	node, err := filepath.Glob("node/*/*.yaml") // the node mode's copies
	require.NoError(t, err)
	files = append(files, node...)
	env, err := rules.NewEnv(rules.Options{}) // as the process builds it, once
	require.NoError(t, err)
	kinds := map[string]int{}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			require.NoError(t, err)
			var meta struct{ Kind string }
			require.NoError(t, yaml.Unmarshal(raw, &meta))
			kinds[meta.Kind]++
			switch meta.Kind {
			case "DRWorkflow":
				var wf drv1.DRWorkflow
				require.NoError(t, yaml.UnmarshalStrict(raw, &wf), "unknown or mistyped field")
				errs := validation.ValidateWorkflow(env, &wf)
				if want, ok := invalidWorkflows[f]; ok {
					require.NotEmpty(t, errs)
					assert.Contains(t, errs.ToAggregate().Error(), want)
				} else {
					assert.Empty(t, errs)
				}
			case "DRPlan":
				var p drv1.DRPlan
				require.NoError(t, yaml.UnmarshalStrict(raw, &p), "unknown or mistyped field")
			case "DRPlanExecution":
				var e drv1.DRPlanExecution
				require.NoError(t, yaml.UnmarshalStrict(raw, &e), "unknown or mistyped field")
			default:
				t.Fatalf("unexpected kind %q", meta.Kind)
			}
			assert.True(t, strings.HasPrefix(string(raw), "# Guide: "), "each example says where in the guide it comes from")
		})
	}
	assert.Equal(t, map[string]int{"DRWorkflow": 13, "DRPlan": 7, "DRPlanExecution": 5}, kinds)
}
