package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
)

// operators lets users alice and bob do anything with our kinds in ns, status included (RBAC
// allows it; only the webhook says no), and returns their clients. alice is in the group
// dr-operators.
func operators(t *testing.T, ns string) (alice, bob versioned.Interface) {
	t.Helper()
	ctx := context.Background()
	_, err := env.Kube.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "dr-operators"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{drv1.GroupName}, Resources: []string{"*"}, Verbs: []string{"*"}}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = env.Kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "dr-operators"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "dr-operators"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}, {Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "bob"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	alice, _ = asUser(t, "alice", "dr-operators")
	bob, _ = asUser(t, "bob")
	return alice, bob
}

// operatorsPlan is a namespace of its own (prefix) with the operators alice and bob and a Ready
// plan "p" of one HTTP call (workflow "wf"), and their clients.
func operatorsPlan(t *testing.T, prefix string) (ns string, alice, bob versioned.Interface) {
	t.Helper()
	ns = newNamespace(t, prefix)
	alice, bob = operators(t, ns)
	kubectlApply(t, httpWorkflow(ns, "wf", newRecorder(t), "", "/ok"))
	applyPlan(t, ns, "p", "wf")
	return ns, alice, bob
}

// recorded returns the execution's requester and decisions, parsed as the controller reads them.
func recorded(t *testing.T, e *drv1.DRPlanExecution) (drv1.Requester, []drv1.Decision) {
	t.Helper()
	r, err := drv1.ParseRequester(e.Annotations[drv1.AnnotationRequester])
	require.NoError(t, err)
	ds, err := drv1.ParseDecisions(e.Annotations[drv1.AnnotationDecisions])
	require.NoError(t, err)
	return r, ds
}

func annotate(t *testing.T, client versioned.Interface, ns, name string, annotations map[string]string) (*drv1.DRPlanExecution, error) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	require.NoError(t, err)
	return client.DrV1alpha1().DRPlanExecutions(ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{})
}

