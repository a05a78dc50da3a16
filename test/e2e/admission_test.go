package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// refusedAlike applies manifest with --dry-run=server, then for real: both must be refused with
// the same message, containing every want; nothing may be created.
func refusedAlike(t *testing.T, manifest string, want ...string) {
	t.Helper()
	dry := kubectlFails(t, manifest, "apply", "--dry-run=server", "-f", "-")
	real := kubectlFails(t, manifest, "apply", "-f", "-")
	for _, w := range want {
		assert.Contains(t, real, w)
	}
	assert.Equal(t, real, strings.ReplaceAll(dry, " (server dry run)", ""), "the dry run answers as the real apply does")
}

// TestAdmissionRefuses applies bad manifests through kubectl: each is refused by the webhook
// with a message naming the object, the field and what to do, on a server-side dry run and on a
// real apply alike.
func TestAdmissionRefuses(t *testing.T) {
	ns := newNamespace(t, "admission")
	rec := newRecorder(t)
	release := rec.hold("/held")
	defer release()
	// A sound workflow and plan, and a plan whose workflow does not exist.
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  parameters:
  - {name: replicas, type: int, default: 2}
  - {name: region, required: true}
  - {name: enabled, type: bool, default: true}
  actions:
  - name: call
    type: HTTP
    http: {url: %[2]q}
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: p, namespace: %[1]s}
spec:
  workflowRef: {name: wf}
  executionParams: [region]
