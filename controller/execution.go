package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/bkbcs/drplan-controller/access"
	"github.com/bkbcs/drplan-controller/actions"
	"github.com/bkbcs/drplan-controller/backoff"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/runplan"
	"github.com/bkbcs/drplan-controller/validation"
)

// syncExecution starts, resumes, holds back or closes one execution. Running executions are
// driven by the engine; this only hands them over and forwards a cancel.
func (c *Controller) syncExecution(ctx context.Context, ns, name string) error {
	nn := types.NamespacedName{Namespace: ns, Name: name}
	exec, err := c.inf.ExecutionLister.DRPlanExecutions(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.engine.forget(nn)
		if r := c.engine.running(nn); r != nil {
			// Deleted mid-run: stop, and let the plan's next execution have the lock.
			c.engine.drop(r)
			return c.releaseLock(ctx, r.exec, &drv1.DRPlanExecutionStatus{})
		}
		return nil
	}
	if err != nil {
		return err
	}
	cancelled := cancelRequested(exec)
	if exec.Labels[drv1.LabelPlan] != drv1.LabelValue(exec.Spec.PlanRef.Name) && (exec.Status.Phase != "" || cancelled) {
		// Labelled once the run is under way (its first status write brings us back here): the
		// label is for people, and writing it first would delay the first action.
		if err := c.labelExecution(ctx, exec); err != nil {
			return err
		}
	}
	if rules.ExecutionEnded(&exec.Status) {
		c.engine.forget(nn)
		if err := c.markReverted(ctx, exec, &exec.Status); err != nil {
			return err
		}
		return c.releaseLock(ctx, exec, &exec.Status)
	}
	if c.engine.endedHere(exec) {
		return nil // the cache is behind the final status this engine wrote
	}
	if r := c.engine.running(nn); r != nil {
		if r.exec.UID == exec.UID {
			if cancelled {
				r.cancel()
			}
			return nil
		}
		c.engine.drop(r) // a run of a deleted namesake
	}
	ctx, accountable := c.withRequester(ctx, exec)
	if !accountable {
		return c.endBeforeStart(ctx, exec, drv1.ExecutionFailed, drv1.NoRequesterMessage)
	}
	if cancelled && exec.Status.Phase != drv1.ExecutionRunning {
		return c.endBeforeStart(ctx, exec, drv1.ExecutionCancelled, "Execution cancelled by user")
	}
	if planNS := exec.Spec.PlanRef.NamespaceOr(exec.Namespace); planNS != exec.Namespace && exec.Status.Phase != drv1.ExecutionRunning {
		return c.endBeforeStart(ctx, exec, drv1.ExecutionFailed, fmt.Sprintf(
			"Cannot start: an execution runs a plan of its own namespace (%s); create it in %s", exec.Namespace, planNS))
	}

	if exec.Status.Phase != drv1.ExecutionRunning || exec.Status.Snapshot == nil {
		if plan := c.lockLooksFree(exec); plan != nil {
			return c.startOverlapped(ctx, exec, plan)
		}
	}
	plan, waiting, mine, err := c.acquireLock(ctx, exec)
	if err != nil {
		return err
	}
	if exec.Status.Phase == drv1.ExecutionRunning && exec.Status.Snapshot != nil {
		return c.interrupted(ctx, exec, plan, waiting, mine)
	}
	switch {
	case plan == nil:
		return c.endBeforeStart(ctx, exec, drv1.ExecutionFailed,
			fmt.Sprintf("DRPlan %s/%s not found", exec.Spec.PlanRef.NamespaceOr(ns), exec.Spec.PlanRef.Name))
	case waiting != "":
		return c.setPending(ctx, exec, waiting)
	}
	_, err = c.startFresh(ctx, exec, plan, false)
	return err
}

// withRequester checks, before any side effect, that somebody is accountable for the run: its
// requester is recorded, in a namespace where the webhooks record it (elsewhere a client could
// have written it). A run already Running when such records came in finishes as it began
// (logged). The logger of the context returned names the requester.
func (c *Controller) withRequester(ctx context.Context, exec *drv1.DRPlanExecution) (context.Context, bool) {
	requester, ok := drv1.RequesterOf(exec.Annotations)
	switch {
	case !c.policy().Recorded(exec.Namespace):
		return ctx, false
	case ok:
		return klog.NewContext(ctx, klog.FromContext(ctx).WithValues("requester", requester.Username)), true
	case exec.Status.Phase == drv1.ExecutionRunning:
		klog.FromContext(ctx).Info("Execution Running since before requesters were recorded: it finishes under the old rules (no requester; cancelled by its annotation alone)")
		return ctx, true
	}
	return ctx, false
}

