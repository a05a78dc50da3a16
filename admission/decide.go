package admission

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/bkbcs/drplan-controller/access"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/validation"
)

// State is what admission reads of the cluster (the controller's informer caches). A cache a
// moment behind can let a duplicate execution in; the controller's lock still runs one at a time.
type State interface {
	validation.WorkflowGetter
	// GetPlan returns the plan, or false when it does not exist.
	GetPlan(namespace, name string) (*drv1.DRPlan, bool)
	// GetExecution returns the execution, or false when it does not exist.
	GetExecution(namespace, name string) (*drv1.DRPlanExecution, bool)
	// ExecutionsForPlan lists the executions of the plan namespace/name.
	ExecutionsForPlan(namespace, name string) ([]*drv1.DRPlanExecution, error)
}

// Decision is the answer to one admission request: refused when Err is set; warnings either way.
type Decision struct {
	Err      *apierrors.StatusError
	Warnings []string
}

// Allowed reports whether the request is admitted.
func (d Decision) Allowed() bool { return d.Err == nil }

// Decider takes the admission decisions, through the same CEL rules as the controller.
type Decider struct {
	State State
	// Rules decide locks and reverts; their Env compiles the guards the static checks read.
	Rules *rules.Rules
	// Access, when set, checks rights: the requester's for a run, the author's for a plan, and
	// the objects no action may touch (docs/security.md).
	Access *access.Authorizer
	// User is who asks: set per request.
	User drv1.Requester
}

// TriggerValues are the values of the plan annotation dr.bkbcs.tencent.com/trigger.
var TriggerValues = []string{"execute", "revert", "cancel"}

// Workflow admits a workflow whose spec is sound, warning about actions that Revert cannot undo.
func (d *Decider) Workflow(wf *drv1.DRWorkflow) Decision {
	if errs := validation.ValidateWorkflow(d.Rules.Env, wf); len(errs) > 0 {
		return Decision{Err: invalid("DRWorkflow", wf.Name, errs)}
	}
	if err := d.staticRights(wf); err != nil {
		return Decision{Err: err}
	}
	return Decision{Warnings: workflowWarnings(wf)}
}

// workflowWarnings are legal but likely surprising: actions that Revert skips, and Localization
// Patches whose rollback leaves overrides they set.
func workflowWarnings(wf *drv1.DRWorkflow) []string {
	var warnings []string
	for i, a := range wf.Spec.Actions {
		where := fmt.Sprintf("spec.actions[%d] (%s)", i, a.Name)
		if a.Rollback != nil {
			warnings = append(warnings, overridesLeft(where, a)...)
			continue
		}
		switch {
		case a.Type == drv1.ActionTypeHTTP:
			warnings = append(warnings, where+": an HTTP call without a rollback is skipped on Revert; add a rollback to undo it")
		case a.Resource != nil && a.Resource.Operation == drv1.OperationDelete,
			a.Localization != nil && a.Localization.Operation == "Delete",
			a.Subscription != nil && a.Subscription.Operation == "Delete":
			warnings = append(warnings, where+": a Delete cannot be undone; Revert skips it unless you add a rollback")
		}
	}
	return warnings
}

// Plan admits a plan whose stages and parameters are sound. A workflow that does not exist yet
// (or is Invalid) is a warning, not a refusal, so a directory of manifests applies in any order;
// the plan is Invalid in its status until it is fixed. A new dr.bkbcs.tencent.com/trigger value
// must be one the controller knows, and execute or revert must be possible now.
//
// An update that leaves the spec as it was is never refused for the spec's errors (a workflow
// it references may have changed since): metadata changes (the controller's finalizer and
// trigger bookkeeping, allow-delete, a revert or cancel trigger) must go through.
//
// Of other namespaces, it reads only the workflows the user may get (scope.go): the answer is the
// same whether one they may not get exists or not.
func (d *Decider) Plan(ctx context.Context, plan, old *drv1.DRPlan) Decision {
	in, s := d.scope(ctx, plan.Namespace)
	return s.unless(in.plan(ctx, plan, old), "DRPlan", orGenerated(plan.ObjectMeta))
}

