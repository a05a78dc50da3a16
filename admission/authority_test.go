package admission_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/bkbcs/drplan-controller/admission"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// TestValidatingComparesTheRecords: the validating webhook compares the records with the user
// the API server authenticated, whether or not the mutating webhook ran before it.
func TestValidatingComparesTheRecords(t *testing.T) {
	approve := drv1.GroupName + "/approve"
	withRequester := func(r drv1.Requester, more ...string) map[string]string {
		a := map[string]string{drv1.AnnotationRequester: r.Encode()}
		for i := 0; i+1 < len(more); i += 2 {
			a[more[i]] = more[i+1]
		}
		return a
	}
	earlier := decisions(decision(bob, approve, "yes"))
	tests := []struct {
		name     string
		kind     string
		user     drv1.Requester
		obj, old map[string]string // old nil: a create
		want     string            // "" admits
	}{
		{name: "a create recording its user", kind: "DRPlanExecution", user: alice, obj: withRequester(alice)},
		{name: "a create without a record", kind: "DRPlanExecution", user: alice, obj: map[string]string{},
			want: "metadata.annotations[dr.bkbcs.tencent.com/requester]: Required value: no requester recorded: the admission webhook was not called"},
		{name: "a create recording another user", kind: "DRPlanExecution", user: alice, obj: withRequester(bob),
			want: `records "bob", not the user making this request ("alice", as the API server authenticated them)`},
		{name: "a create recording the user with other groups", kind: "DRPlanExecution", user: alice,
			obj: withRequester(drv1.Requester{Username: "alice", UID: alice.UID, Groups: []string{"system:masters"}}), want: `records "alice", not the user`},
		{name: "a record not as the webhook writes it", kind: "DRPlanExecution", user: bob,
			obj: map[string]string{drv1.AnnotationRequester: `{"username": "bob", "groups": ["system:authenticated"]}`}, want: "not a requester record as the admission webhook writes it"},
		{name: "the controller creating for a trigger's requester", kind: "DRPlanExecution", user: controller, obj: withRequester(bob)},
		{name: "the controller creating without one", kind: "DRPlanExecution", user: controller, obj: map[string]string{},
			want: "Required value: no requester recorded"},
		{name: "a later change of the requester", kind: "DRPlanExecution", user: alice, old: withRequester(bob), obj: withRequester(alice),
			want: "metadata.annotations[dr.bkbcs.tencent.com/requester]: Forbidden: the requester is recorded when the execution is created, and never changes"},
		{name: "even by the controller", kind: "DRPlanExecution", user: controller, old: withRequester(bob), obj: withRequester(alice),
			want: "never changes"},
		{name: "a cancel recorded", kind: "DRPlanExecution", user: alice, old: withRequester(bob, drv1.AnnotationDecisions, earlier),
			obj: withRequester(bob, drv1.AnnotationCancel, "true", drv1.AnnotationDecisions, decisions(decision(bob, approve, "yes"), decision(alice, drv1.AnnotationCancel, "true")))},
		{name: "a cancel not recorded", kind: "DRPlanExecution", user: alice, old: withRequester(bob), obj: withRequester(bob, drv1.AnnotationCancel, "true"),
			want: "Required value: no decision recorded for dr.bkbcs.tencent.com/cancel: the admission webhook was not called"},
		{name: "a cancel recorded as another user", kind: "DRPlanExecution", user: alice, old: withRequester(bob),
			obj:  withRequester(bob, drv1.AnnotationCancel, "true", drv1.AnnotationDecisions, decisions(decision(bob, drv1.AnnotationCancel, "true"))),
			want: `entry 0 records user "bob", not the user making this request ("alice")`},
		{name: "an entry for what the request does not set", kind: "DRPlanExecution", user: alice, old: withRequester(bob),
			obj:  withRequester(bob, drv1.AnnotationDecisions, decisions(decision(alice, approve, "yes"))),
			want: `entry 0 records dr.bkbcs.tencent.com/approve="yes", which this request does not set`},
		{name: "an earlier entry removed", kind: "DRPlanExecution", user: alice, old: withRequester(bob, drv1.AnnotationDecisions, earlier),
			obj: withRequester(bob, drv1.AnnotationDecisions, "[]"), want: "append-only: the entries recorded cannot be changed or removed"},
		{name: "the list removed", kind: "DRPlanExecution", user: alice, old: withRequester(bob, drv1.AnnotationDecisions, earlier),
			obj: withRequester(bob), want: "append-only"},
		{name: "an earlier entry rewritten", kind: "DRPlanExecution", user: bob, old: withRequester(bob, drv1.AnnotationDecisions, earlier),
			obj: withRequester(bob, drv1.AnnotationDecisions, decisions(decision(bob, approve, "no"))), want: "append-only"},
		{name: "the controller recording a plan trigger's cancel", kind: "DRPlanExecution", user: controller, old: withRequester(bob),
			obj: withRequester(bob, drv1.AnnotationCancel, "true", drv1.AnnotationDecisions, decisions(decision(alice, drv1.AnnotationCancel, "true")))},
		{name: "an unknown annotation of ours", kind: "DRPlanExecution", user: alice, old: withRequester(bob),
			obj:  withRequester(bob, approve, "yes", drv1.AnnotationDecisions, decisions(decision(alice, approve, "yes"))),
			want: "metadata.annotations[dr.bkbcs.tencent.com/approve]: Forbidden: not an annotation of executions: of dr.bkbcs.tencent.com/ annotations, a user sets only dr.bkbcs.tencent.com/cancel"},
		{name: "an unknown annotation on a create", kind: "DRPlanExecution", user: alice, obj: withRequester(alice, drv1.GroupName+"/note", "x"),
			want: "metadata.annotations[dr.bkbcs.tencent.com/note]: Forbidden: not an annotation of executions"},
		{name: "an unknown annotation left as it was", kind: "DRPlanExecution", user: alice, old: withRequester(bob, approve, "yes"),
			obj: withRequester(bob, approve, "yes", "example.com/x", "y")},
		{name: "a decision's value over the bound", kind: "DRPlanExecution", user: alice, old: withRequester(bob),
			obj:  withRequester(bob, drv1.AnnotationCancel, strings.Repeat("x", 257), drv1.AnnotationDecisions, decisions(decision(alice, drv1.AnnotationCancel, strings.Repeat("x", 257)))),
			want: "metadata.annotations[dr.bkbcs.tencent.com/cancel]: Too long: may not be more than 256 bytes"},
		{name: "a user's trigger token", kind: "DRPlanExecution", user: alice, obj: withRequester(alice, drv1.AnnotationTriggerToken, "uid/Execute/x"),
			want: "metadata.annotations[dr.bkbcs.tencent.com/trigger-token]: Forbidden: written only by the drplan-controller"},
		{name: "a trigger token changed by a user", kind: "DRPlanExecution", user: alice, old: withRequester(bob, drv1.AnnotationTriggerToken, "a"),
			obj: withRequester(bob, drv1.AnnotationTriggerToken, "b"), want: "trigger-token]: Forbidden"},
		{name: "the controller's trigger token", kind: "DRPlanExecution", user: controller, obj: withRequester(bob, drv1.AnnotationTriggerToken, "uid/Execute/x")},
		{name: "a label-only update of an old execution", kind: "DRPlanExecution", user: controller, old: map[string]string{drv1.AnnotationCancel: "true"},
			obj: map[string]string{drv1.AnnotationCancel: "true"}},

		{name: "a trigger with its user's record", kind: "DRPlan", user: alice, old: map[string]string{},
			obj: withRequester(alice, drv1.AnnotationTrigger, "cancel")},
		{name: "a trigger without a record", kind: "DRPlan", user: alice, old: map[string]string{},
			obj: map[string]string{drv1.AnnotationTrigger: "cancel"}, want: "Required value: no requester recorded"},
		{name: "a trigger with another's record", kind: "DRPlan", user: alice, old: map[string]string{},
			obj: withRequester(bob, drv1.AnnotationTrigger, "cancel"), want: `records "bob"`},
		{name: "a record without a new trigger", kind: "DRPlan", user: alice, old: map[string]string{drv1.AnnotationTrigger: "cancel"},
			obj: withRequester(alice, drv1.AnnotationTrigger, "cancel"), want: "it cannot be set or changed otherwise"},
		{name: "the controller taking the trigger", kind: "DRPlan", user: controller, old: withRequester(alice, drv1.AnnotationTrigger, "cancel"),
			obj: map[string]string{drv1.AnnotationTriggerPending: "Execute/p-1", drv1.AnnotationTriggerPendingRequester: alice.Encode()}},
		{name: "a pending marker by hand", kind: "DRPlan", user: alice, old: map[string]string{},
			obj:  map[string]string{drv1.AnnotationTriggerPending: "Execute/p-1", drv1.AnnotationTriggerPendingRequester: alice.Encode()},
			want: "metadata.annotations[dr.bkbcs.tencent.com/trigger-pending]: Forbidden: written only by the drplan-controller"},
	}
	h := &admission.Webhook{Decider: fixture(t), Controller: controllerUser, Ready: func() bool { return true }}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var obj runtime.Object
			if tc.kind == "DRPlan" {
				p := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod", Annotations: tc.obj},
					Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}, GlobalParams: []drv1.ParamValue{{Name: "region", Value: "dr"}}}}
				obj = p
			} else {
				obj = execution("new", drv1.OperationExecute, "", func(e *drv1.DRPlanExecution) {
					e.Annotations, e.Spec.Params = tc.obj, []drv1.ParamValue{{Name: "region", Value: "dr"}}
				})
			}
			req := &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Group: drv1.GroupName, Version: "v1alpha1", Kind: tc.kind},
				Operation: admissionv1.Create, UserInfo: userInfo(tc.user), Object: raw(t, obj)}
			if tc.old != nil {
				old := obj.DeepCopyObject()
				old.(metav1.Object).SetAnnotations(tc.old)
				req.Operation, req.OldObject = admissionv1.Update, raw(t, old)
			}
			resp := h.Review(context.Background(), req)
			if tc.want == "" {
				assert.True(t, resp.Allowed, "refused: %v", resp.Result)
				return
			}
			require.False(t, resp.Allowed)
			assert.Contains(t, resp.Result.Message, tc.want)
		})
	}
}

