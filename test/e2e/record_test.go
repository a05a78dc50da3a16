package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// The record of a failover cannot be lost (docs/execution.md#the-record-of-a-failover-and-the-history).

// recordRefusal is the webhook's reason for refusing to delete the Execute in effect.
func recordRefusal(exec, plan string) string {
	return fmt.Sprintf("execution %s is the failover in effect of plan %s: revert it first, or annotate the plan %s=true", exec, plan, drv1.AnnotationAllowDelete)
}

// executedPlan applies workflow wf (one HTTP call) and plan p of it in ns, runs the Execute exec to
// Succeeded and waits until the controller holds it with the record finalizer.
func executedPlan(t *testing.T, ns, exec string) {
	t.Helper()
	rec := newRecorder(t)
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/ok"))
	applyPlan(t, ns, "p", "wf")
	createExecution(t, ns, exec, "p")
	waitExecution(t, ns, exec, drv1.ExecutionSucceeded)
	waitPlanPhase(t, ns, "p", drv1.PlanExecuted)
	waitFinalizer(t, ns, exec, true)
}

// waitFinalizer waits until the execution has (or, want false, has not) FinalizerRecord.
func waitFinalizer(t *testing.T, ns, name string, want bool) *drv1.DRPlanExecution {
	t.Helper()
	return waitFor(t, fmt.Sprintf("DRPlanExecution %s/%s to have the record finalizer: %v", ns, name, want), readExecution(ns, name),
		func(e *drv1.DRPlanExecution) (bool, string) {
			return slices.Contains(e.Finalizers, drv1.FinalizerRecord) == want, fmt.Sprint(e.Finalizers)
		})
}

// readExecution reads the execution (getPlan's kin).
func readExecution(ns, name string) func() (*drv1.DRPlanExecution, error) {
	return func() (*drv1.DRPlanExecution, error) {
		return env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(context.Background(), name, metav1.GetOptions{})
	}
}

// waitExecutionGone waits until the execution does not exist.
func waitExecutionGone(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, fmt.Sprintf("DRPlanExecution %s/%s to be gone", ns, name), func() (bool, string) {
		e, err := readExecution(ns, name)()
		if err == nil {
			return false, fmt.Sprintf("still there: deleting since %v, finalizers %v, conditions %+v", e.DeletionTimestamp, e.Finalizers, e.Status.Conditions)
		}
		return apierrors.IsNotFound(err), err.Error()
	})
}

// TestRecordDeleteRefused: deleting the Execute in effect is refused with the reason (kubectl
// delete, a dry run too), and admitted once the plan carries allow-delete.
func TestRecordDeleteRefused(t *testing.T) {
	ns := newNamespace(t, "record")
	executedPlan(t, ns, "first")

	stderr := kubectlFails(t, "", "delete", "drplanexecution", "first", "-n", ns)
	assert.Contains(t, stderr, `drplanexecutions.dr.bkbcs.tencent.com "first" is forbidden: `+recordRefusal("first", "p"))
	stderr = kubectlFails(t, "", "delete", "drplanexecution", "first", "-n", ns, "--dry-run=server")
	assert.Contains(t, stderr, recordRefusal("first", "p"), "a dry run is answered alike")
	e := getExecution(t, ns, "first")
	assert.Nil(t, e.DeletionTimestamp, "refused: not even Terminating")

	kubectl(t, "annotate", "drplan", "p", "-n", ns, drv1.AnnotationAllowDelete+"=true")
	waitFinalizer(t, ns, "first", false)
	kubectl(t, "delete", "drplanexecution", "first", "-n", ns, "--timeout=30s")
	waitExecutionGone(t, ns, "first")
	waitPlanPhase(t, ns, "p", drv1.PlanReady) // what it forgot was allowed to be forgotten
}

// TestRecordKeptWithoutWebhook: with the validating webhook off, deleting the Execute in effect is
// admitted, and the record finalizer keeps it Terminating, with a DeletionBlocked event saying
// why, until a Revert undoes it; then it goes.
func TestRecordKeptWithoutWebhook(t *testing.T) {
	withoutWebhook(t)
	ctx := context.Background()
	ns := newNamespace(t, "record-nowh")
	executedPlan(t, ns, "first")

	require.NoError(t, env.DR.DrV1alpha1().DRPlanExecutions(ns).Delete(ctx, "first", metav1.DeleteOptions{}))
	eventually(t, "the DeletionBlocked event", func() (bool, string) {
		out := kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=first,reason=DeletionBlocked", "-o", "jsonpath={.items[*].message}")
		return strings.Contains(out, recordRefusal("first", "p")), out
	})
	e, err := readExecution(ns, "first")()
	require.NoError(t, err, "kept")
	assert.NotNil(t, e.DeletionTimestamp, "Terminating")
	waitPlanPhase(t, ns, "p", drv1.PlanExecuted) // the record stands: the plan still says so

	createRevert(t, ns, "back", "p", "")
	waitExecution(t, ns, "back", drv1.ExecutionSucceeded)
	waitExecutionGone(t, ns, "first")
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
}

