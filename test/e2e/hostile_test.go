package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// bombWorkflow is a workflow whose HTTP body template would loop or recurse without end, were
// templates more than references.
func bombWorkflow(ns, name, body string) string {
	return fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: %s, namespace: %s}\nspec:\n  actions:\n  - name: boom\n    type: HTTP\n    http: {url: \"http://127.0.0.1:1/x\", method: POST, body: %q}\n",
		name, ns, body)
}

var templateBombs = map[string]string{
	"range":  `{{ range 20000000 }}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{{ end }}`,
	"define": `{{ define "a" }}{{ template "a" . }}{{ end }}{{ template "a" . }}`,
}

// TestTemplateBombs: a template that loops or recurses is refused at admission in under a second
// (a server-side dry run too); one stored without the webhook is marked Invalid by a controller
// that stays up and goes on running other plans.
func TestTemplateBombs(t *testing.T) {
	ns := newNamespace(t, "bombs")
	for name, body := range templateBombs {
		start := time.Now()
		stderr := kubectlFails(t, bombWorkflow(ns, name, body), "apply", "--dry-run=server", "-f", "-")
		took := time.Since(start)
		assert.Contains(t, stderr, "is not a reference")
		assert.Less(t, took, 2*time.Second, "kubectl included") // the webhook's share is well under a second
		t.Logf("%s: refused in %s: %s", name, took, strings.TrimSpace(stderr))
	}

	withoutWebhook(t) // stored as if before the checks, or while the webhook was down
	for name, body := range templateBombs {
		kubectlApply(t, bombWorkflow(ns, name, body))
		wf := waitWorkflowPhase(t, ns, name, drv1.WorkflowInvalid)
		assert.Contains(t, wf.Status.Message, "is not a reference")
		kubectlApply(t, planYAML(ns, name, name))
		waitPlanPhase(t, ns, name, drv1.PlanInvalid)
	}
	// The controller is up and goes on: another plan runs. (A run reaching such a template is
	// refused when it renders: templates' TestRenderRefusesWhatAdmissionRefuses.)
	rec := newRecorder(t)
	kubectlApply(t, httpWorkflow(ns, "fine", rec, "", "/fine"))
	applyPlan(t, ns, "fine", "fine")
	createExecution(t, ns, "run", "fine")
	waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	_, err := env.DR.DrV1alpha1().DRWorkflows(ns).Get(context.Background(), "range", metav1.GetOptions{})
	require.NoError(t, err)
}