// cancelRequested reports whether a cancel of the execution is recorded in its decisions list
// (AnnotationCancel=true, set by a user or by the controller for a plan's trigger=cancel). An
// execution without a requester record, Running since before such records, keeps the old rule:
// the annotation alone.
func cancelRequested(exec *drv1.DRPlanExecution) bool {
	if _, ok := drv1.RequesterOf(exec.Annotations); !ok {
		return exec.Annotations[drv1.AnnotationCancel] == "true"
	}
	decisions, err := drv1.ParseDecisions(exec.Annotations[drv1.AnnotationDecisions])
	return err == nil && drv1.Decided(decisions, drv1.AnnotationCancel, "true")
}

// startOverlapped starts a run whose actions wait for the plan's lock, and takes the lock while
// the run writes its first status: the first action waits for the slower of the two writes
// instead of both. A Running status without the lock therefore means nothing ran (see
// interrupted).
func (c *Controller) startOverlapped(ctx context.Context, exec *drv1.DRPlanExecution, plan *drv1.DRPlan) error {
	r, err := c.startFresh(ctx, exec, plan, true)
	if err != nil || r == nil {
		return err
	}
	locked, waiting, _, err := c.acquireLock(ctx, exec)
	switch {
	case err != nil:
		c.engine.drop(r)
		return err
	case locked == nil:
		c.engine.drop(r)
		return c.endBeforeStart(ctx, exec, drv1.ExecutionFailed,
			fmt.Sprintf("DRPlan %s/%s not found", plan.Namespace, plan.Name))
	case waiting != "":
		c.engine.drop(r)
		return c.setPending(ctx, exec, waiting)
	}
	r.open()
	return nil
}

// interrupted decides what to do with a Running execution that no run of this engine drives (a
// restart). Actions only ever run while the execution holds the plan's lock, and nobody takes
// the lock of a Running execution, so:
//   - the lock was ours already: resume;
//   - the same plan's lock is another's, or was free: the start was cut short before the lock
//     was taken and nothing ran: start afresh (waiting if need be);
//   - the plan is gone, or was recreated: resume from the snapshot if the lock is free (it cannot
//     be ours any more), fail if another run holds the new plan's lock.
func (c *Controller) interrupted(ctx context.Context, exec *drv1.DRPlanExecution, plan *drv1.DRPlan, waiting string, mine bool) error {
	samePlan := plan != nil && string(plan.UID) == exec.Status.Snapshot.PlanUID
	switch {
	case mine:
		return c.resume(ctx, exec)
	case samePlan && waiting != "":
		return c.setPending(ctx, exec, waiting)
	case samePlan:
		_, err := c.startFresh(ctx, exec, plan, false) // the lock is ours now
		return err
	case waiting != "":
		return c.endBeforeStart(ctx, exec, drv1.ExecutionFailed,
			"Cannot resume: the plan was recreated while this run was interrupted, and another run holds its lock ("+waiting+")")
	default:
		return c.resume(ctx, exec)
	}
}

// transient reports an error that a retry may fix (the API server was busy or unreachable), as
// opposed to one that fails the run (a missing Secret, a forbidden read, a bad value).
func transient(err error) bool { return err != nil && actions.TransientAPIError(err, false) }

