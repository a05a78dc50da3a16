package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

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
	t.Logf("before the bombs: %s", controllerMemory())
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
	t.Logf("after the bombs: %s", controllerMemory())
}

// TestLargestPlan: the largest plan admitted (2,000 actions: ten stages of a 200-action workflow,
// the most a workflow holds, each action making a ConfigMap) runs on the real API server; one action more is refused,
// naming the total.
func TestLargestPlan(t *testing.T) {
	ns := newNamespace(t, "largest")
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: big, namespace: %s}\nspec:\n  actions:\n", ns)
	const perWorkflow, stages = 200, drv1.MaxPlanActions / 200
	for i := range perWorkflow {
		fmt.Fprintf(&b, "  - {name: cm-%d, type: KubernetesResource, resource: {operation: Create, manifest: \"apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: '{{ .executionName }}-{{ .params.stage }}-%d'}\\n\"}}\n", i, i)
	}
	b.WriteString("  parameters: [{name: stage}]\n")
	kubectlApply(t, b.String())
	kubectlApply(t, fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: one, namespace: %s}\nspec:\n  actions:\n  - {name: call, type: HTTP, http: {url: \"http://127.0.0.1:1/x\"}}\n", ns))
	waitWorkflowPhase(t, ns, "big", drv1.WorkflowReady)
	waitWorkflowPhase(t, ns, "one", drv1.WorkflowReady)
	plan := func(name string, extra bool) string {
		p := fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: %s, namespace: %s}\nspec:\n  stages:\n", name, ns)
		for i := range stages {
			p += fmt.Sprintf("  - {name: s%d, workflows: [{workflowRef: {name: big}, params: [{name: stage, value: s%d}]}]}\n", i, i)
		}
		if extra {
			p += "  - {name: one, workflows: [{workflowRef: {name: one}}]}\n"
		}
		return p
	}
	stderr := kubectlFails(t, plan("over", true), "apply", "-f", "-")
	assert.Contains(t, stderr, fmt.Sprintf("the plan runs %d actions in all (the sum over its stages' workflows), over the limit of %d", drv1.MaxPlanActions+1, drv1.MaxPlanActions))

	kubectlApply(t, plan("largest", false))
	waitPlanPhase(t, ns, "largest", drv1.PlanReady)
	start := time.Now()
	createExecution(t, ns, "run", "largest")
	e := waitLong(t, ns, "run", drv1.ExecutionSucceeded)
	raw, err := json.Marshal(e)
	require.NoError(t, err)
	t.Logf("2,000 actions ran in %s; the execution object is %d bytes (%.0f%% of 1.5 MiB)", time.Since(start).Round(time.Millisecond), len(raw), float64(len(raw))*100/(1.5*1024*1024))
	assert.Len(t, e.Status.ActionStatuses, drv1.MaxPlanActions)
	assert.Len(t, e.Status.Outputs, drv1.MaxPlanActions)
}

// TestInjectionLeavesTheAuthorsFields: a parameter value that would close its string and add a
// key (`x"` newline `  injected: "yes`) stays one value: the ConfigMap, Deployment and Localization
// made have exactly their authors' fields, and the HTTP recorder gets it as one JSON string.
func TestInjectionLeavesTheAuthorsFields(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "inject")
	rec := newRecorder(t)
	value := "x\"\n  injected: \"yes"
	wf := fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  parameters: [{name: v}, {name: replicas, type: int}]
  actions:
  - name: cm
    type: KubernetesResource
    resource:
      operation: Create
      manifest: |
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: injected}
        data:
          quoted: "{{ .params.v }}"
          plain: {{ .params.v }}
  - name: deploy
    type: KubernetesResource
    resource:
      operation: Create
      manifest: |
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: injected}
        spec:
          replicas: {{ .params.replicas }}
          selector: {matchLabels: {app: x}}
          template:
            metadata: {labels: {app: x}}
            spec:
              containers:
              - name: c
                image: "busybox:{{ .params.v }}"
  - name: loc
    type: Localization
    localization:
      name: injected
      namespace: %[1]s
      operation: Create
      feed: {apiVersion: apps/v1, kind: Deployment, name: injected, namespace: %[1]s}
      overrides:
      - name: o
        type: JSONPatch
        value: '[{"op":"add","path":"/metadata/labels/v","value":"{{ .params.v }}"}]'
  - name: call
    type: HTTP
    http:
      url: %[2]q
      method: POST
      body: '{"message": "{{ .params.v }}", "replicas": {{ .params.replicas }}}'