// TestRequesterRecorded: the user creating an execution is recorded as the API server
// authenticated them, whatever the client sent; kubectl shows it (-o wide, describe, the
// ExecutionStarted event); nobody changes it later, nor edits the decisions list by hand.
func TestRequesterRecorded(t *testing.T) {
	ctx := context.Background()
	ns, alice, _ := operatorsPlan(t, "requester")

	forged := drv1.Requester{Username: "system:admin", Groups: []string{"system:masters"}}
	e, err := alice.DrV1alpha1().DRPlanExecutions(ns).Create(ctx, &drv1.DRPlanExecution{
		ObjectMeta: metav1.ObjectMeta{Name: "run", Annotations: map[string]string{drv1.AnnotationRequester: forged.Encode(),
			drv1.AnnotationDecisions: drv1.EncodeDecisions([]drv1.Decision{{User: forged, Annotation: drv1.AnnotationCancel, Value: "false", Time: metav1.Now()}})}},
		Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	r, ds := recorded(t, e)
	assert.Equal(t, "alice", r.Username, "the forged value is overwritten")
	assert.Contains(t, r.Groups, "dr-operators")
	assert.Contains(t, r.Groups, "system:authenticated")
	assert.Empty(t, ds, "a client's decisions list is no record")
	waitExecution(t, ns, "run", drv1.ExecutionSucceeded)

	out := kubectl(t, "get", "drplanexecution", "run", "-n", ns, "-o", "wide")
	assert.Contains(t, strings.Fields(strings.SplitN(out, "\n", 2)[0]), "REQUESTER")
	assert.Contains(t, out, `{"username":"alice"`)
	eventually(t, "the ExecutionStarted event", func() (bool, string) {
		out := kubectl(t, "describe", "drplanexecution", "run", "-n", ns)
		return strings.Contains(out, "Execution started for plan p, requested by alice") && strings.Contains(out, drv1.AnnotationRequester), out
	})

	// Nobody changes the record afterwards: not alice, not the cluster admin.
	for _, who := range []versioned.Interface{alice, env.DR} {
		_, err = annotate(t, who, ns, "run", map[string]string{drv1.AnnotationRequester: forged.Encode()})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "metadata.annotations[dr.bkbcs.tencent.com/requester]: Forbidden: the requester is recorded when the execution is created, and never changes")
	}
	// Nor edits the decisions list by hand.
	stderr := kubectlFails(t, "", "annotate", "drplanexecution", "run", "-n", ns, "--overwrite", drv1.AnnotationDecisions+"=[]")
	assert.Contains(t, stderr, "metadata.annotations[dr.bkbcs.tencent.com/decisions]: Forbidden: append-only, written by the admission webhook: it cannot be edited")
}

// TestTriggerRecordsItsUser: the user who sets a plan's trigger is the requester of the execution
// the controller creates for it (the controller's own create keeps it); nobody else writes that
// record on the plan.
func TestTriggerRecordsItsUser(t *testing.T) {
	ctx := context.Background()
	ns, alice, bob := operatorsPlan(t, "trigger-user")

	// alice writes a record on the plan by hand, without a trigger: refused.
	plan, err := alice.DrV1alpha1().DRPlans(ns).Get(ctx, "p", metav1.GetOptions{})
	require.NoError(t, err)
	plan.Annotations = map[string]string{drv1.AnnotationRequester: drv1.Requester{Username: "alice"}.Encode()}
	_, err = alice.DrV1alpha1().DRPlans(ns).Update(ctx, plan, metav1.UpdateOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "it cannot be set or changed otherwise")

	patch := []byte(`{"metadata":{"annotations":{"` + drv1.AnnotationTrigger + `":"execute","` + drv1.AnnotationRequester + `":"{\"username\":\"alice\"}"}}}`)
	_, err = bob.DrV1alpha1().DRPlans(ns).Patch(ctx, "p", types.MergePatchType, patch, metav1.PatchOptions{})
	require.NoError(t, err, "bob's trigger, with alice's name forged on it")
	var e *drv1.DRPlanExecution
	eventually(t, "the triggered execution", func() (bool, string) {
		list, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		if len(list.Items) != 1 {
			return false, fmt.Sprint(len(list.Items))
		}
		e = &list.Items[0]
		return true, ""
	})
	r, _ := recorded(t, e)
	assert.Equal(t, "bob", r.Username, "the trigger's user, not the forged one nor the controller")
	waitExecution(t, ns, e.Name, drv1.ExecutionSucceeded)
	eventually(t, "the plan's event", func() (bool, string) {
		out := kubectl(t, "describe", "drplan", "p", "-n", ns)
		return strings.Contains(out, "Created DRPlanExecution "+e.Name+" (Execute) for "+drv1.AnnotationTrigger+", requested by bob"), out
	})
	eventually(t, "the trigger's records to go with its pending marker", func() (bool, string) {
		p, err := env.DR.DrV1alpha1().DRPlans(ns).Get(ctx, "p", metav1.GetOptions{})
		require.NoError(t, err)
		return p.Annotations[drv1.AnnotationRequester] == "" && p.Annotations[drv1.AnnotationTriggerPendingRequester] == "" &&
			p.Annotations[drv1.AnnotationTriggerPending] == "", fmt.Sprint(p.Annotations)
	})
}

// TestDecisionsRecordWhoCancelled: a cancel on the execution, and one through the plan's trigger,
// are recorded in the decisions list with their user; another annotation of ours is refused; the
// run is cancelled with the guide's message.
func TestDecisionsRecordWhoCancelled(t *testing.T) {
	ns := newNamespace(t, "decisions")
	alice, bob := operators(t, ns)
	rec := newRecorder(t)
	release := rec.hold("/held")
	defer release()
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/held", "/never"))
	applyPlan(t, ns, "p", "wf")

	for i, how := range []string{"on the execution", "through the plan"} {
		name := fmt.Sprintf("run-%d", i)
		createExecution(t, ns, name, "p")
		eventually(t, "the held call to arrive", func() (bool, string) { return rec.Arrived("/held") == i+1, "" })
		// Only decisions are recorded: an annotation of ours that is not one is refused.
		_, err := annotate(t, alice, ns, name, map[string]string{drv1.GroupName + "/note": "first"})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "metadata.annotations[dr.bkbcs.tencent.com/note]: Forbidden: not an annotation of executions: of dr.bkbcs.tencent.com/ annotations, a user sets only dr.bkbcs.tencent.com/cancel")
		if how == "on the execution" {
			_, err = annotate(t, bob, ns, name, map[string]string{drv1.AnnotationCancel: "true"})
		} else {
			_, err = bob.DrV1alpha1().DRPlans(ns).Patch(context.Background(), "p", types.MergePatchType,
				[]byte(`{"metadata":{"annotations":{"`+drv1.AnnotationTrigger+`":"cancel"}}}`), metav1.PatchOptions{})
		}
		require.NoError(t, err)
		e := waitExecution(t, ns, name, drv1.ExecutionCancelled)
		assert.Equal(t, "Execution cancelled by user", e.Status.Message)
		_, ds := recorded(t, e)
		require.Len(t, ds, 1, how)
		assert.Equal(t, []string{"bob", drv1.AnnotationCancel, "true"}, []string{ds[0].User.Username, ds[0].Annotation, ds[0].Value}, how)
		release()
		waitLockReleased(t, ns, "p")
		release = rec.hold("/held")
	}
	assert.Empty(t, rec.CallsTo("/never"))
}

