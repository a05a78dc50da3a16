package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset/typed/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

func TestCRDsAreServed(t *testing.T) {
	out := kubectl(t, "api-resources", "--api-group=dr.bkbcs.tencent.com", "-o", "wide")
	for _, want := range []string{"drworkflows", "drwf", "drplans", "drp", "drplanexecutions", "drpe,drexec", "dr"} {
		assert.Contains(t, out, want)
	}
	out = kubectl(t, "api-resources", "--api-group=apps.clusternet.io")
	assert.Contains(t, out, "localizations")
	assert.Contains(t, out, "subscriptions")
	out = kubectl(t, "version", "-o", "json")
	var v struct {
		ClientVersion struct{ Minor string }      `json:"clientVersion"`
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &v))
	assert.Equal(t, "v1.37.2", v.ServerVersion.GitVersion)
	assert.Equal(t, "37", v.ClientVersion.Minor, "kubectl must be of the server's minor version")
}

func TestExplain(t *testing.T) {
	tests := []struct {
		field string
		want  []string
	}{
		{"drplan.spec.stages", []string{"Stages of the plan", "dependsOn", "parallel", "workflows", "DependsOn names the stages that must succeed"}},
		{"drplan.spec.workflowRef", []string{"shorthand for a plan of one stage"}},
		{"drworkflow.spec.actions.type", []string{"Type of the action", "KubernetesResource"}},
		{"drworkflow.spec.parameters.default", []string{"Any scalar"}},
		{"drworkflow.spec.actions.http.method", []string{"Method of the request", "POST"}},
		{"drplanexecution.spec.operation", []string{"Execute (default) runs the plan", "Revert"}},
		{"drplanexecution.status.stageStatuses.workflowExecutions.progress", []string{"2/3 actions completed"}},
	}
	for _, tc := range tests {
		t.Run(tc.field, func(t *testing.T) {
			out := kubectl(t, "explain", tc.field)
			for _, w := range tc.want {
				assert.Contains(t, out, w)
			}
		})
	}
}

// TestSchemaRejects applies bad manifests with kubectl; the API server itself must refuse each
// with a message that names the field and says what to do.
func TestSchemaRejects(t *testing.T) {
	ns := newNamespace(t, "schema")
	wf := func(actions string) string {
		return fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: bad, namespace: %s}
spec:
  actions:
%s`, ns, actions)
	}
	plan := func(spec string) string {
		return fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: bad, namespace: %s}
spec:
%s`, ns, spec)
	}
	exec := func(spec string) string {
		return fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlanExecution
metadata: {name: bad, namespace: %s}
spec:
%s`, ns, spec)
	}
	tests := []struct {
		name, manifest string
		want           []string
	}{
		{"unknown action type", wf(`  - {name: a, type: Shell}`),
			[]string{`spec.actions[0].type: Unsupported value: "Shell"`, `"HTTP", "Job", "Localization", "Subscription", "KubernetesResource"`}},
		{"type without its block", wf(`  - {name: a, type: HTTP}`),
			[]string{"spec.actions[0]: Invalid value: type HTTP needs an http block"}},
		{"a second type's block", wf(`  - {name: a, type: HTTP, http: {url: "https://x"}, job: {namespace: x, name: j, template: {}}}`),
			[]string{"set only the block of the action's type"}},
		{"Patch without rollback", wf(`  - name: a
    type: KubernetesResource
    resource: {operation: Patch, manifest: "apiVersion: v1"}`),
			[]string{"a KubernetesResource Patch or Apply needs an explicit rollback"}},
		{"Localization Patch without rollback", wf(`  - {name: a, type: Localization, localization: {operation: Patch, name: l, namespace: clusternet-x}}`),
			[]string{"a Localization Patch needs an explicit rollback"}},
		{"duplicate action names", wf(`  - {name: a, type: HTTP, http: {url: "https://x"}}
  - {name: a, type: HTTP, http: {url: "https://y"}}`),
			[]string{`spec.actions[1]: Duplicate value: {"name":"a"}`}},
		{"waitFor on an HTTP call", wf(`  - {name: a, type: HTTP, http: {url: "https://x"}, waitFor: {condition: "true"}}`),
			[]string{"waitFor is for actions that make or change an object (KubernetesResource, Job, Localization, Subscription; not a Delete or an HTTP call)"}},
		{"bad timeout", wf(`  - {name: a, type: HTTP, http: {url: "https://x", timeout: 30 seconds}}`),
			[]string{`spec.actions[0].http.timeout: Invalid value: "30 seconds": must be a duration such as 30s, 5m or 1h30m`}},
		{"bad method", wf(`  - {name: a, type: HTTP, http: {url: "https://x", method: FETCH}}`),
			[]string{`spec.actions[0].http.method: Unsupported value: "FETCH"`}},
		{"job with both name and generateName", wf(`  - {name: a, type: Job, job: {namespace: x, name: j, generateName: j-, template: {}}}`),
			[]string{"set exactly one of name and generateName"}},
		{"bad failure policy", wf(`  - {name: a, type: HTTP, http: {url: "https://x"}}
  failurePolicy: Retry`), []string{`spec.failurePolicy: Unsupported value: "Retry"`}},
		{"bad parameter type", fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: bad, namespace: %s}
spec:
  parameters: [{name: x, type: float}]
  actions: [{name: a, type: HTTP, http: {url: "https://x"}}]`, ns),
			[]string{`spec.parameters[0].type: Unsupported value: "float"`, `"string", "int", "bool"`}},
		{"no actions", wf(`    []`), []string{"spec.actions: Invalid value: 0: spec.actions in body should have at least 1 items"}},
		{"plan with both workflowRef and stages", plan(`  workflowRef: {name: w}
  stages: [{name: s, workflows: [{workflowRef: {name: w}}]}]`),
			[]string{"set exactly one of spec.workflowRef (a plan of one workflow) and spec.stages"}},
		{"plan with neither", plan(`  description: nothing`),
			[]string{"set exactly one of spec.workflowRef (a plan of one workflow) and spec.stages"}},
		{"plan with duplicate stage names", plan(`  stages:
  - {name: s, workflows: [{workflowRef: {name: w}}]}
  - {name: s, workflows: [{workflowRef: {name: w}}]}`),
			[]string{`spec.stages[1]: Duplicate value: {"name":"s"}`}},
		{"plan failurePolicy enum", plan(`  workflowRef: {name: w}
  failurePolicy: Retry`), []string{`spec.failurePolicy: Unsupported value: "Retry"`, `"Stop", "Continue"`}},
		{"stage without workflows", plan(`  stages: [{name: s, workflows: []}]`),
			[]string{"spec.stages[0].workflows: Invalid value: 0: spec.stages[0].workflows in body should have at least 1 items"}},
		{"execution operation enum", exec(`  planRef: {name: p}
  operation: Rollback`), []string{`spec.operation: Unsupported value: "Rollback"`, `"Execute", "Revert"`}},
		{"execution without planRef", exec(`  operation: Execute`), []string{"spec.planRef: Required value"}},
		{"revertExecutionRef on an Execute", exec(`  planRef: {name: p}
  operation: Execute
  revertExecutionRef: {name: e}`), []string{"revertExecutionRef is only for operation Revert"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { refusedAlike(t, tc.manifest, tc.want...) })
	}
}

