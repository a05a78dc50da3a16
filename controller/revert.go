package controller

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/util/retry"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// A Revert undoes one Execute, its target: from the target's snapshot and outputs, never from
// the live plan and workflows. Stages run in the reverse order of the DAG (a stage after every
// stage that depended on it), a parallel stage's workflows in parallel, each workflow's actions
// in reverse. Per action: its rollback when it has one; otherwise the object a Create made is
// deleted (that very object, by UID); an HTTP call or a Delete is skipped, saying why. Actions
// that did not take effect in the target are skipped.

// revertTarget finds the execution a Revert undoes and asks RevertEligible whether it may.
func (c *Controller) revertTarget(ctx context.Context, exec *drv1.DRPlanExecution, plan *drv1.DRPlan) (*drv1.DRPlanExecution, string, error) {
	execs, err := c.inf.ExecutionsForPlan(plan.Namespace, plan.Name)
	if err != nil {
		return nil, "", err
	}
	// Read live: a Revert that just ended may have marked the target reverted already.
	name, target, err := rules.ChooseRevertTarget(exec, execs, func(name string) (*drv1.DRPlanExecution, error) {
		t, err := c.dr.DrV1alpha1().DRPlanExecutions(exec.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return t, err
	})
	if err != nil {
		return nil, "", err
	}
	ok, msg, err := c.rules.RevertEligible.Decide(ctx, rules.RevertVars(plan, exec, name, target), false)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, "Cannot revert: " + msg, nil
	}
	return target, "", nil
}

// prepareRevertOf prepares a Revert of target: the target's run, as the target ran it (its
// parameters and identity, so rollbacks name what it made), turned around.
func (c *Controller) prepareRevertOf(ctx context.Context, exec, target *drv1.DRPlanExecution) (*prepared, *snapshotData, string, error) {
	data, err := readSnapshot(target.Status.Snapshot)
	if err != nil {
		return nil, nil, "", fmt.Errorf("execution %s: %w", target.Name, err)
	}
	who := identity(data.Namespace, &data.Plan)
	start := target.CreationTimestamp.Time
	if target.Status.StartTime != nil {
		start = target.Status.StartTime.Time
	}
	fwd, err := prepare(target, data, c.secretReader(ctx, data.Namespace, who), start.UTC().Format(time.RFC3339), c.rules)
	if err != nil {
		return nil, nil, "", err
	}
	prep, err := reversed(fwd, target)
	if err != nil {
		return nil, nil, "", err
	}
	prep.plan.ExecutionName, prep.plan.Operation = exec.Name, drv1.OperationRevert
	return prep, data, who, nil
}

// stepKey identifies an action of a run across its status and outputs.
type stepKey struct {
	stage    string
	workflow int32
	name     string
}

// reversed turns target's prepared run around: see the top of this file.
func reversed(fwd *prepared, target *drv1.DRPlanExecution) (*prepared, error) {
	tookEffect := map[stepKey]bool{}
	for _, a := range target.Status.ActionStatuses {
		tookEffect[stepKey{a.Stage, a.WorkflowIndex, a.Name}] = a.Phase == drv1.StepSucceeded
	}
	made := map[stepKey]*drv1.ResourceReference{}
	for _, o := range target.Status.Outputs {
		k := stepKey{o.Stage, o.WorkflowIndex, o.ActionName}
		for _, ref := range []*drv1.ResourceReference{o.ResourceRef, o.JobRef, o.LocalizationRef, o.SubscriptionRef} {
			if ref != nil {
				made[k] = ref
			}
		}
	}
	dependents := map[string][]string{}
	for _, s := range fwd.plan.Stages {
		for _, d := range s.DependsOn {
			dependents[d] = append(dependents[d], s.Name)
		}
	}
	p := &prepared{planName: fwd.planName, params: fwd.params, redact: fwd.redact}
	var stages []rules.RunStage
	var nodes []rules.Node
	for si := len(fwd.plan.Stages) - 1; si >= 0; si-- {
		s := fwd.plan.Stages[si]
		rs := rules.RunStage{Name: s.Name, Parallel: s.Parallel, DependsOn: dependents[s.Name], Params: s.Params}
		nodes = append(nodes, rules.Node{Name: rs.Name, DependsOn: rs.DependsOn})
		var perWorkflow []map[string]string
		for wi, w := range s.Workflows {
			rw := rules.RunWorkflow{Ref: w.Ref, FailurePolicy: w.FailurePolicy, Params: w.Params}
			for ai := len(w.Actions) - 1; ai >= 0; ai-- {
				flat := w.First + ai
				k := stepKey{s.Name, int32(wi), w.Actions[ai]}
				body, undo, skip := undoOf(fwd.bodies[flat], fwd.rollbacks[flat], made[k], tookEffect[k], target.Name)
				rw.Actions = append(rw.Actions, w.Actions[ai])
				rw.ActionSkip = append(rw.ActionSkip, skip)
				p.bodies = append(p.bodies, body)
				p.undo = append(p.undo, undo)
				p.waits = append(p.waits, nil)
				p.rollbacks = append(p.rollbacks, nil)
			}
			rs.Workflows = append(rs.Workflows, rw)
			perWorkflow = append(perWorkflow, fwd.perWorkflow[si][wi])
		}
		stages = append(stages, rs)
		p.perWorkflow = append(p.perWorkflow, perWorkflow)
	}
	dag, errs := rules.NewDAG(field.NewPath("spec", "stages"), nodes)
	if len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	p.plan = rules.NewRunPlan(fwd.plan.Rules, fwd.plan.FailurePolicy, dag, stages)
	p.plan.Rules = fwd.plan.Rules
	p.plan.PlanName, p.plan.Namespace = fwd.plan.PlanName, fwd.plan.Namespace
	return p, nil
}