// TestOnlyTheControllerWritesStatus: a status write of any of our kinds is refused from anyone
// but the controller's own user, also while the caches sync (it needs none).
func TestOnlyTheControllerWritesStatus(t *testing.T) {
	h := &admission.Webhook{Decider: fixture(t), Controller: controllerUser, Ready: func() bool { return false }}
	for _, k := range []struct{ kind, resource string }{{"DRPlanExecution", "drplanexecutions"}, {"DRPlan", "drplans"}, {"DRWorkflow", "drworkflows"}} {
		req := func(user drv1.Requester) *admissionv1.AdmissionRequest {
			return &admissionv1.AdmissionRequest{UID: "u", Name: "x", Operation: admissionv1.Update, SubResource: "status", UserInfo: userInfo(user),
				Kind:     metav1.GroupVersionKind{Group: drv1.GroupName, Version: "v1alpha1", Kind: k.kind},
				Resource: metav1.GroupVersionResource{Group: drv1.GroupName, Version: "v1alpha1", Resource: k.resource},
				Object:   runtime.RawExtension{Raw: object(t, k.kind, nil)}, OldObject: runtime.RawExtension{Raw: object(t, k.kind, nil)}}
		}
		resp := h.Review(context.Background(), req(alice))
		require.False(t, resp.Allowed, k.kind)
		assert.EqualValues(t, http.StatusForbidden, resp.Result.Code)
		assert.Equal(t, k.resource+`.dr.bkbcs.tencent.com "x" is forbidden: its status is written only by the drplan-controller (`+controllerUser+`), not by "alice"`, resp.Result.Message)
		assert.True(t, h.Review(context.Background(), req(controller)).Allowed, k.kind)
	}
	nobody := &admission.Webhook{Decider: fixture(t)}
	assert.False(t, nobody.Review(context.Background(), &admissionv1.AdmissionRequest{UID: "u", Operation: admissionv1.Update, SubResource: "status",
		UserInfo: userInfo(alice), Kind: metav1.GroupVersionKind{Group: drv1.GroupName, Kind: "DRPlan"}}).Allowed, "no controller known: nobody")
}