func (d *Decider) plan(ctx context.Context, plan, old *drv1.DRPlan) Decision {
	report := validation.ValidatePlan(d.Rules.Env, plan, d.State)
	specChanged := old == nil || !equality.Semantic.DeepEqual(old.Spec, plan.Spec)
	var warnings []string
	if len(report.Errors) > 0 {
		if specChanged && plan.DeletionTimestamp == nil {
			return Decision{Err: invalid("DRPlan", plan.Name, report.Errors)}
		}
		for _, e := range report.Errors {
			warnings = append(warnings, "the plan is Invalid: "+e.Error())
		}
	}
	for _, u := range report.Unresolved {
		warnings = append(warnings, u+": the plan stays Invalid until it is fixed")
	}
	if specChanged && plan.DeletionTimestamp == nil {
		if err := d.asController(plan, "DRPlan", plan.Name); err != nil {
			return Decision{Err: err}
		}
		if err := d.planRights(ctx, d.User, plan, "DRPlan", orGenerated(plan.ObjectMeta)); err != nil {
			return Decision{Err: err} // no warning: of a workflow they may not read, "not found"
		}
	}
	trigger := plan.Annotations[drv1.AnnotationTrigger]
	if old != nil && old.Annotations[drv1.AnnotationTrigger] == trigger || trigger == "" {
		return Decision{Warnings: warnings} // not a new trigger (the controller clearing it included)
	}
	path := field.NewPath("metadata", "annotations").Key(drv1.AnnotationTrigger)
	var err *apierrors.StatusError
	switch trigger {
	case "execute", "revert":
		if d.Access != nil {
			if err := d.planRights(ctx, d.User, plan, "DRPlan", plan.Name); err != nil {
				return Decision{Err: err}
			}
			break // runRights judges the rendered actions, templated apiVersions included
		}
		if err := d.asController(plan, "DRPlan", plan.Name); err != nil {
			return Decision{Err: err, Warnings: warnings}
		}
	}
	switch trigger {
	case "execute":
		if plan.DeletionTimestamp != nil {
			err = invalid("DRPlan", plan.Name, field.ErrorList{field.Forbidden(path, "the plan is being deleted: it can still be reverted or cancelled, not executed")})
			break
		}
		if err = d.executable(ctx, plan, report, path, nil); err == nil {
			err = d.runRights(ctx, plan, &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Namespace: plan.Namespace},
				Spec: drv1.DRPlanExecutionSpec{Operation: drv1.OperationExecute}}, nil, "DRPlan", plan.Name)
		}
	case "revert":
		revert := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Namespace: plan.Namespace},
			Spec: drv1.DRPlanExecutionSpec{Operation: drv1.OperationRevert}}
		var target *drv1.DRPlanExecution
		if target, err = d.revertible(ctx, plan, revert, path); err == nil {
			err = d.runRights(ctx, plan, revert, target, "DRPlan", plan.Name)
		}
	case "cancel":
		// Admitted from whoever may update the executions it cancels: with nothing running, the
		// controller clears it with an event.
		err = d.cancelRights(ctx, plan)
	default:
		err = invalid("DRPlan", plan.Name, field.ErrorList{field.NotSupported(path, trigger, TriggerValues)})
	}
	return Decision{Err: err, Warnings: warnings}
}

// Execution admits a new execution that can run now: its plan exists, an Execute's plan is valid
// and the execution gives every parameter the plan's spec.executionParams names, a Revert's target is eligible, and no other execution
// of the plan is in progress. An update may only set the cancel annotation on a running one (the
// CRD keeps spec immutable). Of other namespaces, it reads only what the user may (scope.go).
func (d *Decider) Execution(ctx context.Context, exec, old *drv1.DRPlanExecution) Decision {
	in, s := d.scope(ctx, exec.Namespace)
	return s.unless(in.execution(ctx, exec, old), "DRPlanExecution", orGenerated(exec.ObjectMeta))
}