// TestOnlyTheControllerWritesStatus: a status write by anyone but the controller's own user is
// refused (RBAC would allow it), the cluster admin's included; the controller's own go through.
func TestOnlyTheControllerWritesStatus(t *testing.T) {
	ctx := context.Background()
	ns, alice, _ := operatorsPlan(t, "status-writer")
	createExecution(t, ns, "run", "p")
	waitExecution(t, ns, "run", drv1.ExecutionSucceeded) // the controller's writes went through

	forged := []byte(`{"status":{"phase":"Failed","message":"forged"}}`) // no resourceVersion: nothing but the webhook says no
	for who, client := range map[string]versioned.Interface{"alice": alice, adminRequester(t).Username: env.DR} {
		_, err := client.DrV1alpha1().DRPlanExecutions(ns).Patch(ctx, "run", types.MergePatchType, forged, metav1.PatchOptions{}, "status")
		require.Error(t, err, who)
		assert.True(t, apierrors.IsForbidden(err), "%v", err)
		assert.Contains(t, err.Error(), `drplanexecutions.dr.bkbcs.tencent.com "run" is forbidden: its status is written only by the drplan-controller (`+env.ControllerUser+`), not by "`+who+`"`)
		_, err = client.DrV1alpha1().DRPlans(ns).Patch(ctx, "p", types.MergePatchType, []byte(`{"status":{"phase":"Invalid"}}`), metav1.PatchOptions{}, "status")
		assert.True(t, apierrors.IsForbidden(err), "the plan's status too: %v", err)
	}
	kept, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(ctx, "run", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, drv1.ExecutionSucceeded, kept.Status.Phase)

	controller := asController(t)
	assert.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := controller.DrV1alpha1().DRPlanExecutions(ns).Get(ctx, "run", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status.Message = "written as the controller"
		_, err = controller.DrV1alpha1().DRPlanExecutions(ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	}), "the controller's own user")
}

// TestControllerStatusWritesNeedNoWebhook: the API server does not call the webhook for the
// controller's own status writes (the status entry's matchConditions), so they pass while no
// replica serves it, as in the shutdown grace of a scale-down; everyone else's still need the
// webhook, and are not admitted without it, the controller's name impersonated without its UID
// included.
func TestControllerStatusWritesNeedNoWebhook(t *testing.T) {
	ctx := context.Background()
	ns, alice, _ := operatorsPlan(t, "status-no-webhook")
	createExecution(t, ns, "run", "p")
	waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	waitLockReleased(t, ns, "p")

	require.NoError(t, env.StopController()) // the webhooks stay registered, with nothing serving them
	defer env.StartController(defaultGrace)
	write := func(client versioned.Interface, message string) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := client.DrV1alpha1().DRPlanExecutions(ns).Get(ctx, "run", metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Status.Message = message
			_, err = client.DrV1alpha1().DRPlanExecutions(ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
			return err
		})
	}
	assert.NoError(t, write(asController(t), "written as the controller, no webhook serving"))
	assert.Error(t, write(alice, "forged"), "alice's status write needs the webhook")
	assert.Error(t, write(env.DR, "forged"), "the admin's too")
	if strings.HasPrefix(env.ControllerUser, "system:serviceaccount:") {
		cfg := rest.CopyConfig(env.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: env.ControllerUser}
		nameOnly, err := versioned.NewForConfig(cfg)
		require.NoError(t, err)
		assert.Error(t, write(nameOnly, "forged"), "the controller's name without its UID is not the controller")
	}
	e, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(ctx, "run", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "written as the controller, no webhook serving", e.Status.Message)
}

// TestNoRequesterFailsClosed: with the mutating webhook unregistered, a new execution is refused
// for want of a requester; with no webhook at all, one created without a record never runs.
func TestNoRequesterFailsClosed(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "no-requester")
	rec := newRecorder(t)
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/never"))
	applyPlan(t, ns, "p", "wf")

	require.NoError(t, env.SetMutatingWebhook(false))
	t.Cleanup(func() { require.NoError(t, env.SetMutatingWebhook(true)) })
	stderr := kubectlFails(t, fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlanExecution\nmetadata: {name: refused, namespace: %s}\nspec: {planRef: {name: p}}\n", ns),
		"apply", "-f", "-")
	assert.Contains(t, stderr, "metadata.annotations[dr.bkbcs.tencent.com/requester]: Required value: no requester recorded: the admission webhook was not called")

	withoutWebhook(t)
	_, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Create(ctx, &drv1.DRPlanExecution{
		ObjectMeta: metav1.ObjectMeta{Name: "unrecorded"}, Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	e := waitExecution(t, ns, "unrecorded", drv1.ExecutionFailed)
	assert.Equal(t, "no requester recorded: the admission webhook was not called", e.Status.Message)
	assert.Empty(t, rec.CallsTo("/never"), "no side effect")
	waitLockReleased(t, ns, "p")

	// A trigger set meanwhile is ignored, saying why.
	kubectl(t, "annotate", "drplan", "p", "-n", ns, drv1.AnnotationTrigger+"=execute")
	eventually(t, "the trigger to be refused", func() (bool, string) {
		out := kubectl(t, "describe", "drplan", "p", "-n", ns)
		return strings.Contains(out, "Ignored "+drv1.AnnotationTrigger+"=execute: no requester recorded: the admission webhook was not called"), out
	})
	list, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 1, "the trigger created nothing")
}
