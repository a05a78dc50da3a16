package e2e

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// TestActionCannotForgeRecordsAsController: a plan without a serviceAccountName acts as the
// controller, whose user the webhooks trust for the records of who asked. Its action creating a
// DRPlanExecution with a forged requester in another namespace is refused: by the webhook when
// the manifest names the group, by the runner when a parameter does; nothing is created.
func TestActionCannotForgeRecordsAsController(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "as-controller")
	victim := newNamespace(t, "as-controller-victim")
	rec := newRecorder(t)
	kubectlApply(t, httpWorkflow(victim, "wf", rec, "", "/never"))
	applyPlan(t, victim, "target", "wf")

	forged := drv1.Requester{Username: "system:admin", Groups: []string{"system:masters"}}.Encode()
	workflow := func(name, apiVersion string) string {
		return fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: %s, namespace: %s}
spec:
  parameters:
  - name: api
    default: v1
  actions:
  - name: forge
    type: KubernetesResource
    resource:
      operation: Create
      manifest: |
        apiVersion: %s
        kind: DRPlanExecution
        metadata:
          name: forged
          namespace: %s
          annotations:
            %s: '%s'
        spec:
          planRef: {name: target}
    rollback:
      type: HTTP
      http: {url: %q}
`, name, ns, apiVersion, victim, drv1.AnnotationRequester, forged, rec.URL("/never"))
	}

	// The manifest names the group: a plan of it is refused, and so is an execution of a plan
	// applied before the workflow.
	kubectlApply(t, planYAML(ns, "static", "static"))
	kubectlApply(t, workflow("static", "dr.bkbcs.tencent.com/v1alpha1"))
	waitWorkflowPhase(t, ns, "static", drv1.WorkflowReady)
	want := `has no serviceAccountName, so DRWorkflow ` + ns + `/static spec.actions[0] (action "forge": Create DRPlanExecution) acts as the controller, ` +
		`which may not create, change or delete dr.bkbcs.tencent.com objects for a plan; give the plan a serviceAccountName`
	stderr := kubectlFails(t, planYAML(ns, "static-2", "static"), "apply", "-f", "-")
	assert.Contains(t, stderr, `The DRPlan "static-2" is invalid: spec.serviceAccountName: Forbidden: DRPlan `+ns+`/static-2 `+want)
	stderr = kubectlFails(t, fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlanExecution\nmetadata: {name: refused, namespace: %s}\nspec: {planRef: {name: static}}\n", ns),
		"apply", "-f", "-")
	// An execution: its rendered actions are judged (docs/security.md), the same way at start.
	asController := `action "forge" (create drplanexecutions.dr.bkbcs.tencent.com) acts as the controller, which may not create, change or delete dr.bkbcs.tencent.com objects for a plan; give the plan a serviceAccountName`
	assert.Contains(t, stderr, `drplanexecutions.dr.bkbcs.tencent.com "refused" is forbidden: stage "default", workflow `+ns+`/static, `+asController)

	// A parameter names it: refused once rendered, at admission and at start (the runner refuses it
	// too, a last line).
	kubectlApply(t, workflow("templated", "'{{ .params.api }}'"))
	waitWorkflowPhase(t, ns, "templated", drv1.WorkflowReady)
	kubectlApply(t, planYAML(ns, "templated", "templated")+"  globalParams:\n  - {name: api, value: dr.bkbcs.tencent.com/v1alpha1}\n")
	waitPlanPhase(t, ns, "templated", drv1.PlanReady)
	err := execute(env.DR, ns, "refused-too", "templated")
	require.Error(t, err, "rendered at admission: the parameter's value is known")
	assert.Contains(t, err.Error(), `stage "default", workflow `+ns+`/templated, `+asController)
	withoutWebhook(t)
	createExecution(t, ns, "run", "templated")
	e := waitExecution(t, ns, "run", drv1.ExecutionFailed)
	assert.Contains(t, e.Status.Message, `Cannot start: stage "default", workflow `+ns+`/templated, `+asController)

	list, err := env.DR.DrV1alpha1().DRPlanExecutions(victim).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, list.Items, "nothing created in the victim's namespace")
	assert.Empty(t, rec.CallsTo("/never"))
}
