package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// The overrides of the Localization the guide's 示例 4 patches, as Clusternet stores them: those of
// its 示例 3 (scale-replicas, add-dr-label), and what 示例 4 and its rollback add.
var (
	scaleReplicas = map[string]any{"name": "scale-replicas", "type": "JSONPatch", "value": `[{"op":"replace","path":"/spec/replicas","value":3}]`}
	addDRLabel    = map[string]any{"name": "add-dr-label", "type": "MergePatch", "value": `{"metadata":{"labels":{"dr-mode":"active"}}}`}
	scaleUp       = map[string]any{"name": "scale-up", "type": "JSONPatch", "value": `[{"op":"replace","path":"/spec/replicas","value":5}]`}
	scaleDown     = map[string]any{"name": "scale-down", "type": "JSONPatch", "value": `[{"op":"replace","path":"/spec/replicas","value":1}]`}
)

// TestLocalizationPatchGuideExample4 runs the guide's 示例 4 (创建工作流, Localization Patch, kept in
// examples/fragments) on the real API server with Clusternet's CRDs: the Patch adds scale-up and
// keeps the Localization's other overrides; its Revert runs the rollback as the guide writes it,
// which adds scale-down and leaves scale-up (the webhook warns of it). A rollback that removes
// scale-up (remove: true) gives the Localization back its overrides exactly.
func TestLocalizationPatchGuideExample4(t *testing.T) {
	ns := newNamespace(t, "loc-patch")
	raw, err := os.ReadFile(example("fragments/localization-patch-action.yaml"))
	require.NoError(t, err)
	guide := strings.ReplaceAll(string(raw), "namespace: default", "namespace: "+ns)
	_, stderr, err := env.Kubectl(context.Background(), guide, "apply", "-f", "-")
	require.NoError(t, err, stderr)
	assert.Contains(t, stderr, `Warning: spec.actions[0] (update-replicas): its rollback leaves in place the overrides this Patch sets ("scale-up"), so a Revert keeps them`)
	resetLocalization(t, ns)
	runPatchAndRevert(t, ns, "guide", "localization-patch-action",
		[]any{scaleReplicas, addDRLabel, scaleUp}, []any{scaleReplicas, addDRLabel, scaleUp, scaleDown})

	// The rollback that undoes it: remove the override the Patch added.
	fixed := strings.Replace(guide, "name: localization-patch-action", "name: fixed", 1)
	i := strings.Index(fixed, "          overrides:\n")
	require.Positive(t, i)
	fixed = fixed[:i] + "          overrides:\n            - {name: scale-up, remove: true}\n"
	_, stderr, err = env.Kubectl(context.Background(), fixed, "apply", "-f", "-")
	require.NoError(t, err, stderr)
	assert.NotContains(t, stderr, "Warning")
	resetLocalization(t, ns)
	runPatchAndRevert(t, ns, "fixed", "fixed", []any{scaleReplicas, addDRLabel, scaleUp}, []any{scaleReplicas, addDRLabel})
}

// resetLocalization makes existing-app-localization in ns anew with the guide's 示例 3 overrides.
func resetLocalization(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	client := localizationClient(t, ns)
	if err := client.Delete(ctx, "existing-app-localization", metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
		require.NoError(t, err)
	}
	_, err := client.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Localization",
		"metadata": map[string]any{"name": "existing-app-localization", "namespace": ns},
		"spec": map[string]any{"priority": int64(500), "overrides": []any{scaleReplicas, addDRLabel},
			"feed": map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "my-app", "namespace": ns}},
	}}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// runPatchAndRevert runs plan (of workflow, with the guide's parameters) and then reverts it,
// checking the Localization's exact overrides after each.
func runPatchAndRevert(t *testing.T, ns, plan, workflow string, afterPatch, afterRevert []any) {
	t.Helper()
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  globalParams: [{name: drClusterNamespace, value: %[1]s}, {name: replicas, value: "5"}]
  workflowRef: {name: %[3]s}
`, ns, plan, workflow))
	waitPlanPhase(t, ns, plan, drv1.PlanReady)
	createExecution(t, ns, plan+"-run", plan)
	e := waitExecution(t, ns, plan+"-run", drv1.ExecutionSucceeded)
	assert.Equal(t, fmt.Sprintf("Localization %s/existing-app-localization patched", ns), e.Status.ActionStatuses[0].Message)
	assert.Equal(t, afterPatch, overridesOf(t, ns), "after the Patch")

	_, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Create(context.Background(), &drv1.DRPlanExecution{
		ObjectMeta: requested(t, metav1.ObjectMeta{Name: plan + "-revert"}),
		Spec:       drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: plan}, Operation: drv1.OperationRevert},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	waitExecution(t, ns, plan+"-revert", drv1.ExecutionSucceeded)
	assert.Equal(t, afterRevert, overridesOf(t, ns), "after the Revert")
	waitPlanPhase(t, ns, plan, drv1.PlanReady)
}

func overridesOf(t *testing.T, ns string) []any {
	t.Helper()
	loc, err := localizationClient(t, ns).Get(context.Background(), "existing-app-localization", metav1.GetOptions{})
	require.NoError(t, err)
	overrides, _, err := unstructured.NestedSlice(loc.Object, "spec", "overrides")
	require.NoError(t, err)
	assert.EqualValues(t, 500, loc.Object["spec"].(map[string]any)["priority"], "what the Patch does not name is kept")
	return overrides
}

func localizationClient(t *testing.T, ns string) dynamic.ResourceInterface {
	t.Helper()
	dyn, err := dynamic.NewForConfig(env.Config)
	require.NoError(t, err)
	return dyn.Resource(localizations).Namespace(ns)
}
