package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bkbcs/drplan-controller/admission"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/test/fixtures"
)

// state is an in-memory admission.State.
type state struct {
	workflows  map[string]*drv1.DRWorkflow
	plans      map[string]*drv1.DRPlan
	executions map[string]*drv1.DRPlanExecution
}

func key(ns, name string) string { return ns + "/" + name }

func (s *state) GetWorkflow(ns, name string) (*drv1.DRWorkflow, bool) {
	wf, ok := s.workflows[key(ns, name)]
	return wf, ok
}

func (s *state) GetPlan(ns, name string) (*drv1.DRPlan, bool) {
	p, ok := s.plans[key(ns, name)]
	return p, ok
}

func (s *state) GetExecution(ns, name string) (*drv1.DRPlanExecution, bool) {
	e, ok := s.executions[key(ns, name)]
	return e, ok
}

func (s *state) ExecutionsForPlan(ns, name string) ([]*drv1.DRPlanExecution, error) {
	var out []*drv1.DRPlanExecution
	for _, e := range s.executions {
		if e.Spec.PlanRef.NamespaceOr(e.Namespace) == ns && e.Spec.PlanRef.Name == name {
			out = append(out, e)
		}
	}
	return out, nil
}

func execution(name string, op drv1.Operation, phase drv1.ExecutionPhase, change func(*drv1.DRPlanExecution)) *drv1.DRPlanExecution {
	e := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod"},
		Spec:   drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: op},
		Status: drv1.DRPlanExecutionStatus{Phase: phase}}
	if phase == drv1.ExecutionSucceeded {
		e.Status.Snapshot = &drv1.ExecutionSnapshot{Hash: "h"}
		done := metav1.NewTime(time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC))
		e.Status.CompletionTime = &done
	}
	if change != nil {
		change(e)
	}
	return e
}

// fixture: workflow wf (region required), plan p of it leaving region to each execution
// (spec.executionParams), and the executions given.
func fixture(t testing.TB, execs ...*drv1.DRPlanExecution) *admission.Decider {
	wf := &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "wf", Namespace: "prod"}, Spec: drv1.DRWorkflowSpec{
		Parameters: []drv1.Parameter{{Name: "region", Required: true}, fixtures.Param("replicas", "int", "2")},
		Actions:    []drv1.Action{fixtures.HTTPAction("call", "https://x/{{ .params.region }}", "")},
	}}
	p := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"},
		Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}, ExecutionParams: []string{"region"}}}
	s := &state{workflows: map[string]*drv1.DRWorkflow{key("prod", "wf"): wf}, plans: map[string]*drv1.DRPlan{key("prod", "p"): p},
		executions: map[string]*drv1.DRPlanExecution{}}
	for _, e := range execs {
		s.executions[key(e.Namespace, e.Name)] = e
	}
	decide, err := rules.New(rules.Options{}) // as the process builds them, once
	require.NoError(t, err)
	return &admission.Decider{State: s, Rules: decide}
}

