package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// TestCancel cancels runs mid-action, on the execution and through the plan: the phase is
// Cancelled at once with the guide's message while the running action finishes; actions not
// started stay Pending; the lock is released, and Complete set, once nothing is in flight.
func TestCancel(t *testing.T) {
	ns := newNamespace(t, "cancel")
	rec := newRecorder(t)
	release := rec.hold("/held")
	defer release()
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/first", "/held", "/never"))
	applyPlan(t, ns, "p", "wf")

	for _, how := range []string{"execution annotation", "plan trigger"} {
		t.Run(how, func(t *testing.T) {
			name := strings.ReplaceAll(how, " ", "-")
			arrived := rec.Arrived("/held")
			createExecution(t, ns, name, "p")
			eventually(t, "the held call to arrive", func() (bool, string) { return rec.Arrived("/held") == arrived+1, "" })
			if how == "execution annotation" {
				kubectl(t, "annotate", "drplanexecution", name, "-n", ns, drv1.AnnotationCancel+"=true")
			} else {
				kubectl(t, "annotate", "drplan", "p", "-n", ns, drv1.AnnotationTrigger+"=cancel")
			}
			e := waitExecution(t, ns, name, drv1.ExecutionCancelled)
			assert.Equal(t, "Execution cancelled by user", e.Status.Message)
			phases := []drv1.StepPhase{e.Status.ActionStatuses[0].Phase, e.Status.ActionStatuses[1].Phase, e.Status.ActionStatuses[2].Phase}
			assert.Equal(t, []drv1.StepPhase{drv1.StepSucceeded, drv1.StepRunning, drv1.StepPending}, phases, "the guide's states while the action runs")
			assert.False(t, conditionTrue(e.Status.Conditions, drv1.ConditionComplete), "not complete while an action is in flight")
			p, err := env.DR.DrV1alpha1().DRPlans(ns).Get(context.Background(), "p", metav1.GetOptions{})
			require.NoError(t, err)
			require.NotNil(t, p.Status.CurrentExecution, "the lock is held while an action is in flight")
			if how == "plan trigger" {
				// The trigger is cleared by its own write, after the cancel: wait for it.
				waitTriggerCleared(t, ns, "p")
			}

			release()
			e = waitFor(t, "the run to complete", func() (*drv1.DRPlanExecution, error) {
				return env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(context.Background(), name, metav1.GetOptions{})
			}, func(e *drv1.DRPlanExecution) (bool, string) {
				return conditionTrue(e.Status.Conditions, drv1.ConditionComplete), string(e.Status.ActionStatuses[1].Phase)
			})
			assert.Equal(t, drv1.ExecutionCancelled, e.Status.Phase)
			assert.Equal(t, drv1.StepSucceeded, e.Status.ActionStatuses[1].Phase, "the running action finished and was recorded")
			assert.Equal(t, drv1.StepPending, e.Status.ActionStatuses[2].Phase, "nothing new started")
			assert.Empty(t, rec.CallsTo("/never"))
			waitLockReleased(t, ns, "p")
			release = rec.hold("/held")
		})
	}

	// Cancelling with nothing running clears the trigger, with an event.
	kubectl(t, "annotate", "drplan", "p", "-n", ns, drv1.AnnotationTrigger+"=cancel")
	waitTriggerCleared(t, ns, "p")
	assert.Contains(t, kubectl(t, "describe", "drplan", "p", "-n", ns), "No execution of the plan is in progress")
}

// TestTriggers drives a plan with kubectl annotate, as the guide does: execute creates a
// labelled execution and clears the trigger at once, so a repeated annotate meets the webhook's
// refusal while it runs; the executions are found with the guide's label query; revert undoes
// it.
func TestTriggers(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "trigger")
	rec := newRecorder(t)
	release := rec.hold("/held")
	defer release()
	kubectlApply(t, callThenConfigMap(ns, rec.URL("/held"), "dr-mode"))
	applyPlan(t, ns, "p", "wf")

	kubectl(t, "annotate", "drplan", "p", "-n", ns, drv1.AnnotationTrigger+"=execute")
	var name string
	eventually(t, "an execution to be created", func() (bool, string) {
		list, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).List(ctx, metav1.ListOptions{LabelSelector: drv1.LabelPlan + "=p"})
		require.NoError(t, err)
		if len(list.Items) == 1 {
			name = list.Items[0].Name
			return true, ""
		}
		return false, fmt.Sprint(len(list.Items))
	})
	assert.Regexp(t, `^p-execute-\d{8}-\d{6}$`, name, "named after plan, operation and time")
	eventually(t, "the trigger to be cleared", func() (bool, string) {
		p, err := env.DR.DrV1alpha1().DRPlans(ns).Get(ctx, "p", metav1.GetOptions{})
		require.NoError(t, err)
		return len(p.Annotations) == 0 || (p.Annotations[drv1.AnnotationTrigger] == "" && p.Annotations[drv1.AnnotationTriggerPending] == ""), fmt.Sprint(p.Annotations)
	})
	_, stderr, err := env.Kubectl(ctx, "", "annotate", "drplan", "p", "-n", ns, drv1.AnnotationTrigger+"=execute")
	require.Error(t, err)
	assert.Contains(t, stderr, "Plan has an execution in progress: "+name)

	release()
	waitExecution(t, ns, name, drv1.ExecutionSucceeded)
	waitPlanPhase(t, ns, "p", drv1.PlanExecuted)
	time.Sleep(1100 * time.Millisecond) // names carry the second
	kubectl(t, "annotate", "drplan", "p", "-n", ns, drv1.AnnotationTrigger+"=revert")
	var revert string
	eventually(t, "the revert to be created", func() (bool, string) {
		out := kubectl(t, "get", "drplanexecution", "-n", ns, "-l", drv1.LabelPlan+"=p", "--sort-by=.metadata.creationTimestamp", "-o", "name")
		lines := strings.Fields(out)
		if len(lines) == 2 {
			revert = strings.TrimPrefix(lines[1], "drplanexecution.dr.bkbcs.tencent.com/")
			assert.Equal(t, "drplanexecution.dr.bkbcs.tencent.com/"+name, lines[0], "oldest first")
			return true, ""
		}
		return false, out
	})
	assert.Regexp(t, `^p-revert-\d{8}-\d{6}$`, revert)
	r := waitExecution(t, ns, revert, drv1.ExecutionSucceeded)
	assert.Equal(t, drv1.OperationRevert, r.Spec.Operation)
	_, err = env.Kube.CoreV1().ConfigMaps(ns).Get(ctx, "dr-mode", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "reverted")
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	out := kubectl(t, "get", "drplanexecution", "-n", ns, "-l", drv1.LabelPlan+"=p", "--sort-by=.metadata.creationTimestamp")
	assertColumns(t, out, []string{"NAME", "PLAN", "OPERATION", "PHASE", "AGE"}, []string{name, "p", "Execute", "Succeeded"})
}