// undoOf decides how one action is undone: the body to run, or the object to delete, or why it
// is skipped.
func undoOf(body drv1.ActionBody, rollback *drv1.ActionBody, made *drv1.ResourceReference, tookEffect bool, target string) (drv1.ActionBody, *drv1.ResourceReference, string) {
	switch {
	case !tookEffect:
		return body, nil, fmt.Sprintf("Nothing to undo: it did not take effect in execution %s", target)
	case rollback != nil:
		return *rollback, nil, ""
	case body.Type == drv1.ActionTypeHTTP:
		return body, nil, "An HTTP call cannot be undone automatically (define a rollback to undo it)"
	}
	switch operationOf(body) {
	case "Delete":
		return body, nil, "A Delete cannot be undone (define a rollback to undo it)"
	case "Create":
		if made == nil {
			return body, nil, fmt.Sprintf("Nothing to undo: execution %s recorded no object made by it", target)
		}
		del := drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationDelete,
			Manifest: fmt.Sprintf("apiVersion: %s\nkind: %s\nmetadata: {name: %s, namespace: %s}\n", made.APIVersion, made.Kind, made.Name, made.Namespace)}}
		return del, made, ""
	}
	return body, nil, fmt.Sprintf("A %s without a rollback cannot be undone", operationOf(body))
}

// operationOf is an action's operation: Create, Apply, Patch or Delete (a Job always creates).
func operationOf(b drv1.ActionBody) string {
	switch {
	case b.Resource != nil:
		return string(b.Resource.Operation)
	case b.Localization != nil:
		return string(b.Localization.Operation)
	case b.Subscription != nil:
		return string(b.Subscription.Operation)
	case b.Job != nil:
		return "Create"
	}
	return ""
}

// markReverted records on a Revert's target that it was reverted, and by which execution, so
// that it is not reverted twice and its plan is Ready again. Idempotent.
func (c *Controller) markReverted(ctx context.Context, revert *drv1.DRPlanExecution, st *drv1.DRPlanExecutionStatus) error {
	if revert.Spec.Operation != drv1.OperationRevert || st.Phase != drv1.ExecutionSucceeded || st.Snapshot == nil || st.Snapshot.RevertOf == "" {
		return nil
	}
	marked := func(t *drv1.DRPlanExecution) bool { return t.Status.RevertedBy == revert.Name && rules.Reverted(t) }
	if t, ok := c.inf.GetExecution(revert.Namespace, st.Snapshot.RevertOf); ok && marked(t) {
		return nil // every sync of an ended Revert passes here: no read of the API server once done
	}
	execs := c.dr.DrV1alpha1().DRPlanExecutions(revert.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		t, err := execs.Get(ctx, st.Snapshot.RevertOf, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if marked(t) {
			return nil
		}
		t = t.DeepCopy()
		t.Status.RevertedBy = revert.Name
		at := metav1.NewTime(c.now())
		if st.CompletionTime != nil {
			at = *st.CompletionTime
		}
		meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{Type: drv1.ConditionReverted, Status: metav1.ConditionTrue,
			Reason: "Reverted", Message: "Reverted by execution " + revert.Name, LastTransitionTime: at, ObservedGeneration: t.Generation})
		_, err = updateStatus(ctx, execs, t)
		return err
	})
}