func (d *Decider) execution(ctx context.Context, exec, old *drv1.DRPlanExecution) Decision {
	if old != nil {
		return Decision{Err: d.cancelUpdate(exec, old)}
	}
	planNS, planName := exec.Spec.PlanRef.NamespaceOr(exec.Namespace), exec.Spec.PlanRef.Name
	if planNS != exec.Namespace {
		// Whoever may create executions here must not run another namespace's plan with the
		// controller's rights.
		return Decision{Err: invalid("DRPlanExecution", exec.Name, field.ErrorList{field.Forbidden(field.NewPath("spec", "planRef", "namespace"),
			fmt.Sprintf("an execution runs a plan of its own namespace (%s); create it in %s", exec.Namespace, planNS))})}
	}
	plan, ok := d.State.GetPlan(planNS, planName)
	if !ok {
		return Decision{Err: invalid("DRPlanExecution", exec.Name, field.ErrorList{field.Invalid(field.NewPath("spec", "planRef"),
			planNS+"/"+planName, fmt.Sprintf("DRPlan %s/%s does not exist", planNS, planName))})}
	}
	name := orGenerated(exec.ObjectMeta)
	if d.Access == nil { // else runRights judges the rendered actions, templated apiVersions included
		if err := d.asController(plan, "DRPlanExecution", exec.Name); err != nil {
			return Decision{Err: err}
		}
	} else if err := d.planRights(ctx, d.requester(exec), plan, "DRPlanExecution", name); err != nil {
		return Decision{Err: err}
	}
	if exec.Spec.RetryOf != "" {
		// The rights its actions need are checked by the controller when it starts, from the
		// snapshot it retries.
		return d.retry(ctx, plan, exec)
	}
	if exec.Spec.Operation == drv1.OperationRevert {
		target, err := d.revertible(ctx, plan, exec, field.NewPath("spec", "revertExecutionRef"))
		if err == nil {
			err = d.runRights(ctx, plan, exec, target, "DRPlanExecution", name)
		}
		return Decision{Err: err}
	}
	err := d.executable(ctx, plan, validation.ValidatePlan(d.Rules.Env, plan, d.State), field.NewPath("spec", "planRef"), exec)
	if err == nil {
		err = d.runRights(ctx, plan, exec, nil, "DRPlanExecution", name)
	}
	return Decision{Err: err}
}

// executable refuses an Execute of plan that cannot run: the plan is invalid (a required
// parameter without a value included) or references a workflow that is missing or Invalid, the
// execution does not give a parameter the plan's spec.executionParams names (a trigger gives
// none), or another execution is in progress. exec is nil for the trigger annotation (the
// controller will create it).
func (d *Decider) executable(ctx context.Context, plan *drv1.DRPlan, report validation.PlanReport, path *field.Path, exec *drv1.DRPlanExecution) *apierrors.StatusError {
	kind, name := "DRPlan", plan.Name
	if exec != nil {
		kind, name = "DRPlanExecution", exec.Name
	}
	ref := plan.Namespace + "/" + plan.Name
	var errs field.ErrorList
	for _, e := range report.Errors {
		errs = append(errs, field.Invalid(path, ref, "DRPlan "+ref+" is Invalid: "+e.Error()))
	}
	for _, u := range report.Unresolved {
		errs = append(errs, field.Invalid(path, ref, "DRPlan "+ref+" cannot run: "+u))
	}
	if exec == nil {
		if names := validation.UnsuppliedExecutionParams(&plan.Spec, nil); len(names) > 0 {
			errs = append(errs, field.Forbidden(path, validation.ExecutionParamsMessage(plan.Namespace, plan.Name, names)+
				", which a trigger cannot give: create a DRPlanExecution with them"))
		}
	} else {
		errs = append(errs, d.executionParams(plan, exec)...)
		if names := validation.UnsuppliedExecutionParams(&plan.Spec, exec.Spec.Params); len(names) > 0 {
			errs = append(errs, field.Required(field.NewPath("spec", "params"), validation.ExecutionParamsMessage(plan.Namespace, plan.Name, names)))
		}
	}
	if len(errs) > 0 {
		return invalid(kind, name, errs)
	}
	asking := exec
	if asking == nil {
		asking = &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Namespace: plan.Namespace},
			Spec: drv1.DRPlanExecutionSpec{Operation: drv1.OperationExecute}}
	}
	execs, err := d.State.ExecutionsForPlan(plan.Namespace, plan.Name)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	return d.lockFree(ctx, plan, asking, execs)
}