func TestDecideExecution(t *testing.T) {
	region := []drv1.ParamValue{{Name: "region", Value: "dr"}}
	newExec := func(op drv1.Operation, change func(*drv1.DRPlanExecution)) *drv1.DRPlanExecution {
		return execution("new", op, "", func(e *drv1.DRPlanExecution) {
			e.Spec.Params = region
			if change != nil {
				change(e)
			}
		})
	}
	succeeded := execution("run-1", drv1.OperationExecute, drv1.ExecutionSucceeded, nil)
	tests := []struct {
		name     string
		existing []*drv1.DRPlanExecution
		exec     *drv1.DRPlanExecution
		want     string // "" admits
	}{
		{name: "an Execute with every parameter", exec: newExec(drv1.OperationExecute, nil)},
		{name: "a required parameter missing", exec: newExec(drv1.OperationExecute, func(e *drv1.DRPlanExecution) { e.Spec.Params = nil }),
			want: `spec.params: Required value: DRPlan prod/p names region in spec.executionParams: every execution must give it a value in its spec.params`},
		{name: "an undeclared parameter", exec: newExec(drv1.OperationExecute, func(e *drv1.DRPlanExecution) {
			e.Spec.Params = append(e.Spec.Params, drv1.ParamValue{Name: "regoin", Value: "x"})
		}), want: `spec.params[1].name: Invalid value: "regoin": no workflow of DRPlan prod/p declares a parameter "regoin" (did you mean "region"?)`},
		{name: "a value of the wrong type", exec: newExec(drv1.OperationExecute, func(e *drv1.DRPlanExecution) {
			e.Spec.Params = append(e.Spec.Params, drv1.ParamValue{Name: "replicas", Value: "two"})
		}), want: `spec.params[1].value: Invalid value: "two": "two" is not an int (parameter replicas is declared int)`},
		{name: "a Secret's value is checked when read", exec: newExec(drv1.OperationExecute, func(e *drv1.DRPlanExecution) {
			e.Spec.Params = append(e.Spec.Params, drv1.ParamValue{Name: "replicas", ValueFrom: &drv1.ParamValueSource{SecretKeyRef: &drv1.SecretKeySelector{Name: "s", Key: "k"}}})
		})},
		{name: "no such plan", exec: newExec(drv1.OperationExecute, func(e *drv1.DRPlanExecution) { e.Spec.PlanRef.Name = "q" }),
			want: `spec.planRef: Invalid value: "prod/q": DRPlan prod/q does not exist`},
		{name: "another execution running", existing: []*drv1.DRPlanExecution{execution("run-1", drv1.OperationExecute, drv1.ExecutionRunning, nil)},
			exec: newExec(drv1.OperationExecute, nil), want: "Plan has an execution in progress: run-1"},
		{name: "another execution just created (no phase yet)", existing: []*drv1.DRPlanExecution{execution("run-1", drv1.OperationExecute, "", nil)},
			exec: newExec(drv1.OperationExecute, nil), want: "Plan has an execution in progress: run-1"},
		{name: "earlier executions finished", existing: []*drv1.DRPlanExecution{succeeded, execution("run-0", drv1.OperationExecute, drv1.ExecutionFailed, nil)},
			exec: newExec(drv1.OperationExecute, nil)},
		{name: "a Revert of the latest Execute in effect", existing: []*drv1.DRPlanExecution{succeeded}, exec: newExec(drv1.OperationRevert, nil)},
		{name: "a Revert with nothing to revert", exec: newExec(drv1.OperationRevert, nil),
			want: "cannot revert: nothing to revert: no Execute of plan p has taken effect without being reverted since"},
		{name: "a Revert of a reverted Execute", existing: []*drv1.DRPlanExecution{execution("run-1", drv1.OperationExecute, drv1.ExecutionSucceeded, func(e *drv1.DRPlanExecution) {
			e.Status.RevertedBy = "revert-0"
			e.Status.Conditions = []metav1.Condition{{Type: drv1.ConditionReverted, Status: metav1.ConditionTrue}}
		})}, exec: newExec(drv1.OperationRevert, func(e *drv1.DRPlanExecution) { e.Spec.RevertExecutionRef = &drv1.LocalReference{Name: "run-1"} }),
			want: "cannot revert: execution run-1 was already reverted by revert-0"},
		{name: "a Revert while the Execute still runs", existing: []*drv1.DRPlanExecution{execution("run-1", drv1.OperationExecute, drv1.ExecutionRunning, nil)},
			exec: newExec(drv1.OperationRevert, func(e *drv1.DRPlanExecution) { e.Spec.RevertExecutionRef = &drv1.LocalReference{Name: "run-1"} }),
			want: "cannot revert: execution run-1 is still Running: cancel it or wait for it to end"},
		{name: "a Revert while another execution is in progress", existing: []*drv1.DRPlanExecution{succeeded, execution("run-2", drv1.OperationExecute, drv1.ExecutionPending, nil)},
			exec: newExec(drv1.OperationRevert, func(e *drv1.DRPlanExecution) { e.Spec.RevertExecutionRef = &drv1.LocalReference{Name: "run-1"} }),
			want: "Plan has an execution in progress: run-2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fixture(t, tc.existing...).Execution(context.Background(), tc.exec, nil)
			if tc.want == "" {
				assert.True(t, d.Allowed(), "refused: %v", d.Err)
				return
			}
			require.False(t, d.Allowed())
			assert.Contains(t, d.Err.Error(), tc.want)
		})
	}
}

