package controller

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/templates"
)

// statusBudget bounds an execution's status as written, in bytes of JSON. With the object's
// metadata and spec (its annotations at most 256 KiB, by the API server) the object stays under
// etcd's 1.5 MiB limit on a write. docs/execution.md ("How big a status gets") does the sums.
const statusBudget = 1 << 20

// fitStatus makes st's JSON fit within budget by shortening its free texts, all to one cap, the
// largest that fits: the messages of stages, workflows and actions, the parameter values shown,
// and the recorded HTTP bodies. A run of twenty actions keeps them whole; one of 2,000 whose
// every message and body is long keeps a few hundred bytes of each. The run's own message and
// conditions are kept, and so is what a resume and a Revert read (phases, references, the
// snapshot): when those alone are over budget, fits is false and the write tells whether the
// API server takes it. st is shortened in place; its JSON is returned.
func fitStatus(st *drv1.DRPlanExecutionStatus, budget int) (raw []byte, fits bool, err error) {
	if raw, err = json.Marshal(st); err != nil || len(raw) <= budget {
		return raw, err == nil, err
	}
	texts := freeTexts(st)
	excess := len(raw) - budget
	saved := func(limit int) int {
		n := 0
		for _, t := range texts {
			if len(t.was) > limit {
				n += t.size - jsonSize(drv1.TruncateText(t.was, limit))
			}
		}
		return n
	}
	// The largest limit that saves enough: saved shrinks as the limit grows.
	longest := 0
	for _, t := range texts {
		longest = max(longest, len(t.was))
	}
	limit := sort.Search(longest+1, func(l int) bool { return saved(l) < excess }) - 1
	for _, t := range texts {
		t.set(drv1.TruncateText(t.was, max(limit, 0)))
	}
	if raw, err = json.Marshal(st); err != nil {
		return nil, false, err
	}
	return raw, len(raw) <= budget, nil
}

// freeText is one text of a status that may be shortened: its value, the size of its JSON, and
// how to replace it.
type freeText struct {
	was  string
	size int
	set  func(string)
}

func freeTexts(st *drv1.DRPlanExecutionStatus) []freeText {
	var texts []freeText
	at := func(p *string) {
		if *p != "" {
			texts = append(texts, freeText{was: *p, size: jsonSize(*p), set: func(s string) { *p = s }})
		}
	}
	values := func(m map[string]string) {
		for k, v := range m {
			texts = append(texts, freeText{was: v, size: jsonSize(v), set: func(s string) { m[k] = s }})
		}
	}
	values(st.ResolvedParams)
	for si := range st.StageStatuses {
		s := &st.StageStatuses[si]
		at(&s.Message)
		for wi := range s.WorkflowExecutions {
			at(&s.WorkflowExecutions[wi].Message)
			values(s.WorkflowExecutions[wi].ResolvedParams)
		}
	}
	for i := range st.ActionStatuses {
		at(&st.ActionStatuses[i].Message)
	}
	for i := range st.Outputs {
		if r := st.Outputs[i].HTTPResponse; r != nil {
			at(&r.Body)
		}
	}
	return texts
}

// jsonSize is the size of s written as a JSON string (quotes and escapes included).
func jsonSize(s string) int {
	b, _ := json.Marshal(s) // a string always marshals
	return len(b)
}

// leanStatus is st without what is there only for people to read (messages, parameter values
// shown, HTTP bodies), keeping what a Revert reads: every action's phase, the outputs'
// references and the snapshot. It is what a run whose status was refused for its size ends with.
func leanStatus(st *drv1.DRPlanExecutionStatus) *drv1.DRPlanExecutionStatus {
	lean := st.DeepCopy()
	for _, t := range freeTexts(lean) {
		t.set("")
	}
	return lean
}

// tooLarge reports a write refused for its size: by the API server (413), or by etcd behind it
// ("etcdserver: request is too large", which the API server passes on as an internal error).
func tooLarge(err error) bool {
	return apierrors.IsRequestEntityTooLargeError(err) || (err != nil && strings.Contains(err.Error(), "request is too large"))
}