// TestTriggerOnceAcrossRestarts plays a controller that died right after swapping a trigger for
// its pending marker, and one that was down when the trigger was set: each trigger yields
// exactly one execution.
func TestTriggerOnceAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "trigger-restart")
	rec := newRecorder(t)
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/ok"))
	applyPlan(t, ns, "p", "wf")

	withoutWebhooks(t) // the webhook is down with the controller; the test writes its records
	admin := adminRequester(t).Encode()
	require.NoError(t, env.StopController())
	kubectl(t, "annotate", "drplan", "p", "-n", ns, drv1.AnnotationTriggerPending+"=Execute/p-execute-crashed",
		drv1.AnnotationTriggerPendingRequester+"="+admin)
	env.StartController(defaultGrace)
	waitExecution(t, ns, "p-execute-crashed", drv1.ExecutionSucceeded)
	waitLockReleased(t, ns, "p")

	require.NoError(t, env.StopController())
	kubectl(t, "annotate", "drplan", "p", "-n", ns, drv1.AnnotationTrigger+"=execute", drv1.AnnotationRequester+"="+admin)
	env.StartController(defaultGrace)
	eventually(t, "exactly two executions, both done", func() (bool, string) {
		list, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		done := 0
		for _, e := range list.Items {
			if e.Status.Phase == drv1.ExecutionSucceeded {
				done++
			}
		}
		return len(list.Items) == 2 && done == 2, fmt.Sprintf("%d executions, %d done", len(list.Items), done)
	})
	time.Sleep(500 * time.Millisecond)
	list, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 2, "no trigger ran twice")
	assert.Len(t, rec.CallsTo("/ok"), 2)
}

// TestExecutedPlanIsProtected: a plan whose failover is in effect is not deleted until it is
// reverted (or deleting it anyway is allowed explicitly).
func TestExecutedPlanIsProtected(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "protect")
	rec := newRecorder(t)
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/ok"))
	for _, p := range []string{"a", "b"} {
		applyPlan(t, ns, p, "wf")
		createExecution(t, ns, p+"-run", p)
		waitExecution(t, ns, p+"-run", drv1.ExecutionSucceeded)
		plan := waitPlanPhase(t, ns, p, drv1.PlanExecuted)
		assert.Contains(t, plan.Finalizers, drv1.FinalizerExecuted)
	}

	// a: deleting waits for the revert.
	kubectl(t, "delete", "drplan", "a", "-n", ns, "--wait=false")
	time.Sleep(300 * time.Millisecond)
	plan, err := env.DR.DrV1alpha1().DRPlans(ns).Get(ctx, "a", metav1.GetOptions{})
	require.NoError(t, err, "still there")
	assert.NotNil(t, plan.DeletionTimestamp)
	eventually(t, "the event saying why", func() (bool, string) {
		out := kubectl(t, "describe", "drplan", "a", "-n", ns)
		return strings.Contains(out, "DeletionBlocked"), out
	})
	createRevert(t, ns, "a-back", "a", "")
	waitExecution(t, ns, "a-back", drv1.ExecutionSucceeded)
	eventually(t, "the plan to be deleted", func() (bool, string) {
		_, err := env.DR.DrV1alpha1().DRPlans(ns).Get(ctx, "a", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})

	// b: deleting it as it is, explicitly.
	kubectl(t, "annotate", "drplan", "b", "-n", ns, drv1.AnnotationAllowDelete+"=true")
	kubectl(t, "delete", "drplan", "b", "-n", ns, "--timeout=30s")
	_, err = env.DR.DrV1alpha1().DRPlans(ns).Get(ctx, "b", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err))
}

// waitTriggerCleared waits until the plan's trigger annotation is gone.
func waitTriggerCleared(t *testing.T, ns, plan string) {
	t.Helper()
	eventually(t, "the trigger to be cleared", func() (bool, string) {
		p, err := env.DR.DrV1alpha1().DRPlans(ns).Get(context.Background(), plan, metav1.GetOptions{})
		require.NoError(t, err)
		return p.Annotations[drv1.AnnotationTrigger] == "", p.Annotations[drv1.AnnotationTrigger]
	})
}