func TestDecideUpdates(t *testing.T) {
	running := execution("run-1", drv1.OperationExecute, drv1.ExecutionRunning, nil)
	done := execution("run-1", drv1.OperationExecute, drv1.ExecutionSucceeded, nil)
	annotated := func(e *drv1.DRPlanExecution, v string) *drv1.DRPlanExecution {
		e = e.DeepCopy()
		e.Annotations = map[string]string{drv1.AnnotationCancel: v}
		return e
	}
	d := fixture(t)
	assert.True(t, d.Execution(context.Background(), annotated(running, "true"), running).Allowed(), "cancel a running one")
	assert.Contains(t, d.Execution(context.Background(), annotated(done, "true"), done).Err.Error(),
		"Forbidden: execution run-1 has already finished (Succeeded): only a Pending or Running execution can be cancelled")
	assert.True(t, d.Execution(context.Background(), annotated(done, "true"), annotated(done, "true")).Allowed(), "an annotation already there is not judged again")
	assert.Contains(t, d.Execution(context.Background(), annotated(running, "yes"), running).Err.Error(), `Unsupported value: "yes"`)

	plan := func(trigger string) *drv1.DRPlan {
		p := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"}, Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"},
			GlobalParams: []drv1.ParamValue{{Name: "region", Value: "dr"}}}}
		if trigger != "" {
			p.Annotations = map[string]string{drv1.AnnotationTrigger: trigger}
		}
		return p
	}
	without := func(p *drv1.DRPlan) *drv1.DRPlan { p.Spec.GlobalParams = nil; return p }
	leaving := func(p *drv1.DRPlan) *drv1.DRPlan { p.Spec.ExecutionParams = []string{"region"}; return without(p) }
	misspelt := func(p *drv1.DRPlan) *drv1.DRPlan { p.Spec.ExecutionParams = []string{"regoin"}; return p }
	busy := fixture(t, execution("run-1", drv1.OperationExecute, drv1.ExecutionRunning, nil))
	tests := []struct {
		name     string
		d        *admission.Decider
		new, old *drv1.DRPlan
		want     string
	}{
		{name: "execute", d: fixture(t), new: plan("execute"), old: plan("")},
		{name: "execute while one runs", d: busy, new: plan("execute"), old: plan(""), want: "Plan has an execution in progress: run-1"},
		{name: "the controller clearing the trigger", d: busy, new: plan(""), old: plan("execute")},
		{name: "cancel is always admitted", d: fixture(t), new: plan("cancel"), old: plan("")},
		{name: "an unknown trigger", d: fixture(t), new: plan("go"), old: plan(""),
			want: `metadata.annotations[dr.bkbcs.tencent.com/trigger]: Unsupported value: "go": supported values: "execute", "revert", "cancel"`},
		{name: "revert with something to revert", d: fixture(t, done), new: plan("revert"), old: plan("")},
		{name: "revert with nothing to revert", d: fixture(t), new: plan("revert"), old: plan(""), want: "cannot revert: nothing to revert"},
		{name: "a plan created with the trigger", d: busy, new: plan("execute"), want: "Plan has an execution in progress: run-1"},
		{name: "execute a plan that leaves a parameter to each execution", d: fixture(t), new: leaving(plan("execute")), old: leaving(plan("")),
			want: "metadata.annotations[dr.bkbcs.tencent.com/trigger]: Forbidden: DRPlan prod/p names region in spec.executionParams: every execution must give it a value in its spec.params, which a trigger cannot give: create a DRPlanExecution with them"},
		{name: "a plan leaving a required parameter without a value", d: fixture(t), new: without(plan("")),
			want: `spec.globalParams: Required value: required parameter region (stage "default", DRWorkflow prod/wf) has no value: set it in spec.globalParams, or name it in spec.executionParams so that every execution gives it in spec.params`},
		{name: "a plan naming it in executionParams", d: fixture(t), new: leaving(plan(""))},
		{name: "executionParams naming a parameter no workflow declares", d: fixture(t), new: misspelt(plan("")),
			want: `spec.executionParams[0]: Invalid value: "regoin": no workflow of the plan declares a parameter "regoin" (did you mean "region"?)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.d.Plan(context.Background(), tc.new, tc.old)
			if tc.want == "" {
				assert.True(t, got.Allowed(), "refused: %v", got.Err)
				return
			}
			require.False(t, got.Allowed())
			assert.Contains(t, got.Err.Error(), tc.want)
		})
	}
}

// review posts an AdmissionReview to the webhook and returns its response.
func review(t *testing.T, h http.Handler, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	body, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req})
	require.NoError(t, err)
	rw := httptest.NewRecorder()
	h.ServeHTTP(rw, httptest.NewRequest(http.MethodPost, admission.Path, bytes.NewReader(body)))
	require.Equal(t, http.StatusOK, rw.Code, rw.Body.String())
	var out admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(rw.Body.Bytes(), &out))
	require.NotNil(t, out.Response)
	assert.Equal(t, req.UID, out.Response.UID)
	return out.Response
}

func raw(t *testing.T, obj any) runtime.RawExtension {
	b, err := json.Marshal(obj)
	require.NoError(t, err)
	return runtime.RawExtension{Raw: b}
}

func TestWebhookServesReviews(t *testing.T) {
	ready := false
	h := &admission.Webhook{Decider: fixture(t), Ready: func() bool { return ready }}
	kind := func(k string) metav1.GroupVersionKind {
		return metav1.GroupVersionKind{Group: drv1.GroupName, Version: "v1alpha1", Kind: k}
	}
	exec := execution("new", drv1.OperationExecute, "", func(e *drv1.DRPlanExecution) {
		e.Spec.PlanRef.Name = "nope"
		e.Annotations = map[string]string{drv1.AnnotationRequester: alice.Encode()}
	})
	req := &admissionv1.AdmissionRequest{UID: types.UID("u1"), Kind: kind("DRPlanExecution"), Operation: admissionv1.Create, Object: raw(t, exec),
		UserInfo: userInfo(alice)}

	resp := review(t, h, req)
	assert.False(t, resp.Allowed, "refused until the caches have synced")
	assert.EqualValues(t, http.StatusServiceUnavailable, resp.Result.Code)

	ready = true
	resp = review(t, h, req)
	assert.False(t, resp.Allowed)
	assert.EqualValues(t, http.StatusUnprocessableEntity, resp.Result.Code)
	assert.Contains(t, resp.Result.Message, `DRPlanExecution.dr.bkbcs.tencent.com "new" is invalid: spec.planRef: Invalid value: "prod/nope": DRPlan prod/nope does not exist`)
	require.NotNil(t, resp.Result.Details)
	assert.Equal(t, "spec.planRef", resp.Result.Details.Causes[0].Field)

	wf := &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "w", Namespace: "prod"}, Spec: drv1.DRWorkflowSpec{Actions: []drv1.Action{fixtures.HTTPAction("n", "https://x", "")}}}
	resp = review(t, h, &admissionv1.AdmissionRequest{UID: "u2", Kind: kind("DRWorkflow"), Operation: admissionv1.Create, Object: raw(t, wf)})
	assert.True(t, resp.Allowed)
	assert.Equal(t, []string{"spec.actions[0] (n): an HTTP call without a rollback is skipped on Revert; add a rollback to undo it"}, resp.Warnings)

	resp = review(t, h, &admissionv1.AdmissionRequest{UID: "u3", Kind: kind("DRWorkflow"), Operation: admissionv1.Delete})
	assert.True(t, resp.Allowed, "deletes are not judged")
	resp = review(t, h, &admissionv1.AdmissionRequest{UID: "u4", Kind: kind("DRPlan"), Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: []byte(`{"spec": 7}`)}})
	assert.False(t, resp.Allowed)
	assert.Contains(t, resp.Result.Message, "decoding the DRPlan")

	rw := httptest.NewRecorder()
	h.ServeHTTP(rw, httptest.NewRequest(http.MethodPost, admission.Path, bytes.NewReader([]byte("not json"))))
	assert.Equal(t, http.StatusBadRequest, rw.Code)
}

func TestDecidePlanUpdatesKeepWorking(t *testing.T) {
	d := fixture(t)
	// The workflow renamed its parameter since: the plan's value names nothing now.
	bad := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"}, Spec: drv1.DRPlanSpec{Stages: []drv1.Stage{{Name: "s",
		Workflows: []drv1.StageWorkflow{{WorkflowRef: drv1.ObjectReference{Name: "wf"}, Params: []drv1.ParamValue{{Name: "regoin", Value: "x"}}}}}}}}
	annotated := bad.DeepCopy()
	annotated.Annotations = map[string]string{drv1.AnnotationAllowDelete: "true"}
	got := d.Plan(context.Background(), annotated, bad)
	assert.True(t, got.Allowed(), "a metadata change of an Invalid plan goes through: %v", got.Err)
	require.NotEmpty(t, got.Warnings)
	assert.Contains(t, got.Warnings[0], `the plan is Invalid: spec.stages[0].workflows[0].params[0].name`)

	edited := bad.DeepCopy()
	edited.Spec.Description = "edited"
	assert.False(t, d.Plan(context.Background(), edited, bad).Allowed(), "a spec change is judged")

	deleting := bad.DeepCopy()
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	deleting.Annotations = map[string]string{drv1.AnnotationTrigger: "execute"}
	got = d.Plan(context.Background(), deleting, bad)
	require.False(t, got.Allowed())
	assert.Contains(t, got.Err.Error(), "the plan is being deleted: it can still be reverted or cancelled, not executed")
}

func TestDecideExecutionOfAnotherNamespacesPlan(t *testing.T) {
	e := execution("new", drv1.OperationExecute, "", func(e *drv1.DRPlanExecution) {
		e.Namespace = "team-a"
		e.Spec.PlanRef.Namespace = "prod"
	})
	got := fixture(t).Execution(context.Background(), e, nil)
	require.False(t, got.Allowed())
	assert.Contains(t, got.Err.Error(), "spec.planRef.namespace: Forbidden: an execution runs a plan of its own namespace (team-a); create it in prod")
}