// TestHistoryLimit: a plan keeps executionHistoryLimit finished executions besides its record;
// older ones are deleted, oldest first, with an event, while the Execute in effect stays.
func TestHistoryLimit(t *testing.T) {
	ns := newNamespace(t, "history")
	rec := newRecorder(t)
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/ok"))
	kubectlApply(t, planYAML(ns, "p", "wf")+"  executionHistoryLimit: 2\n")
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	// Three failovers, each reverted, then one left in effect: six finished runs that are no
	// record, of which the two newest are kept. (Creation times have seconds: of runs created in
	// one second the name decides, so the names count up.)
	for i := range 3 {
		createExecution(t, ns, fmt.Sprintf("run-%d", 2*i), "p")
		waitExecution(t, ns, fmt.Sprintf("run-%d", 2*i), drv1.ExecutionSucceeded)
		waitPlanPhase(t, ns, "p", drv1.PlanExecuted) // the webhook's cache has it in effect
		createRevert(t, ns, fmt.Sprintf("run-%d", 2*i+1), "p", "")
		waitExecution(t, ns, fmt.Sprintf("run-%d", 2*i+1), drv1.ExecutionSucceeded)
		waitPlanPhase(t, ns, "p", drv1.PlanReady)
		waitLockReleased(t, ns, "p")
	}
	createExecution(t, ns, "run-6", "p")
	waitExecution(t, ns, "run-6", drv1.ExecutionSucceeded)
	for _, gone := range []string{"run-0", "run-1", "run-2", "run-3"} {
		waitExecutionGone(t, ns, gone)
	}
	list, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	var left []string
	for _, e := range list.Items {
		left = append(left, e.Name)
	}
	assert.ElementsMatch(t, []string{"run-4", "run-5", "run-6"}, left, "the two newest, and the Execute in effect")
	waitPlanPhase(t, ns, "p", drv1.PlanExecuted)
	out := kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=p,reason=HistoryPruned", "-o", "jsonpath={.items[*].message}")
	assert.Contains(t, out, "beyond spec.executionHistoryLimit (2), oldest first: run-0")
}

// TestRecordNamespaceDeletionWaits: deleting the namespace of a plan whose failover is in effect
// waits, as for the plan, until the plan carries allow-delete (a Revert cannot be created in a
// namespace being deleted). Where no kube-controller-manager runs (the local backend), the test
// plays its namespace controller: it deletes the namespace's plans and executions as that does.
func TestRecordNamespaceDeletionWaits(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "record-ns")
	executedPlan(t, ns, "first")
	kubectl(t, "delete", "namespace", ns, "--wait=false")
	contents := func() error {
		if env.Pods {
			return nil // kube-controller-manager's namespace controller deletes them
		}
		del := metav1.DeleteOptions{}
		if err := env.DR.DrV1alpha1().DRPlans(ns).DeleteCollection(ctx, del, metav1.ListOptions{}); err != nil {
			return err
		}
		return env.DR.DrV1alpha1().DRPlanExecutions(ns).DeleteCollection(ctx, del, metav1.ListOptions{})
	}
	if err := contents(); !env.Pods {
		require.Error(t, err)
		assert.Contains(t, err.Error(), recordRefusal("first", "p"))
	}
	// The namespace controller's first passes (kube-controller-manager's goes through discovery
	// first: give it the suite's usual wait).
	eventually(t, "the plan to be deleting", func() (bool, string) {
		plan, err := getPlan(ns, "p")()
		if err != nil {
			return false, err.Error()
		}
		return plan.DeletionTimestamp != nil, "no deletionTimestamp yet"
	})
	time.Sleep(2 * time.Second) // and a pass more, which must not delete the record
	_, err := readExecution(ns, "first")()
	require.NoError(t, err, "the execution waits")
	_, err = getPlan(ns, "p")()
	require.NoError(t, err, "the plan waits")
	namespace, err := env.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	require.NoError(t, err, "the namespace waits")
	assert.NotNil(t, namespace.DeletionTimestamp)

	kubectl(t, "annotate", "drplan", "p", "-n", ns, drv1.AnnotationAllowDelete+"=true")
	eventually(t, "the contents to go", func() (bool, string) {
		if err := contents(); err != nil {
			return false, err.Error()
		}
		_, perr := getPlan(ns, "p")()
		_, eerr := readExecution(ns, "first")()
		return apierrors.IsNotFound(perr) && apierrors.IsNotFound(eerr), fmt.Sprint(perr, eerr)
	})
	if env.Pods {
		eventually(t, "the namespace to go", func() (bool, string) {
			_, err := env.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	}
}