`, ns, rec.URL("/inject"))
	kubectlApply(t, wf)
	params, err := json.Marshal(value)
	require.NoError(t, err)
	kubectlApply(t, planYAML(ns, "p", "wf")+"  globalParams:\n  - {name: v, value: "+string(params)+"}\n  - {name: replicas, value: \"2\"}\n")
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	createExecution(t, ns, "run", "p")
	waitExecution(t, ns, "run", drv1.ExecutionSucceeded)

	cm, err := env.Kube.CoreV1().ConfigMaps(ns).Get(ctx, "injected", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"quoted": value, "plain": value}, cm.Data, "no key injected")
	d, err := env.Kube.AppsV1().Deployments(ns).Get(ctx, "injected", metav1.GetOptions{})
	require.NoError(t, err)
	assert.EqualValues(t, 2, *d.Spec.Replicas)
	c := d.Spec.Template.Spec.Containers[0]
	assert.Equal(t, "busybox:"+value, c.Image)
	assert.Nil(t, c.SecurityContext, "nothing privileged injected")
	dyn, err := dynamic.NewForConfig(env.Config)
	require.NoError(t, err)
	loc, err := dyn.Resource(localizations).Namespace(ns).Get(ctx, "injected", metav1.GetOptions{})
	require.NoError(t, err)
	overrides := loc.Object["spec"].(map[string]any)["overrides"].([]any)
	var patch []map[string]any
	require.NoError(t, json.Unmarshal([]byte(overrides[0].(map[string]any)["value"].(string)), &patch))
	assert.Equal(t, []map[string]any{{"op": "add", "path": "/metadata/labels/v", "value": value}}, patch)
	calls := rec.CallsTo("/inject")
	require.Len(t, calls, 1)
	var body map[string]any
	require.NoError(t, json.Unmarshal([]byte(calls[0].Body), &body), calls[0].Body)
	assert.Equal(t, map[string]any{"message": value, "replicas": float64(2)}, body)
}

// TestInjectionCannotChooseStructure: a template in a key (a value would choose the field) and an
// alias bomb ("billion laughs") are refused by a server-side dry-run create, with the field and
// the position in the author's text, in no time.
func TestInjectionCannotChooseStructure(t *testing.T) {
	ns := newNamespace(t, "shape")
	bomb := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"{{ .params.v }}\"}\ndata:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
	for i := 1; i < 10; i++ {
		bomb += fmt.Sprintf("  a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9), ", "))
	}
	for _, tc := range []struct{ name, action, want string }{
		{"templated key", fmt.Sprintf("type: KubernetesResource\n    resource: {operation: Create, manifest: %q}",
			"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  {{ .params.v }}: {privileged: true}\n  containers: [{name: c, image: busybox}]\n"),
			`spec.actions[0].resource.manifest: Invalid value: "<manifest>": template at 5:3 ("{{ .params.v }}") is in a mapping key`},
		{"templated JSON key", fmt.Sprintf("type: HTTP\n    http: {url: \"http://127.0.0.1:1/x\", method: POST, body: %q}", `{"text": "hi", "{{ .params.v }}": true}`),
			`spec.actions[0].http.body: Invalid value: "<body>": template at 1:17 ("{{ .params.v }}") is in an object key`},
		{"alias bomb", fmt.Sprintf("type: KubernetesResource\n    resource: {operation: Create, manifest: %q}", bomb),
			`spec.actions[0].resource.manifest: Invalid value: "<manifest>": anchor &a0 at 5:7: anchors, aliases and merge keys are not allowed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wf := fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: shape, namespace: %s}\nspec:\n  parameters: [{name: v}]\n  actions:\n  - name: a\n    %s\n", ns, tc.action)
			start := time.Now()
			stderr := kubectlFails(t, wf, "create", "--dry-run=server", "-f", "-")
			took := time.Since(start)
			assert.Contains(t, stderr, tc.want)
			assert.Less(t, took, 2*time.Second, "kubectl included")
			t.Logf("refused in %s: %s", took, strings.TrimSpace(stderr))
		})
	}
}
