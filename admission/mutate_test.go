package admission_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/bkbcs/drplan-controller/admission"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

const controllerUser = "system:serviceaccount:drplan-system:drplan-controller"

var (
	alice      = drv1.Requester{Username: "alice", UID: "a-1", Groups: []string{"dr-operators", "system:authenticated"}, Extra: map[string][]string{"team": {"sre"}}}
	bob        = drv1.Requester{Username: "bob", Groups: []string{"system:authenticated"}}
	controller = drv1.Requester{Username: controllerUser, Groups: []string{"system:serviceaccounts", "system:authenticated"}}
	decidedAt  = metav1.NewTime(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
)

func userInfo(r drv1.Requester) authenticationv1.UserInfo {
	u := authenticationv1.UserInfo{Username: r.Username, UID: r.UID, Groups: r.Groups}
	for k, v := range r.Extra {
		if u.Extra == nil {
			u.Extra = map[string]authenticationv1.ExtraValue{}
		}
		u.Extra[k] = v
	}
	return u
}

// object is the JSON of an object of kind with these annotations (none: no annotations field).
func object(t testing.TB, kind string, annotations map[string]string) []byte {
	meta := map[string]any{"name": "x", "namespace": "prod"}
	if annotations != nil {
		meta["annotations"] = annotations
	}
	b, err := json.Marshal(map[string]any{"apiVersion": "dr.bkbcs.tencent.com/v1alpha1", "kind": kind, "metadata": meta,
		"spec": map[string]any{"planRef": map[string]any{"name": "p"}}, "status": map[string]any{"phase": "Running"}})
	require.NoError(t, err)
	return b
}

func decisions(ds ...drv1.Decision) string { return drv1.EncodeDecisions(ds) }

func decision(who drv1.Requester, annotation, value string) drv1.Decision {
	return drv1.Decision{User: who, Annotation: annotation, Value: value, Time: decidedAt}
}

// TestMutatorRecordsWhoAsks: the patch computed for each case, applied as the API server applies
// it, leaves exactly the records wanted.
func TestMutatorRecordsWhoAsks(t *testing.T) {
	approve := drv1.GroupName + "/approve"
	full := make([]drv1.Decision, drv1.MaxDecisions)
	for i := range full {
		full[i] = decision(bob, approve, "yes")
	}
	tests := []struct {
		name        string
		kind        string
		op          admissionv1.Operation
		sub         string
		user        drv1.Requester
		obj, old    map[string]string
		want        map[string]string // the annotations after the patch; nil: no patch at all
		wantRefused string
	}{
		{name: "a create without annotations", kind: "DRPlanExecution", op: admissionv1.Create, user: alice,
			want: map[string]string{drv1.AnnotationRequester: alice.Encode()}},
		{name: "a create with empty annotations", kind: "DRPlanExecution", op: admissionv1.Create, user: alice, obj: map[string]string{},
			want: map[string]string{drv1.AnnotationRequester: alice.Encode()}},
		{name: "forged records are overwritten", kind: "DRPlanExecution", op: admissionv1.Create, user: alice,
			obj:  map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationDecisions: decisions(decision(bob, approve, "yes")), "team": "x"},
			want: map[string]string{drv1.AnnotationRequester: alice.Encode(), "team": "x"}},
		{name: "a create that cancels at once records it", kind: "DRPlanExecution", op: admissionv1.Create, user: alice,
			obj: map[string]string{drv1.AnnotationCancel: "true"},
			want: map[string]string{drv1.AnnotationRequester: alice.Encode(), drv1.AnnotationCancel: "true",
				drv1.AnnotationDecisions: decisions(decision(alice, drv1.AnnotationCancel, "true"))}},
		{name: "the controller keeps a trigger's requester", kind: "DRPlanExecution", op: admissionv1.Create, user: controller,
			obj: map[string]string{drv1.AnnotationRequester: bob.Encode()}},
		{name: "a cancel is appended", kind: "DRPlanExecution", op: admissionv1.Update, user: alice,
			old: map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationDecisions: decisions(decision(bob, approve, "yes"))},
			obj: map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationDecisions: decisions(decision(bob, approve, "yes")), drv1.AnnotationCancel: "true"},
			want: map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationCancel: "true",
				drv1.AnnotationDecisions: decisions(decision(bob, approve, "yes"), decision(alice, drv1.AnnotationCancel, "true"))}},
		{name: "an unknown decision is refused", kind: "DRPlanExecution", op: admissionv1.Update, user: alice,
			old:         map[string]string{drv1.AnnotationRequester: bob.Encode()},
			obj:         map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationCancel: "true", approve: "yes"},
			wantRefused: "metadata.annotations[dr.bkbcs.tencent.com/approve]: Forbidden: not an annotation of executions: of dr.bkbcs.tencent.com/ annotations, a user sets only dr.bkbcs.tencent.com/cancel"},
		{name: "an unknown annotation on a create is refused", kind: "DRPlanExecution", op: admissionv1.Create, user: alice,
			obj:         map[string]string{drv1.GroupName + "/note": "hi"},
			wantRefused: "metadata.annotations[dr.bkbcs.tencent.com/note]: Forbidden: not an annotation of executions"},
		{name: "a decision's value over the bound", kind: "DRPlanExecution", op: admissionv1.Update, user: alice,
			old:         map[string]string{drv1.AnnotationRequester: bob.Encode()},
			obj:         map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationCancel: strings.Repeat("x", drv1.MaxDecisionValueBytes+1)},
			wantRefused: "metadata.annotations[dr.bkbcs.tencent.com/cancel]: Too long: may not be more than 256 bytes"},
		{name: "a user's trigger token", kind: "DRPlanExecution", op: admissionv1.Create, user: alice,
			obj:         map[string]string{drv1.AnnotationTriggerToken: "uid/Execute/p-execute-20260301-100000"},
			wantRefused: "metadata.annotations[dr.bkbcs.tencent.com/trigger-token]: Forbidden: written only by the drplan-controller, on the execution it creates for a plan trigger"},
		{name: "a trigger token removed by a user", kind: "DRPlanExecution", op: admissionv1.Update, user: alice,
			old:         map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationTriggerToken: "t"},
			obj:         map[string]string{drv1.AnnotationRequester: bob.Encode()},
			wantRefused: "metadata.annotations[dr.bkbcs.tencent.com/trigger-token]: Forbidden"},
		{name: "another group's annotation is not ours to judge", kind: "DRPlanExecution", op: admissionv1.Update, user: alice,
			old: map[string]string{drv1.AnnotationRequester: bob.Encode()},
			obj: map[string]string{drv1.AnnotationRequester: bob.Encode(), "dr.bkbcs.tencent.com.example/x": "y"}},
		{name: "nothing recorded changes", kind: "DRPlanExecution", op: admissionv1.Update, user: alice,
			old: map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationCancel: "true"},
			obj: map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationCancel: "true", "example.com/note": "hi"}},
		{name: "a changed requester is refused here too (the validating webhook may be bypassed)", kind: "DRPlanExecution", op: admissionv1.Update, user: alice,
			old: map[string]string{drv1.AnnotationRequester: bob.Encode()}, obj: map[string]string{drv1.AnnotationRequester: alice.Encode()},
			wantRefused: "the requester is recorded when the execution is created, and never changes"},
		{name: "a removed requester too", kind: "DRPlanExecution", op: admissionv1.Update, user: alice,
			old: map[string]string{drv1.AnnotationRequester: bob.Encode()}, obj: map[string]string{},
			wantRefused: "the requester is recorded when the execution is created, and never changes"},
		{name: "a plan's pending marker written by a user", kind: "DRPlan", op: admissionv1.Update, user: alice,
			old: map[string]string{}, obj: map[string]string{drv1.AnnotationTriggerPending: "Execute/x", drv1.AnnotationTriggerPendingRequester: bob.Encode()},
			wantRefused: "written only by the drplan-controller, while it turns a trigger into an execution"},
		{name: "a plan's requester changed without a new trigger", kind: "DRPlan", op: admissionv1.Update, user: alice,
			old:         map[string]string{drv1.AnnotationTrigger: "execute", drv1.AnnotationRequester: alice.Encode()},
			obj:         map[string]string{drv1.AnnotationTrigger: "execute", drv1.AnnotationRequester: bob.Encode()},
			wantRefused: "it cannot be set or changed otherwise"},
		{name: "a hand edit of the list", kind: "DRPlanExecution", op: admissionv1.Update, user: alice,
			old:         map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationDecisions: decisions(decision(bob, approve, "yes"))},
			obj:         map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationDecisions: decisions(decision(alice, approve, "yes"))},
			wantRefused: "metadata.annotations[dr.bkbcs.tencent.com/decisions]: Forbidden: append-only, written by the admission webhook: it cannot be edited"},
		{name: "a full list", kind: "DRPlanExecution", op: admissionv1.Update, user: alice,
			old:         map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationDecisions: decisions(full...)},
			obj:         map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationDecisions: decisions(full...), drv1.AnnotationCancel: "true"},
			wantRefused: "the execution's decisions list is full: 101 entries"},
		{name: "the controller appends its own", kind: "DRPlanExecution", op: admissionv1.Update, user: controller,
			old: map[string]string{drv1.AnnotationRequester: bob.Encode()},
			obj: map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationCancel: "true", drv1.AnnotationDecisions: decisions(decision(bob, drv1.AnnotationCancel, "true"))}},
		{name: "a status write", kind: "DRPlanExecution", op: admissionv1.Update, sub: "status", user: alice,
			old: map[string]string{drv1.AnnotationRequester: bob.Encode()}, obj: map[string]string{drv1.AnnotationRequester: bob.Encode(), drv1.AnnotationCancel: "true"}},
		{name: "a trigger", kind: "DRPlan", op: admissionv1.Update, user: alice,
			old:  map[string]string{},
			obj:  map[string]string{drv1.AnnotationTrigger: "execute", drv1.AnnotationRequester: bob.Encode()},
			want: map[string]string{drv1.AnnotationTrigger: "execute", drv1.AnnotationRequester: alice.Encode()}},
		{name: "a plan created with a trigger", kind: "DRPlan", op: admissionv1.Create, user: alice,
			obj:  map[string]string{drv1.AnnotationTrigger: "cancel"},
			want: map[string]string{drv1.AnnotationTrigger: "cancel", drv1.AnnotationRequester: alice.Encode()}},
		{name: "the trigger unchanged", kind: "DRPlan", op: admissionv1.Update, user: bob,
			old: map[string]string{drv1.AnnotationTrigger: "execute", drv1.AnnotationRequester: alice.Encode()},
			obj: map[string]string{drv1.AnnotationTrigger: "execute", drv1.AnnotationRequester: alice.Encode(), "x": "y"}},
		{name: "the controller clearing the trigger", kind: "DRPlan", op: admissionv1.Update, user: controller,
			old: map[string]string{drv1.AnnotationTrigger: "execute", drv1.AnnotationRequester: alice.Encode()}, obj: map[string]string{}},
		{name: "a workflow", kind: "DRWorkflow", op: admissionv1.Create, user: alice},
	}
	m := &admission.Mutator{Controller: controllerUser, Now: func() time.Time { return decidedAt.Add(400 * time.Millisecond) }}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Group: drv1.GroupName, Version: "v1alpha1", Kind: tc.kind},
				Operation: tc.op, SubResource: tc.sub, UserInfo: userInfo(tc.user), Object: runtime.RawExtension{Raw: object(t, tc.kind, tc.obj)}}
			if tc.op == admissionv1.Update {
				req.OldObject = runtime.RawExtension{Raw: object(t, tc.kind, tc.old)}
			}
			resp := review(t, m, req)
			if tc.wantRefused != "" {
				require.False(t, resp.Allowed)
				assert.Contains(t, resp.Result.Message, tc.wantRefused)
				return
			}
			require.True(t, resp.Allowed, "refused: %v", resp.Result)
			if tc.want == nil {
				assert.Nil(t, resp.Patch, "no patch: %s", resp.Patch)
				return
			}
			require.NotNil(t, resp.PatchType)
			assert.Equal(t, admissionv1.PatchTypeJSONPatch, *resp.PatchType)
			patch, err := jsonpatch.DecodePatch(resp.Patch)
			require.NoError(t, err)
			patched, err := patch.Apply(req.Object.Raw)
			require.NoError(t, err, "patch %s", resp.Patch)
			var got struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			require.NoError(t, json.Unmarshal(patched, &got))
			assert.Equal(t, tc.want, got.Metadata.Annotations, "patch %s", resp.Patch)
			if tc.obj != nil {
				assert.Contains(t, string(resp.Patch), "/metadata/annotations/dr.bkbcs.tencent.com~1", "the key's / is escaped")
			}
		})
	}
}