`, ns, rec.URL("/ok")))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)

	wf := func(spec string) string {
		return fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: bad, namespace: %s}\nspec:\n%s", ns, spec)
	}
	action := func(a string) string { return wf("  actions:\n" + a) }
	bare := func(spec string) string {
		return fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: bad, namespace: %s}\nspec:\n%s", ns, spec)
	}
	plan := func(spec string) string { return bare(spec + "  executionParams: [region]\n") } // the required region left to executions
	exec := func(spec string) string {
		return fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlanExecution\nmetadata: {name: bad, namespace: %s}\nspec:\n%s", ns, spec)
	}
	resource := func(manifest string) string {
		return action(fmt.Sprintf("  - name: r\n    type: KubernetesResource\n    resource: {operation: Create, manifest: %q}\n", manifest))
	}
	badWF := `The DRWorkflow "bad" is invalid: `
	badPlan := `The DRPlan "bad" is invalid: `
	badExec := `The DRPlanExecution "bad" is invalid: `
	tests := []struct {
		name, manifest string
		want           []string
	}{
		// Workflows.
		{"Localization Create without feed", action("  - {name: l, type: Localization, localization: {operation: Create, name: l, namespace: clusternet-x, overrides: [{name: o, type: MergePatch, value: '{}'}]}}\n"),
			[]string{badWF + "spec.actions[0].localization.feed: Required value: a Localization Create needs the feed it customises"}},
		{"Localization without overrides", action("  - {name: l, type: Localization, localization: {operation: Create, name: l, namespace: clusternet-x, feed: {apiVersion: apps/v1, kind: Deployment, name: d}}}\n"),
			[]string{badWF + "spec.actions[0].localization.overrides: Required value: a Localization Create needs at least one override"}},
		{"Localization without namespace", action("  - {name: l, type: Localization, localization: {operation: Delete, name: l}}\n"),
			[]string{badWF + "spec.actions[0].localization.namespace: Required value: the ManagedCluster namespace (clusternet-xxxxx) the Localization lives in"}},
		{"Subscription Create without feeds", action("  - {name: s, type: Subscription, subscription: {operation: Create, name: s, namespace: default, subscribers: [{clusterAffinity: {}}]}}\n"),
			[]string{badWF + "spec.actions[0].subscription.feeds: Required value: a Subscription Create needs the feeds to distribute"}},
		{"Subscription Create without subscribers", action("  - {name: s, type: Subscription, subscription: {operation: Create, name: s, namespace: default, feeds: [{apiVersion: v1, kind: ConfigMap, name: c}]}}\n"),
			[]string{badWF + "spec.actions[0].subscription.subscribers: Required value: a Subscription Create needs subscribers that select clusters"}},
		{"manifest of two objects", resource("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"),
			[]string{badWF + `spec.actions[0].resource.manifest: Invalid value: "<manifest>": holds 2 objects: write one action per object`}},
		{"manifest without kind", resource("apiVersion: v1\nmetadata: {name: a}\n"),
			[]string{badWF + "spec.actions[0].resource.manifest", "kind"}},
		{"manifest without a name", resource("apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n"),
			[]string{badWF + "spec.actions[0].resource.manifest", "metadata.name"}},
		{"manifest that is not YAML", resource("apiVersion: v1\nkind: [ConfigMap\n"),
			[]string{badWF + "spec.actions[0].resource.manifest"}},
		{"Job template without containers", action("  - {name: j, type: Job, job: {namespace: default, name: j, template: {spec: {restartPolicy: Never}}}}\n"),
			[]string{badWF + "spec.actions[0].job.template.spec.containers: Required value: a Job's pod template needs at least one container"}},
		{"int default that is not an int", wf("  parameters: [{name: replicas, type: int, default: three}]\n  actions: [{name: a, type: HTTP, http: {url: \"https://x\"}}]\n"),
			[]string{badWF + `spec.parameters[0].default: Invalid value: "\"three\"": "three" is not an int: give a default of type int or change the parameter's type`}},
		{"bool default that is not a bool", wf("  parameters: [{name: dryRun, type: bool, default: maybe}]\n  actions: [{name: a, type: HTTP, http: {url: \"https://x\"}}]\n"),
			[]string{badWF + "spec.parameters[0].default", `"maybe" is not a bool (use true or false)`}},
		{"template that does not parse", action("  - {name: a, type: HTTP, http: {url: \"https://x/{{ .params.region \"}}\n"),
			[]string{badWF + "spec.actions[0].http.url", "unclosed action"}},
		{"template naming an undeclared parameter", wf("  parameters: [{name: region}]\n  actions: [{name: a, type: HTTP, http: {url: \"https://x/{{ .params.regoin }}\"}}]\n"),
			[]string{badWF + "spec.actions[0].http.url", `regoin`, `did you mean "region"?`}},
		{"guard that does not compile", action("  - {name: a, type: HTTP, when: \"actions['x'].phase ==\", http: {url: \"https://x\"}}\n"),
			[]string{badWF + `spec.actions[0].when: Invalid value: "actions['x'].phase ==": ERROR: <input>:1:22: Syntax error: mismatched input '<EOF>'`}},
		{"guard of the wrong type", wf("  parameters: [{name: replicas, type: int}]\n  actions: [{name: a, type: HTTP, when: \"params.replicas\", http: {url: \"https://x\"}}]\n"),
			[]string{badWF + `spec.actions[0].when: Invalid value: "params.replicas": must evaluate to bool, but evaluates to int`}},
		{"guard on an undeclared parameter", wf("  parameters: [{name: replicas, type: int}]\n  actions: [{name: a, type: HTTP, when: \"params.replica > 1\", http: {url: \"https://x\"}}]\n"),
			[]string{badWF + `spec.actions[0].when: Invalid value: "params.replica > 1": params.replica is not a parameter of the workflow (did you mean "replicas"?)`}},
		{"successCondition that does not compile", action("  - {name: a, type: HTTP, http: {url: \"https://x\", successCondition: \"response.cod = 200\"}}\n"),
			[]string{badWF + "spec.actions[0].http.successCondition", "Syntax error"}},
		{"waitFor condition on a param of another type", wf("  parameters: [{name: replicas, type: int}]\n  actions:\n  - name: r\n    type: KubernetesResource\n    resource: {operation: Create, manifest: \"apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: c}\\n\"}\n    waitFor: {condition: \"object.data.a == params.replicas + 'x'\"}\n"),
			[]string{badWF + "spec.actions[0].waitFor.condition", "found no matching overload for '_+_' applied to '(int, string)'"}},

		// Plans.
		{"unknown dependsOn", plan("  stages:\n  - {name: infrastructure, workflows: [{workflowRef: {name: wf}}]}\n  - {name: apps, dependsOn: [infrastructur], workflows: [{workflowRef: {name: wf}}]}\n"),
			[]string{badPlan + `spec.stages[1].dependsOn[0]: Invalid value: "infrastructur": unknown stage "infrastructur" (did you mean "infrastructure"?)`}},
		{"a cycle", plan("  stages:\n  - {name: a, dependsOn: [c], workflows: [{workflowRef: {name: wf}}]}\n  - {name: b, dependsOn: [a], workflows: [{workflowRef: {name: wf}}]}\n  - {name: c, dependsOn: [b], workflows: [{workflowRef: {name: wf}}]}\n"),
			[]string{badPlan + "spec.stages", "a -> b -> c -> a"}},
		{"a stage depending on itself", plan("  stages:\n  - {name: a, dependsOn: [a], workflows: [{workflowRef: {name: wf}}]}\n"),
			[]string{badPlan + "spec.stages[0].dependsOn[0]"}},
		{"params the workflow does not declare", plan("  stages:\n  - name: s\n    workflows: [{workflowRef: {name: wf}, params: [{name: regoin, value: dr}]}]\n"),
			[]string{badPlan + `spec.stages[0].workflows[0].params[0].name: Invalid value: "regoin": DRWorkflow ` + ns + `/wf declares no parameter "regoin" (did you mean "region"?)`}},
		{"a param value of the wrong type", plan("  stages:\n  - name: s\n    workflows: [{workflowRef: {name: wf}, params: [{name: region, value: dr}, {name: replicas, value: many}]}]\n"),
			[]string{badPlan + `spec.stages[0].workflows[0].params[1].value: Invalid value: "many": "many" is not an int (parameter replicas is declared int)`}},
		{"a globalParams value of the wrong type", plan("  globalParams: [{name: enabled, value: maybe}]\n  workflowRef: {name: wf}\n"),
			[]string{badPlan + `spec.globalParams[0].value: Invalid value: "maybe": "maybe" is not a bool (use true or false) (DRWorkflow ` + ns + `/wf declares enabled as bool)`}},
		{"a stage guard that does not compile", plan("  stages:\n  - {name: s, when: \"stages.s.phase ==\", workflows: [{workflowRef: {name: wf}}]}\n"),
			[]string{badPlan + `spec.stages[0].when`, "Syntax error"}},
		{"a required parameter the plan leaves without a value (the guide's 问题 1)", bare("  workflowRef: {name: wf}\n"),
			[]string{badPlan + `spec.globalParams: Required value: required parameter region (stage "default", DRWorkflow ` + ns + `/wf) has no value: set it in spec.globalParams, or name it in spec.executionParams so that every execution gives it in spec.params`}},
		{"executionParams naming a parameter no workflow declares", bare("  workflowRef: {name: wf}\n  executionParams: [region, regoin]\n"),
			[]string{badPlan + `spec.executionParams[1]: Invalid value: "regoin": no workflow of the plan declares a parameter "regoin" (did you mean "region"?)`}},
		{"trigger=execute of a plan leaving a parameter to each execution", fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: p, namespace: %s, annotations: {dr.bkbcs.tencent.com/trigger: execute}}\nspec:\n  workflowRef: {name: wf}\n  executionParams: [region]\n", ns),
			[]string{`The DRPlan "p" is invalid: metadata.annotations[dr.bkbcs.tencent.com/trigger]: Forbidden: DRPlan ` + ns + `/p names region in spec.executionParams: every execution must give it a value in its spec.params, which a trigger cannot give: create a DRPlanExecution with them`}},
		{"an unknown trigger", fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: p, namespace: %s, annotations: {dr.bkbcs.tencent.com/trigger: failover}}\nspec:\n  workflowRef: {name: wf}\n  executionParams: [region]\n", ns),
			[]string{`The DRPlan "p" is invalid: metadata.annotations[dr.bkbcs.tencent.com/trigger]: Unsupported value: "failover": supported values: "execute", "revert", "cancel"`}},
		{"trigger=revert with nothing to revert", fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: p, namespace: %s, annotations: {dr.bkbcs.tencent.com/trigger: revert}}\nspec:\n  workflowRef: {name: wf}\n  executionParams: [region]\n", ns),
			[]string{`The DRPlan "p" is invalid: metadata.annotations[dr.bkbcs.tencent.com/trigger]`, "cannot revert: nothing to revert: no Execute of plan p has taken effect"}},

		// Executions.
		{"a plan that does not exist", exec("  planRef: {name: nope}\n"),
			[]string{badExec + `spec.planRef: Invalid value: "` + ns + `/nope": DRPlan ` + ns + `/nope does not exist`}},
		{"a parameter the plan leaves to each execution, not given", exec("  planRef: {name: p}\n"),
			[]string{badExec + `spec.params: Required value: DRPlan ` + ns + `/p names region in spec.executionParams: every execution must give it a value in its spec.params`}},
		{"a parameter no workflow declares", exec("  planRef: {name: p}\n  params: [{name: region, value: dr}, {name: replica, value: \"3\"}]\n"),
			[]string{badExec + `spec.params[1].name: Invalid value: "replica": no workflow of DRPlan ` + ns + `/p declares a parameter "replica" (did you mean "replicas"?)`}},
		{"a parameter of the wrong type", exec("  planRef: {name: p}\n  params: [{name: region, value: dr}, {name: replicas, value: lots}]\n"),
			[]string{badExec + `spec.params[1].value: Invalid value: "lots": "lots" is not an int (parameter replicas is declared int)`}},
		{"a Revert with nothing to revert", exec("  planRef: {name: p}\n  operation: Revert\n"),
			[]string{badExec + `spec.revertExecutionRef: Invalid value: "(the latest Execute in effect)": cannot revert: nothing to revert`}},
		{"a Revert of an execution that does not exist", exec("  planRef: {name: p}\n  operation: Revert\n  revertExecutionRef: {name: ghost}\n"),
			[]string{badExec + `spec.revertExecutionRef: Invalid value: "ghost": cannot revert: execution ghost does not exist`}},
	}
	require.GreaterOrEqual(t, len(tests), 30)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { refusedAlike(t, tc.manifest, tc.want...) })
	}

	t.Run("an Execute of a plan whose workflow is missing", func(t *testing.T) {
		_, stderr, err := env.Kubectl(context.Background(), planYAML(ns, "orphan", "missing"), "apply", "-f", "-")
		require.NoError(t, err, "a plan before its workflow is admitted")
		assert.Contains(t, stderr, "Warning: DRWorkflow "+ns+"/missing not found: the plan stays Invalid until it is fixed")
		refusedAlike(t, exec("  planRef: {name: orphan}\n"),
			badExec+`spec.planRef: Invalid value: "`+ns+`/orphan": DRPlan `+ns+`/orphan cannot run: DRWorkflow `+ns+`/missing not found`)
	})

	t.Run("a Revert of another plan's execution, and of a Revert", func(t *testing.T) {
		withoutWebhook(t) // to plant executions the webhook would refuse
		ctx := context.Background()
		for _, e := range []*drv1.DRPlanExecution{
			{ObjectMeta: requested(t, metav1.ObjectMeta{Name: "other-plans"}), Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "orphan"}}},
			{ObjectMeta: requested(t, metav1.ObjectMeta{Name: "a-revert"}), Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: drv1.OperationRevert}},
		} {
			_, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Create(ctx, e, metav1.CreateOptions{})
			require.NoError(t, err)
		}
		require.NoError(t, env.SetWebhook(true))
		refusedAlike(t, exec("  planRef: {name: p}\n  operation: Revert\n  revertExecutionRef: {name: other-plans}\n"),
			badExec+`spec.revertExecutionRef: Invalid value: "other-plans": cannot revert: execution other-plans ran plan `+ns+`/orphan, not `+ns+`/p`)
		refusedAlike(t, exec("  planRef: {name: p}\n  operation: Revert\n  revertExecutionRef: {name: a-revert}\n"),
			badExec+`spec.revertExecutionRef: Invalid value: "a-revert": cannot revert: execution a-revert is a Revert: only an Execute can be reverted`)
	})
}