// startFresh starts a run from the plan as it is now. With gated, its actions wait for open
// (the caller is taking the lock meanwhile). It returns nil, nil when the run ended before it
// started.
func (c *Controller) startFresh(ctx context.Context, exec *drv1.DRPlanExecution, plan *drv1.DRPlan, gated bool) (*run, error) {
	if refused := cannotExecute(exec, plan); refused != "" {
		return nil, c.endBeforeStart(ctx, exec, drv1.ExecutionFailed, refused)
	}
	now := metav1.NewTime(c.now().Truncate(time.Second))
	ps, refused, err := c.prepareStart(ctx, exec, plan, now)
	if err != nil {
		return nil, err
	}
	if refused != "" {
		return nil, c.endBeforeStart(ctx, exec, drv1.ExecutionFailed, refused)
	}
	snap, prep, who, auth := ps.snap, ps.prep, ps.who, ps.auth
	if c.policy().WithoutServiceAccount.Refuse && who == "" {
		// Judged on what the run would act as: a Revert acts as its target's snapshot says.
		return nil, c.endBeforeStart(ctx, exec, drv1.ExecutionFailed, fmt.Sprintf(
			"Cannot start: DRPlan %s/%s has no spec.serviceAccountName, and this controller runs plans only as a ServiceAccount (--plans-without-service-account=refuse)",
			plan.Namespace, plan.Name))
	}
	if err := auth.run(ctx, prep); err != nil {
		if !access.IsRefused(err) {
			return nil, err
		}
		return nil, c.endBeforeStart(ctx, exec, drv1.ExecutionFailed, "Cannot start: "+err.Error())
	}
	st := drv1.DRPlanExecutionStatus{Phase: drv1.ExecutionRunning, ObservedGeneration: exec.Generation,
		StartTime: &now, Snapshot: snap, ResolvedParams: prep.Params}
	st.StageStatuses, st.ActionStatuses = prep.Plan.InitialStatus()
	for si := range st.StageStatuses {
		for wi := range st.StageStatuses[si].WorkflowExecutions {
			st.StageStatuses[si].WorkflowExecutions[wi].ResolvedParams = prep.PerWorkflow[si][wi]
		}
	}
	st.Conditions = []metav1.Condition{{Type: drv1.ConditionComplete, Status: metav1.ConditionFalse,
		Reason: "Running", Message: "The execution is running", LastTransitionTime: now, ObservedGeneration: exec.Generation}}
	if err := fitsItsStatus(&st, prep, exec.Namespace); err != nil {
		return nil, c.endBeforeStart(ctx, exec, drv1.ExecutionFailed, "Cannot start: "+err.Error())
	}
	if prev := ps.src.prev; prev != nil {
		refused, err := c.carryOver(ctx, exec, &st, prev)
		if refused != "" {
			return nil, c.endBeforeStart(ctx, exec, drv1.ExecutionFailed, refused)
		}
		if err != nil {
			return nil, err
		}
	}
	r, err := c.engine.start(exec, prep, st, who, auth, gated, false)
	if err != nil {
		return nil, err
	}
	klog.FromContext(ctx).Info("Execution started", "plan", plan.Name, "actions", len(prep.Actions))
	return r, nil
}

// started is what a run starts from: its snapshot, its actions prepared, whom it acts as and
// whose rights it checks, and for a retry the run it retries.
type started struct {
	snap *drv1.ExecutionSnapshot
	prep *runplan.Prepared
	who  string
	auth *authority
	src  retrySource
}

// prepareStart prepares a retry, a Revert or an Execute. refused, when set, says why the run
// cannot start; err is transient (the sync retries).
func (c *Controller) prepareStart(ctx context.Context, exec *drv1.DRPlanExecution, plan *drv1.DRPlan, now metav1.Time) (ps started, refused string, err error) {
	failed := func(prefix string, err error) (started, string, error) {
		if transient(err) {
			return ps, "", err
		}
		return ps, prefix + err.Error(), nil
	}
	switch {
	case exec.Spec.RetryOf != "":
		if ps.src, refused, err = c.retryOf(ctx, exec, plan); err != nil || refused != "" {
			return ps, refused, err
		}
		if ps.snap, ps.prep, ps.who, ps.auth, err = c.prepareRetry(ctx, exec, ps.src); err != nil {
			return failed("Cannot retry: ", err)
		}
	case exec.Spec.Operation == drv1.OperationRevert:
		target, refused, err := c.revertTarget(ctx, exec, plan)
		if err != nil || refused != "" {
			return ps, refused, err
		}
		if ps.prep, ps.who, ps.auth, err = c.prepareRevertOf(ctx, exec, target); err != nil {
			return failed("Cannot revert: ", err)
		}
		ps.snap = target.Status.Snapshot.DeepCopy()
		ps.snap.RevertOf, ps.snap.RunAs = target.Name, nil // a Revert acts as itself
	default:
		var data *runplan.Snapshot
		if ps.snap, data, err = runplan.TakeSnapshot(plan, c.inf); err != nil {
			return ps, "Cannot start: " + err.Error(), nil
		}
		ps.who = c.identity(plan.Namespace, &data.Plan)
		if ps.auth, err = c.authorityOf(exec, plan.Namespace, plan.Name, &data.Plan); err != nil {
			return ps, "Cannot start: " + err.Error(), nil
		}
		if ps.prep, err = runplan.Prepare(exec, data, c.secretReader(ctx, plan.Namespace, ps.who, ps.auth), now.Time, c.rules); err != nil {
			return failed("Cannot start: ", err)
		}
	}
	return ps, "", nil
}