// executionParams checks an execution's own parameter values against the workflows that
// declare them: each must be declared by one of them, and convert to its declared type.
func (d *Decider) executionParams(plan *drv1.DRPlan, exec *drv1.DRPlanExecution) field.ErrorList {
	decls := map[string][]drv1.Parameter{}
	var names []string
	for _, s := range plan.Spec.EffectiveStages() {
		for _, sw := range s.Workflows {
			wf, ok := d.State.GetWorkflow(sw.WorkflowRef.NamespaceOr(plan.Namespace), sw.WorkflowRef.Name)
			if !ok {
				continue
			}
			for _, p := range wf.Spec.Parameters {
				if decls[p.Name] == nil {
					names = append(names, p.Name)
				}
				decls[p.Name] = append(decls[p.Name], p)
			}
		}
	}
	var errs field.ErrorList
	for i, p := range exec.Spec.Params {
		path := field.NewPath("spec", "params").Index(i)
		ds, ok := decls[p.Name]
		if !ok {
			errs = append(errs, field.Invalid(path.Child("name"), p.Name, fmt.Sprintf("no workflow of DRPlan %s/%s declares a parameter %q%s",
				plan.Namespace, plan.Name, p.Name, rules.DidYouMean(p.Name, names))))
			continue
		}
		if p.ValueFrom != nil {
			continue // a Secret's value is checked when it is read
		}
		for _, decl := range ds {
			if _, err := rules.ConvertParam(decl.Type, p.Value); err != nil {
				errs = append(errs, field.Invalid(path.Child("value"), p.Value, fmt.Sprintf("%v (parameter %s is declared %s)", err, p.Name, rules.TypeName(decl.Type))))
				break
			}
		}
	}
	return errs
}

// revertible refuses a Revert whose target RevertEligible rejects, or while another execution
// is in progress.
func (d *Decider) revertible(ctx context.Context, plan *drv1.DRPlan, exec *drv1.DRPlanExecution, path *field.Path) (*drv1.DRPlanExecution, *apierrors.StatusError) {
	execs, err := d.State.ExecutionsForPlan(plan.Namespace, plan.Name)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	name, target, _ := rules.ChooseRevertTarget(exec, execs, func(name string) (*drv1.DRPlanExecution, error) {
		t, _ := d.State.GetExecution(exec.Namespace, name)
		return t, nil
	})
	ok, msg, err := d.Rules.RevertEligible.Decide(ctx, rules.RevertVars(plan, exec, name, target), false)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if !ok {
		kind, objName := "DRPlanExecution", exec.Name
		if exec.Name == "" {
			kind, objName = "DRPlan", plan.Name
		}
		value := name
		if value == "" {
			value = "(the latest Execute in effect)"
		}
		return nil, invalid(kind, objName, field.ErrorList{field.Invalid(path, value, "cannot revert: "+msg)})
	}
	return target, d.lockFree(ctx, plan, exec, execs)
}