// TestControllerKnownByItsUID: when the process learned its UID, a request naming the controller's
// user without that UID (an impersonation without Impersonate-Uid) is not the controller's: its
// status writes, records of another user and controller-only annotations are refused, and the
// mutating webhook records it as itself. Without a UID learned, the name decides.
func TestControllerKnownByItsUID(t *testing.T) {
	const uid = "9d0e5b7e-1f3a-4c55-8a41-2c016f1d2c9e"
	real := controller
	real.UID = uid
	impostor := controller // the name, no UID
	status := func(user drv1.Requester) *admissionv1.AdmissionRequest {
		return &admissionv1.AdmissionRequest{UID: "u", Name: "x", Operation: admissionv1.Update, SubResource: "status", UserInfo: userInfo(user),
			Kind:     metav1.GroupVersionKind{Group: drv1.GroupName, Version: "v1alpha1", Kind: "DRPlanExecution"},
			Resource: metav1.GroupVersionResource{Group: drv1.GroupName, Version: "v1alpha1", Resource: "drplanexecutions"},
			Object:   runtime.RawExtension{Raw: object(t, "DRPlanExecution", nil)}, OldObject: runtime.RawExtension{Raw: object(t, "DRPlanExecution", nil)}}
	}
	create := func(user drv1.Requester) *admissionv1.AdmissionRequest {
		return &admissionv1.AdmissionRequest{UID: "u", Name: "x", Operation: admissionv1.Create, UserInfo: userInfo(user),
			Kind: metav1.GroupVersionKind{Group: drv1.GroupName, Version: "v1alpha1", Kind: "DRPlanExecution"},
			Object: runtime.RawExtension{Raw: object(t, "DRPlanExecution", map[string]string{drv1.AnnotationRequester: bob.Encode(),
				drv1.AnnotationTriggerToken: "pu/Execute/x"})}}
	}
	withUID := &admission.Webhook{Decider: fixture(t), Controller: controllerUser, ControllerUID: uid, Ready: func() bool { return true }}
	assert.True(t, withUID.Review(context.Background(), status(real)).Allowed, "the controller, name and UID")
	resp := withUID.Review(context.Background(), status(impostor))
	require.False(t, resp.Allowed, "the name without the UID")
	assert.Contains(t, resp.Result.Message, "its status is written only by the drplan-controller")
	resp = withUID.Review(context.Background(), create(impostor))
	require.False(t, resp.Allowed)
	assert.Contains(t, resp.Result.Message, `records "bob", not the user making this request`)
	assert.Contains(t, resp.Result.Message, "trigger-token]: Forbidden")

	m := &admission.Mutator{Controller: controllerUser, ControllerUID: uid}
	assert.Nil(t, m.Review(context.Background(), create(real)).Patch, "the controller's own create keeps the trigger's requester")
	assert.False(t, m.Review(context.Background(), create(impostor)).Allowed, "an impostor may not write the controller's trigger token")

	byName := &admission.Webhook{Decider: fixture(t), Controller: controllerUser, Ready: func() bool { return true }}
	assert.True(t, byName.Review(context.Background(), status(impostor)).Allowed, "no UID learned (no SelfSubjectReview): the name decides")
}