// statusFloor is the least size of st's JSON once its run has ended, whatever its texts: every
// stage, workflow and action finished (times, durations, progress, retries), every action with
// its output (a reference to the object its rendered body names, or an HTTP status), the run's
// message and conditions at their cap. A run whose floor is over statusBudget is not started: its
// status could not be written, and so neither could what a Revert needs.
func statusFloor(st *drv1.DRPlanExecutionStatus, bodies []drv1.ActionBody, namespace string) (int, error) {
	end := leanStatus(st)
	when := metav1.NewTime(time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC))
	const longest = "999h59m59s"
	for si := range end.StageStatuses {
		s := &end.StageStatuses[si]
		s.Phase, s.StartTime, s.CompletionTime, s.Duration = drv1.StepCancelled, &when, &when, longest
		for wi := range s.WorkflowExecutions {
			w := &s.WorkflowExecutions[wi]
			w.Phase, w.StartTime, w.CompletionTime, w.Duration = drv1.StepCancelled, &when, &when, longest
			w.Progress = "200/200 actions completed"
		}
	}
	for i := range end.ActionStatuses {
		a := &end.ActionStatuses[i]
		a.Phase, a.StartTime, a.CompletionTime, a.RetryCount = drv1.StepCancelled, &when, &when, 10
		out := drv1.ActionOutput{ActionName: a.Name, Stage: a.Stage, WorkflowIndex: a.WorkflowIndex}
		if bodies[i].Type == drv1.ActionTypeHTTP {
			out.HTTPResponse = &drv1.HTTPResponse{StatusCode: 200}
		} else {
			out.ResourceRef = madeRef(bodies[i], namespace)
		}
		end.Outputs = append(end.Outputs, out)
	}
	message := strings.Repeat("x", maxMessage)
	end.Phase, end.Message, end.StartTime, end.CompletionTime = drv1.ExecutionSucceeded, message, &when, &when
	end.Summary = &drv1.ExecutionSummary{TotalStages: 100, CompletedStages: 100, TotalWorkflows: 10000, CompletedWorkflows: 10000}
	for _, c := range []string{drv1.ConditionComplete, "Succeeded", drv1.ConditionRetried, drv1.ConditionReverted} {
		end.Conditions = append(end.Conditions, metav1.Condition{Type: c, Status: metav1.ConditionTrue, Reason: "Succeeded",
			Message: message, LastTransitionTime: when, ObservedGeneration: 1})
	}
	raw, err := json.Marshal(end)
	return len(raw), err
}

// madeRef is the reference an action's output will hold, as long as its rendered body says: the
// object's own names where the body has them, a generated name's five characters, and the
// longest a name (253) or namespace (63) may be where it does not.
func madeRef(b drv1.ActionBody, namespace string) *drv1.ResourceReference {
	ref := &drv1.ResourceReference{APIVersion: strings.Repeat("x", 63), Kind: strings.Repeat("x", 63),
		Name: strings.Repeat("x", 253), Namespace: namespace, UID: "00000000-0000-0000-0000-000000000000"}
	named := func(name, generateName string) string {
		if name != "" {
			return name
		}
		return generateName + "xxxxx"
	}
	switch {
	case b.Resource != nil:
		if obj, err := templates.CheckManifest(nil, b.Resource.Manifest, b.Resource.Operation); err == nil {
			ref.APIVersion, ref.Kind, ref.Name = obj.GetAPIVersion(), obj.GetKind(), named(obj.GetName(), obj.GetGenerateName())
			if obj.GetNamespace() != "" {
				ref.Namespace = obj.GetNamespace()
			}
		}
	case b.Job != nil:
		ref.APIVersion, ref.Kind, ref.Name, ref.Namespace = "batch/v1", "Job", named(b.Job.Name, b.Job.GenerateName), b.Job.Namespace
	case b.Localization != nil:
		ref.APIVersion, ref.Kind, ref.Name, ref.Namespace = "apps.clusternet.io/v1alpha1", "Localization", b.Localization.Name, b.Localization.Namespace
	case b.Subscription != nil:
		ref.APIVersion, ref.Kind, ref.Name, ref.Namespace = "apps.clusternet.io/v1alpha1", "Subscription", b.Subscription.Name, b.Subscription.Namespace
	}
	return ref
}