// TestExecutionSpecIsImmutable: the CRD itself refuses a changed spec (the webhook is off: the
// plan does not exist).
func TestExecutionSpecIsImmutable(t *testing.T) {
	withoutWebhook(t)
	ctx := context.Background()
	ns := newNamespace(t, "immutable")
	e, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Create(ctx, &drv1.DRPlanExecution{
		ObjectMeta: metav1.ObjectMeta{Name: "run"},
		Spec:       drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Equal(t, drv1.OperationExecute, e.Spec.Operation, "operation defaults to Execute")

	// The controller writes the execution meanwhile (status, finalizer): retry a lost race.
	for {
		e.Spec.PlanRef.Name = "other"
		_, err = env.DR.DrV1alpha1().DRPlanExecutions(ns).Update(ctx, e, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			break
		}
		e, err = env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(ctx, "run", metav1.GetOptions{})
		require.NoError(t, err)
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "spec is immutable: create a new DRPlanExecution to run the plan again")

	// Labels and annotations stay editable (the cancel annotation lives there).
	_, _, err = env.Kubectl(ctx, "", "annotate", "drplanexecution", "run", "-n", ns, "note=x")
	require.NoError(t, err)
}

func newAPIExtensionsClient() (apiextensionsclient.ApiextensionsV1Interface, error) {
	return apiextensionsclient.NewForConfig(env.Config)
}

func TestCRDsCarryDescriptionsAndColumns(t *testing.T) {
	ctx := context.Background()
	client, err := newAPIExtensionsClient()
	require.NoError(t, err)
	for _, name := range []string{"drworkflows", "drplans", "drplanexecutions"} {
		crd, err := client.CustomResourceDefinitions().Get(ctx, name+"."+drv1.GroupName, metav1.GetOptions{})
		require.NoError(t, err)
		v := crd.Spec.Versions[0]
		assert.NotNil(t, v.Subresources.Status, "%s has a status subresource", name)
		assert.Contains(t, crd.Spec.Names.Categories, "dr")
		assert.True(t, hasDescriptions(v.Schema.OpenAPIV3Schema.Properties["spec"]), "%s spec fields are described", name)
	}
}

// hasDescriptions reports whether every property of s, recursively, has a description.
func hasDescriptions(s apiextensionsv1.JSONSchemaProps) bool {
	for name, p := range s.Properties {
		if strings.TrimSpace(p.Description) == "" && name != "metadata" {
			return false
		}
		if !hasDescriptions(p) {
			return false
		}
		if p.Items != nil && p.Items.Schema != nil && !hasDescriptions(*p.Items.Schema) {
			return false
		}
	}
	return true
}