// cannotExecute says why an Execute cannot start, before anything is read: its plan is being
// deleted (it can still be reverted), or the execution does not give a parameter that the plan's
// spec.executionParams names (a retry runs the parameters its chain's first execution gave).
func cannotExecute(exec *drv1.DRPlanExecution, plan *drv1.DRPlan) string {
	if exec.Spec.Operation == drv1.OperationRevert {
		return ""
	}
	if plan.DeletionTimestamp != nil {
		return fmt.Sprintf("Cannot start: DRPlan %s/%s is being deleted (it can still be reverted)", plan.Namespace, plan.Name)
	}
	if names := validation.UnsuppliedExecutionParams(&plan.Spec, exec.Spec.Params); len(names) > 0 && exec.Spec.RetryOf == "" {
		return "Cannot start: " + validation.ExecutionParamsMessage(plan.Namespace, plan.Name, names)
	}
	return ""
}

// fitsItsStatus refuses a run whose status could not be written once it has ended (statusFloor).
func fitsItsStatus(st *drv1.DRPlanExecutionStatus, prep *runplan.Prepared, namespace string) error {
	bodies := make([]drv1.ActionBody, len(prep.Actions))
	for i, a := range prep.Actions {
		bodies[i] = a.Body
	}
	floor, err := statusFloor(st, bodies, namespace)
	if err != nil {
		return err
	}
	if floor > statusBudget {
		return fmt.Errorf("the run's status would need at least %d bytes once its %d actions have run (their names, stages and outputs, and the snapshot), over the limit of %d: split the plan, or shorten its stage and action names",
			floor, len(prep.Actions), statusBudget)
	}
	return nil
}

// resume takes a Running execution back after a controller restart, from its snapshot and
// status. An action that was in flight runs again only when that is safe; otherwise it is
// reported failed, never silently repeated.
func (c *Controller) resume(ctx context.Context, exec *drv1.DRPlanExecution) error {
	prep, who, auth, err := c.prepareResume(ctx, exec)
	if transient(err) {
		return err
	}
	if err != nil {
		return c.endBeforeStart(ctx, exec, drv1.ExecutionFailed, "Cannot resume: "+err.Error())
	}
	st := exec.Status.DeepCopy()
	if !statusMatches(prep, st) {
		return c.endBeforeStart(ctx, exec, drv1.ExecutionFailed, "Cannot resume: the status does not match the snapshot")
	}
	now := metav1.NewTime(c.now())
	for i := range st.ActionStatuses {
		a := &st.ActionStatuses[i]
		if a.Phase != drv1.StepRunning {
			continue
		}
		if actions.Idempotent(prep.Actions[i].Body) {
			a.Phase, a.RetryCount = drv1.StepPending, a.RetryCount+1 // runs again; retryCount says so
		} else {
			a.Phase, a.CompletionTime, a.MayHaveActed = drv1.StepFailed, &now, true
			a.Message = "Interrupted: the controller restarted while this action was in flight; it is not repeated because it may not be safe to repeat (an HTTP " + actions.HTTPMethod(prep.Actions[i].Body.HTTP) + " call)"
		}
	}
	if _, err := c.engine.start(exec, prep, *st, who, auth, false, true); err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Execution resumed after a restart")
	return nil
}