// lockFree refuses a new execution while another of the plan is in progress: the one holding
// the plan's lock, or one not finished yet (a new one has no phase) that will take it. PlanLock
// decides, as it does in the controller, with each of them in turn as the holder.
// execs are the plan's executions.
func (d *Decider) lockFree(ctx context.Context, plan *drv1.DRPlan, exec *drv1.DRPlanExecution, execs []*drv1.DRPlanExecution) *apierrors.StatusError {
	var holders []*drv1.DRPlan
	if cur := plan.Status.CurrentExecution; cur != nil {
		holders = append(holders, plan)
	}
	for _, e := range execs {
		if rules.ExecutionEnded(&e.Status) || e.Name == exec.Name && e.Namespace == exec.Namespace {
			continue
		}
		p := plan.DeepCopy()
		p.Status.CurrentExecution = &drv1.ExecutionReference{Name: e.Name, Namespace: e.Namespace, Operation: e.Spec.Operation}
		holders = append(holders, p)
	}
	pendingHolder := ""
	if pending := plan.Annotations[drv1.AnnotationTriggerPending]; pending != "" {
		// The controller is creating an execution for a trigger: it is in progress already.
		if _, name, ok := strings.Cut(pending, "/"); ok && name != exec.Name {
			p := plan.DeepCopy()
			p.Status.CurrentExecution = &drv1.ExecutionReference{Name: name, Namespace: plan.Namespace}
			holders, pendingHolder = append(holders, p), name
		}
	}
	for _, p := range holders {
		cur := p.Status.CurrentExecution
		holder, _ := d.State.GetExecution(cur.Namespace, cur.Name)
		if holder == nil && cur.Name == pendingHolder {
			holder = &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: cur.Name, Namespace: cur.Namespace}} // not created yet
		}
		ok, _, err := d.Rules.PlanLock.Decide(ctx, rules.LockVars(p, exec, holder), false)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		if !ok {
			return inProgress(cur.Name)
		}
	}
	return nil
}

// cancelUpdate refuses setting the cancel annotation to anything but "true", or on an
// execution that has finished.
func (d *Decider) cancelUpdate(exec, old *drv1.DRPlanExecution) *apierrors.StatusError {
	v, set := exec.Annotations[drv1.AnnotationCancel]
	if !set || old.Annotations[drv1.AnnotationCancel] == v {
		return nil
	}
	path := field.NewPath("metadata", "annotations").Key(drv1.AnnotationCancel)
	switch {
	case v != "true":
		return invalid("DRPlanExecution", exec.Name, field.ErrorList{field.NotSupported(path, v, []string{"true"})})
	case rules.ExecutionEnded(&old.Status):
		return invalid("DRPlanExecution", exec.Name, field.ErrorList{field.Forbidden(path, fmt.Sprintf(
			"execution %s has already finished (%s): only a Pending or Running execution can be cancelled", exec.Name, old.Status.Phase))})
	}
	return nil
}

// asController refuses (as kind name) a plan without a serviceAccountName whose workflows'
// manifests name objects of the controller's own API group: its actions would act as the
// controller, which the records of who asked trust (validation.AsControllerActions; the runner
// refuses them too, also when the group comes from a template).
func (d *Decider) asController(plan *drv1.DRPlan, kind, name string) *apierrors.StatusError {
	if d.Access != nil && d.Access.Policy.Identity(plan.Namespace, &plan.Spec) != "" || plan.Spec.ServiceAccountName != "" {
		return nil // it acts as a ServiceAccount (its own, or the lockdown's), as the runner judges
	}
	found := validation.AsControllerActions(plan, d.State)
	if len(found) == 0 {
		return nil
	}
	path := field.NewPath("spec", "serviceAccountName")
	if kind == "DRPlanExecution" {
		path = field.NewPath("spec", "planRef")
	}
	return invalid(kind, name, field.ErrorList{field.Forbidden(path, fmt.Sprintf("DRPlan %s/%s has no serviceAccountName, so %s %s",
		plan.Namespace, plan.Name, strings.Join(found, ", "), validation.AsControllerReason))})
}

// inProgress is the guide's refusal of a second execution.
func inProgress(name string) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusConflict, Reason: metav1.StatusReasonConflict,
		Message: "Plan has an execution in progress: " + name,
	}}
}

func invalid(kind, name string, errs field.ErrorList) *apierrors.StatusError {
	return apierrors.NewInvalid(schema.GroupKind{Group: drv1.GroupName, Kind: kind}, name, errs)
}