// TestAdmissionAdmitsAndWarns: sound manifests are admitted, with warnings where Revert cannot
// undo an action; a server-side dry run shows the same warnings and creates nothing.
func TestAdmissionAdmitsAndWarns(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "admit")
	manifest := fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %s}
spec:
  actions:
  - {name: notify, type: HTTP, http: {url: "https://example.com/hook"}}
  - name: drop-old
    type: KubernetesResource
    resource: {operation: Delete, manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: old}\n"}
  - name: make-new
    type: KubernetesResource
    resource: {operation: Create, manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: new}\n"}
`, ns)
	warnings := []string{
		"Warning: spec.actions[0] (notify): an HTTP call without a rollback is skipped on Revert; add a rollback to undo it",
		"Warning: spec.actions[1] (drop-old): a Delete cannot be undone; Revert skips it unless you add a rollback",
	}
	out, stderr, err := env.Kubectl(ctx, manifest, "apply", "--dry-run=server", "-f", "-")
	require.NoError(t, err)
	assert.Contains(t, out, "drworkflow.dr.bkbcs.tencent.com/wf created (server dry run)")
	for _, w := range warnings {
		assert.Contains(t, stderr, w)
	}
	assert.NotContains(t, stderr, "make-new", "a Create is undone by Revert: no warning")
	_, err = env.DR.DrV1alpha1().DRWorkflows(ns).Get(ctx, "wf", metav1.GetOptions{})
	assert.True(t, err != nil && strings.Contains(err.Error(), "not found"), "a dry run creates nothing: %v", err)

	out, stderr, err = env.Kubectl(ctx, manifest, "apply", "-f", "-")
	require.NoError(t, err)
	assert.Contains(t, out, "drworkflow.dr.bkbcs.tencent.com/wf created")
	for _, w := range warnings {
		assert.Contains(t, stderr, w)
	}
	waitWorkflowPhase(t, ns, "wf", drv1.WorkflowReady)
}

// TestAdmissionOneExecutionAtATime: while an execution runs, a second one, and the plan's
// execute trigger, are refused with the guide's message; once it ends, a new one is admitted.
func TestAdmissionOneExecutionAtATime(t *testing.T) {
	ns := newNamespace(t, "inprogress")
	rec := newRecorder(t)
	release := rec.hold("/held")
	defer release()
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/held"))
	applyPlan(t, ns, "p", "wf")
	createExecution(t, ns, "first", "p")
	eventually(t, "the first run's call to arrive", func() (bool, string) { return rec.Arrived("/held") == 1, "" })

	second := fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlanExecution\nmetadata: {name: second, namespace: %s}\nspec: {planRef: {name: p}}\n", ns)
	refusedAlike(t, second, `admission webhook "validate.dr.bkbcs.tencent.com" denied the request: Plan has an execution in progress: first`)
	_, stderr, err := env.Kubectl(context.Background(), "", "annotate", "drplan", "p", "-n", ns, drv1.AnnotationTrigger+"=execute")
	require.Error(t, err)
	assert.Contains(t, stderr, "Plan has an execution in progress: first")

	release()
	waitExecution(t, ns, "first", drv1.ExecutionSucceeded)
	waitLockReleased(t, ns, "p")
	kubectlApply(t, second)
	waitExecution(t, ns, "second", drv1.ExecutionSucceeded)

	// Cancelling a finished execution is refused; the annotation means "true" only.
	_, stderr, err = env.Kubectl(context.Background(), "", "annotate", "drplanexecution", "first", "-n", ns, drv1.AnnotationCancel+"=true")
	require.Error(t, err)
	assert.Contains(t, stderr, `The DRPlanExecution "first" is invalid: metadata.annotations[dr.bkbcs.tencent.com/cancel]: Forbidden: execution first has already finished (Succeeded): only a Pending or Running execution can be cancelled`)
	_, stderr, err = env.Kubectl(context.Background(), "", "annotate", "drplanexecution", "first", "-n", ns, drv1.AnnotationCancel+"=yes")
	require.Error(t, err)
	assert.Contains(t, stderr, `Unsupported value: "yes": supported values: "true"`)
}

// TestLockWithoutWebhook creates 20 executions of one plan at once with no webhook: exactly one
// runs at a time, and every one runs. The plan keeps them all (executionHistoryLimit).
func TestLockWithoutWebhook(t *testing.T) {
	withoutWebhook(t)
	ns := newNamespace(t, "lock20")
	rec := newRecorder(t)
	const n = 20
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/call?delay=30ms"))
	kubectlApply(t, planYAML(ns, "p", "wf")+fmt.Sprintf("  executionHistoryLimit: %d\n", n))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { createExecution(t, ns, fmt.Sprintf("run-%02d", i), "p") })
	}
	wg.Wait()
	for i := range n {
		waitExecution(t, ns, fmt.Sprintf("run-%02d", i), drv1.ExecutionSucceeded)
	}
	calls := rec.CallsTo("/call")
	require.Len(t, calls, n, "every execution ran its call once")
	sort.Slice(calls, func(i, j int) bool { return calls[i].Start.Before(calls[j].Start) })
	for i := 1; i < len(calls); i++ {
		assert.False(t, calls[i].Start.Before(calls[i-1].End), "call %d started before call %d ended: two runs at once", i, i-1)
	}
	waitLockReleased(t, ns, "p")
}