// prepareResume prepares an interrupted run again from what its status recorded: its snapshot,
// and for a Revert the execution it undoes.
func (c *Controller) prepareResume(ctx context.Context, exec *drv1.DRPlanExecution) (*runplan.Prepared, string, *authority, error) {
	if snap := exec.Status.Snapshot; snap != nil && snap.RevertOf != "" {
		target, err := c.dr.DrV1alpha1().DRPlanExecutions(exec.Namespace).Get(ctx, snap.RevertOf, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, "", nil, fmt.Errorf("execution %s, which this Revert undoes, was deleted", snap.RevertOf)
		}
		if err != nil {
			return nil, "", nil, err
		}
		return c.prepareRevertOf(ctx, exec, target)
	}
	data, err := runplan.ReadSnapshot(exec.Status.Snapshot)
	if err != nil {
		return nil, "", nil, err
	}
	who := c.identity(data.Namespace, &data.Plan)
	auth, err := c.authorityOf(exec, data.Namespace, data.PlanName, &data.Plan)
	if err != nil {
		return nil, "", nil, err
	}
	if exec.Status.Snapshot.RunAs != nil {
		prep, err := c.prepareAsFirst(ctx, exec, data, who, auth)
		return prep, who, auth, err
	}
	prep, err := runplan.Prepare(exec, data, c.secretReader(ctx, data.Namespace, who, auth), exec.Status.StartTime.Time, c.rules)
	return prep, who, auth, err
}

// secretReader reads Secret keys in the plan's namespace, as the plan's identity, once auth
// found that the requester of a requester-checked run may read them too.
func (c *Controller) secretReader(ctx context.Context, namespace, identity string, auth *authority) rules.SecretReader {
	return func(name, key string) (string, error) {
		if err := auth.readSecret(ctx, name); err != nil {
			return "", err
		}
		client, err := c.clients.Kubernetes(identity)
		if err != nil {
			return "", err
		}
		s, err := client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		v, ok := s.Data[key]
		if !ok {
			return "", fmt.Errorf("Secret %s/%s has no key %q", namespace, name, key)
		}
		return string(v), nil
	}
}

// finished is called by the engine once a run's final status is written.
func (c *Controller) finished(ctx context.Context, exec *drv1.DRPlanExecution, st *drv1.DRPlanExecutionStatus) {
	took := ""
	if st.StartTime != nil && st.CompletionTime != nil {
		took = " in " + rules.FormatDuration(st.CompletionTime.Sub(st.StartTime.Time))
	}
	switch st.Phase {
	case drv1.ExecutionSucceeded:
		c.event(exec, true, "ExecutionSucceeded", "Execution completed successfully"+took)
	case drv1.ExecutionCancelled:
		c.event(exec, true, "ExecutionCancelled", "Execution cancelled by user"+took)
	default:
		c.event(exec, false, "ExecutionFailed", st.Message)
	}
	klog.FromContext(ctx).Info("Execution finished", "execution", klog.KObj(exec), "phase", st.Phase, "message", st.Message)
	c.metrics.ExecutionEnded(exec.Spec.Operation, st.Phase)
	// The engine marked a Revert's target before the final status; this makes sure of it (a
	// failure there is retried) before the plan's lock is let go.
	if err := c.markReverted(ctx, exec, st); err != nil {
		c.queue.AddRateLimited(key{kindExecution, exec.Namespace, exec.Name})
		return
	}
	if err := c.releaseLock(ctx, exec, st); err != nil {
		// The finished execution's sync releases it on retry.
		c.queue.AddRateLimited(key{kindExecution, exec.Namespace, exec.Name})
	}
}

// endBeforeStart ends an execution that never ran an action: Failed (it cannot start) or
// Cancelled; or one whose run cannot go on, from exec's status (endUnwritable).
func (c *Controller) endBeforeStart(ctx context.Context, exec *drv1.DRPlanExecution, phase drv1.ExecutionPhase, msg string) error {
	now := metav1.NewTime(c.now())
	st := exec.Status.DeepCopy()
	rules.CloseRunning(st, now, msg) // a run that cannot resume: nothing is left Running
	st.Phase, st.Message, st.CompletionTime, st.ObservedGeneration = phase, truncate(msg), &now, exec.Generation
	if st.StartTime == nil {
		st.StartTime = &now
	}
	setCompleteConditions(st, exec.Generation)
	if err := c.writeExecutionStatus(ctx, exec, st); err != nil {
		return err
	}
	if phase == drv1.ExecutionCancelled {
		c.event(exec, true, "ExecutionCancelled", msg)
	} else {
		c.event(exec, false, "ExecutionFailed", msg)
	}
	c.metrics.ExecutionEnded(exec.Spec.Operation, phase)
	return c.releaseLock(ctx, exec, st)
}