// TestMutatorRefusesAnOversizedUser: a user whose record is over the bound cannot be recorded,
// and so cannot create an execution.
func TestMutatorRefusesAnOversizedUser(t *testing.T) {
	huge := drv1.Requester{Username: "carol", Groups: []string{strings.Repeat("g", drv1.MaxRequesterBytes)}}
	resp := (&admission.Mutator{Controller: controllerUser}).Review(context.Background(), &admissionv1.AdmissionRequest{UID: "u",
		Kind:      metav1.GroupVersionKind{Group: drv1.GroupName, Version: "v1alpha1", Kind: "DRPlanExecution"},
		Operation: admissionv1.Create, UserInfo: userInfo(huge), Object: runtime.RawExtension{Raw: object(t, "DRPlanExecution", nil)}})
	require.False(t, resp.Allowed)
	assert.Contains(t, resp.Result.Message, "over the limit of 16384: it cannot be recorded")
}

// TestRefusalsNameTheObject: a refusal names the object by its generateName while it has no name,
// a decode error names it too, and a plan trigger's requester is bounded as an execution's is.
func TestRefusalsNameTheObject(t *testing.T) {
	m := &admission.Mutator{Controller: controllerUser}
	kind := func(k string) metav1.GroupVersionKind {
		return metav1.GroupVersionKind{Group: drv1.GroupName, Version: "v1alpha1", Kind: k}
	}
	generated := []byte(`{"metadata":{"generateName":"run-","namespace":"prod","annotations":{"dr.bkbcs.tencent.com/note":"x"}},"spec":{"planRef":{"name":"p"}}}`)
	resp := m.Review(context.Background(), &admissionv1.AdmissionRequest{UID: "u", Kind: kind("DRPlanExecution"), Namespace: "prod",
		Operation: admissionv1.Create, UserInfo: userInfo(alice), Object: runtime.RawExtension{Raw: generated}})
	require.False(t, resp.Allowed)
	assert.Contains(t, resp.Result.Message, `DRPlanExecution.dr.bkbcs.tencent.com "run-" is invalid`)

	broken := []byte(`{"metadata":{"name":"p","namespace":"prod","annotations":{"dr.bkbcs.tencent.com/trigger":7}}}`)
	resp = m.Review(context.Background(), &admissionv1.AdmissionRequest{UID: "u", Kind: kind("DRPlan"), Name: "p", Namespace: "prod",
		Operation: admissionv1.Create, UserInfo: userInfo(alice), Object: runtime.RawExtension{Raw: broken}})
	require.False(t, resp.Allowed)
	assert.Contains(t, resp.Result.Message, `decoding the DRPlan "p" in namespace prod: `)

	huge := drv1.Requester{Username: "carol", Groups: []string{strings.Repeat("g", drv1.MaxRequesterBytes)}}
	resp = m.Review(context.Background(), &admissionv1.AdmissionRequest{UID: "u", Kind: kind("DRPlan"), Name: "x", Namespace: "prod",
		Operation: admissionv1.Create, UserInfo: userInfo(huge), Object: runtime.RawExtension{Raw: object(t, "DRPlan", map[string]string{drv1.AnnotationTrigger: "execute"})}})
	require.False(t, resp.Allowed)
	assert.Contains(t, resp.Result.Message, `DRPlan.dr.bkbcs.tencent.com "x" is invalid: metadata.annotations[dr.bkbcs.tencent.com/requester]: Forbidden: your user's record`)
	assert.Contains(t, resp.Result.Message, "over the limit of 16384: it cannot be recorded")
}