// endUnwritable ends a run whose status cannot be written any more (refused for good, for
// example too large): it must not stay Running with the plan locked. It ends Failed with the
// run's last status without its texts (leanStatus: what a Revert needs is kept), retrying that
// while the failure is transient (writeRetry, at most endRetries times); if it is refused for
// good too, with the status last written, as the cache has it. Then the lock is released. If
// that fails too, the engine forgets that the run ended here, and the sync retries.
func (c *Controller) endUnwritable(ctx context.Context, exec *drv1.DRPlanExecution, last *drv1.DRPlanExecutionStatus, msg string) {
	lean := exec.DeepCopy()
	lean.Status = *leanStatus(last)
	err := c.endBeforeStart(ctx, lean, drv1.ExecutionFailed, msg)
	for n := 0; err != nil && !permanent(err) && n < endRetries; n++ {
		if backoff.Sleep(ctx, writeRetry.Delay(n)) != nil {
			break
		}
		err = c.endBeforeStart(ctx, lean, drv1.ExecutionFailed, msg)
	}
	if err != nil && permanent(err) {
		klog.FromContext(ctx).Error(err, "Ending the run with its outputs was refused; ending it with the status last written", "execution", klog.KObj(exec))
		written := exec
		if cur, gerr := c.inf.ExecutionLister.DRPlanExecutions(exec.Namespace).Get(exec.Name); gerr == nil && cur.UID == exec.UID {
			written = cur
		}
		err = c.endBeforeStart(ctx, written, drv1.ExecutionFailed, msg)
	}
	if err != nil {
		c.engine.forget(types.NamespacedName{Namespace: exec.Namespace, Name: exec.Name}) // the sync ends it
		c.queue.AddRateLimited(key{kindExecution, exec.Namespace, exec.Name})
	}
}

// endRetries bounds endUnwritable's retries of a transient failure (about half a minute).
const endRetries = 10

// setPending records that an execution waits for the plan's lock. A Pending execution has run
// nothing, so its status is only that (a start cut short before the lock is forgotten).
func (c *Controller) setPending(ctx context.Context, exec *drv1.DRPlanExecution, msg string) error {
	if exec.Status.Phase == drv1.ExecutionPending && exec.Status.Message == msg {
		return nil
	}
	return c.writeExecutionStatus(ctx, exec, &drv1.DRPlanExecutionStatus{
		Phase: drv1.ExecutionPending, Message: msg, ObservedGeneration: exec.Generation})
}

// labelExecution labels an execution with its plan's name, for `kubectl get -l`.
func (c *Controller) labelExecution(ctx context.Context, exec *drv1.DRPlanExecution) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{drv1.LabelPlan: drv1.LabelValue(exec.Spec.PlanRef.Name)}}})
	if err != nil {
		return err
	}
	_, err = c.dr.DrV1alpha1().DRPlanExecutions(exec.Namespace).Patch(ctx, exec.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: actions.FieldManager})
	return err
}

// statusMatches checks that a status read back lists the run prepared from its snapshot, stage
// by stage, workflow by workflow and action by action, so that resuming cannot index out of range
// nor record one action's result as another's (a Revert begun by a controller that ordered it
// otherwise).
func statusMatches(p *runplan.Prepared, st *drv1.DRPlanExecutionStatus) bool {
	if len(st.ActionStatuses) != len(p.Actions) || len(st.StageStatuses) != len(p.Plan.Stages) {
		return false
	}
	for i, s := range p.Plan.Stages {
		if st.StageStatuses[i].Name != s.Name || len(st.StageStatuses[i].WorkflowExecutions) != len(s.Workflows) {
			return false
		}
		for wi, w := range s.Workflows {
			if st.StageStatuses[i].WorkflowExecutions[wi].WorkflowRef != w.Ref {
				return false
			}
			for ai, name := range w.Actions {
				if a := st.ActionStatuses[w.First+ai]; a.Name != name || a.Stage != s.Name || a.WorkflowIndex != int32(wi) {
					return false
				}
			}
		}
	}
	return true
}
