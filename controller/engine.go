package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/bkbcs/drplan-controller/actions"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/metrics"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/runplan"
	"github.com/bkbcs/drplan-controller/templates"
)

// actionKey is one unit of work on the action queue: one action of one running execution. The
// UID tells a run apart from a later execution of the same name.
type actionKey struct {
	exec  types.NamespacedName
	uid   types.UID
	index int
}

// engineHost is what the engine needs of the controller that drives it. The engine runs
// executions; the controller owns what surrounds a run: its status on the API server, the plan's
// lock, a Revert's target, events and the clock.
type engineHost interface {
	now() time.Time
	// event records an event on obj: Normal when ok, else Warning.
	event(obj object, ok bool, reason, message string)
	// writeExecutionStatus replaces an execution's status: the run's status writer writes with it.
	writeExecutionStatus(ctx context.Context, exec *drv1.DRPlanExecution, st *drv1.DRPlanExecutionStatus) error
	// markReverted marks a successful Revert's target reverted; the engine calls it before the
	// Revert's final status is written.
	markReverted(ctx context.Context, revert *drv1.DRPlanExecution, st *drv1.DRPlanExecutionStatus) error
	// finished is called once a run's final status is written: it records the end and releases
	// the plan's lock.
	finished(ctx context.Context, exec *drv1.DRPlanExecution, st *drv1.DRPlanExecutionStatus)
	// endUnwritable ends a run whose status cannot be written any more: Failed with msg, keeping
	// what a Revert needs of last (the run's latest status), and the plan's lock released.
	endUnwritable(ctx context.Context, exec *drv1.DRPlanExecution, last *drv1.DRPlanExecutionStatus, msg string)
}

var _ engineHost = (*Controller)(nil)

// engine runs executions: it keeps each running execution's live status in memory, decides with
// rules.Advance what starts next, hands actions to the action queue's workers, and persists the
// status through one coalescing writer per execution.
type engine struct {
	host    engineHost
	runners map[drv1.ActionType]actions.Runner
	// clients wait for actions' waitFor conditions.
	clients *actions.ClientFactory
	metrics *metrics.Metrics
	queue   *actions.Queue[actionKey]
	// writeInterval is the least time between two status writes of one execution.
	writeInterval time.Duration

	// draining is set when the controller stops: actions in flight finish, nothing new starts.
	draining atomic.Bool

	mu   sync.Mutex
	ctx  context.Context // the runs' lifetime; set by bind before any sync runs
	runs map[types.NamespacedName]*run
	// ended remembers the runs this engine finished, by UID, until the cache shows them
	// finished: a sync reading an older status from the cache must not take them for runs
	// interrupted by a restart.
	ended map[types.NamespacedName]types.UID
}

// run is one execution in progress.
type run struct {
	e        *engine
	key      types.NamespacedName
	exec     *drv1.DRPlanExecution // as it was when the run started: spec and UID
	prep     *runplan.Prepared
	identity string               // "namespace/name" of the ServiceAccount to act as, or ""
	self     actions.ExecutionRef // the execution the run acts as: its own, or its retry chain's first
	auth     *authority           // checks each action before it starts (nil: nothing to check)
	writer   *statusWriter
	// gate, when not nil, holds the run's actions until open: the run's first status is
	// written while the caller takes the plan's lock.
	gate     chan struct{}
	openGate sync.Once
	announce sync.Once       // the ExecutionStarted (or ExecutionResumed) event
	failOnce sync.Once       // writeFailed
	resumed  bool            // taken back after a restart
	ctx      context.Context // the run's lifetime: ends with the engine, or when the run is dropped
	stop     context.CancelFunc

	mu        sync.Mutex
	status    drv1.DRPlanExecutionStatus
	cancelled bool
	ended     bool
	// durable is set when a result that must not be lost (a call that is not safe to repeat)
	// was recorded and not yet flushed; the next advance flushes before starting anything.
	durable bool
	// actionEvents counts the Normal action events recorded; past maxActionEvents only failures
	// are (the status has every action), so a long run's events cost a bounded amount.
	actionEvents atomic.Int32
}

// maxActionEvents bounds the ActionStarted/ActionSucceeded events of one run.
const maxActionEvents = 20

// actionEvent records a Normal action event while the run's budget lasts.
func (r *run) actionEvent(reason, message string) {
	switch n := r.actionEvents.Add(1); {
	case n <= maxActionEvents:
		r.e.host.event(r.exec, true, reason, message)
	case n == maxActionEvents+1:
		r.e.host.event(r.exec, true, "ActionEventsLimited", fmt.Sprintf(
			"More than %d action events: further ActionStarted and ActionSucceeded events are not recorded; .status.actionStatuses has every action", maxActionEvents))
	}
}

func newEngine(host engineHost, runners map[drv1.ActionType]actions.Runner, clients *actions.ClientFactory, m *metrics.Metrics) *engine {
	return &engine{host: host, runners: runners, clients: clients, metrics: m, queue: actions.NewQueue[actionKey](),
		writeInterval: 100 * time.Millisecond, runs: map[types.NamespacedName]*run{},
		ended: map[types.NamespacedName]types.UID{}}
}

// bind sets the engine's lifetime; called before any sync can start a run.
func (e *engine) bind(ctx context.Context) {
	e.mu.Lock()
	e.ctx = ctx
	e.mu.Unlock()
}

// Run works the action queue with workers until ctx ends.
func (e *engine) Run(ctx context.Context, workers int) {
	// Draining starts the moment the controller is told to stop, not once the sync workers
	// are done: nothing new may start after that.
	stop := context.AfterFunc(ctx, func() { e.draining.Store(true) })
	defer stop()
	actions.Run(ctx, e.queue, workers, e.runAction)
}

// stopping reports whether the controller is stopping: nothing new may start. The action queue
// shuts down when the engine's context ends, possibly before draining is set.
func (e *engine) stopping() bool {
	return e.draining.Load() || e.queue.ShuttingDown()
}

func (e *engine) running(key types.NamespacedName) *run {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.runs[key]
}

// drop stops a run and forgets it: its execution was deleted (or replaced by a namesake).
// Workers holding it see its context end and drop their results.
func (e *engine) drop(r *run) {
	r.stop()
	e.mu.Lock()
	if e.runs[r.key] == r {
		delete(e.runs, r.key)
	}
	e.mu.Unlock()
}

// endedHere reports whether this engine finished the run of exec (so a Running status in the
// cache is only stale). Once the cache shows the run finished, or the execution is gone, forget
// clears the record.
func (e *engine) endedHere(exec *drv1.DRPlanExecution) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ended[types.NamespacedName{Namespace: exec.Namespace, Name: exec.Name}] == exec.UID
}

func (e *engine) forget(key types.NamespacedName) {
	e.mu.Lock()
	delete(e.ended, key)
	e.mu.Unlock()
}

// start takes over an execution whose status is laid out (fresh or read back after a restart)
// and drives it to its end.
func (e *engine) start(exec *drv1.DRPlanExecution, prep *runplan.Prepared, status drv1.DRPlanExecutionStatus, identity string, auth *authority, gated, resumed bool) (*run, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	key := types.NamespacedName{Namespace: exec.Namespace, Name: exec.Name}
	if e.ctx == nil {
		return nil, fmt.Errorf("the engine is not running yet")
	}
	if _, dup := e.runs[key]; dup {
		return nil, fmt.Errorf("execution %s is already running", key)
	}
	ctx, stop := context.WithCancel(e.ctx)
	r := &run{e: e, key: key, exec: exec, prep: prep, identity: identity, auth: auth, status: status, ctx: ctx, stop: stop,
		cancelled: exec.Annotations[drv1.AnnotationCancel] == "true",
		self:      actions.ExecutionRef{Namespace: exec.Namespace, Name: exec.Name, UID: exec.UID, PlanName: prep.PlanName}}
	if s := status.Snapshot; s != nil && s.RunAs != nil { // a retry acts as its chain's first run
		r.self.Name, r.self.UID = s.RunAs.Name, types.UID(s.RunAs.UID)
	}
	r.resumed = resumed
	if gated {
		r.gate = make(chan struct{})
	}
	r.writer = newStatusWriter(e.writeInterval, r.copyStatus, r.writeStatus)
	r.writer.failed = r.writeFailed
	e.runs[r.key] = r
	go r.writer.Run(ctx)
	go r.advance(false)
	return r, nil
}

// open lets a gated run's actions start: the caller now holds the plan's lock.
func (r *run) open() { r.openGate.Do(func() { close(r.gate) }) }

// cancel marks a run cancelled: nothing new starts; it ends once nothing is in flight.
func (r *run) cancel() {
	r.mu.Lock()
	already := r.cancelled
	r.cancelled = true
	r.mu.Unlock()
	if !already {
		r.advance(false)
	}
}

func (r *run) copyStatus() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status.DeepCopy()
}

// writeStatus writes the run's status: the status writer's write.
func (r *run) writeStatus(ctx context.Context, status any) error {
	err := r.e.host.writeExecutionStatus(ctx, r.exec, status.(*drv1.DRPlanExecutionStatus))
	if err != nil {
		klog.FromContext(ctx).V(2).Info("Writing execution status failed; will retry", "execution", r.key, "err", err)
	}
	return err
}

// advance decides what starts now and queues it; it ends the run when Advance says it is over.
// mustPersist says the change that led here has to be durable before anything else happens (a
// call that is not safe to repeat has finished: a restart must not find it still in flight).
func (r *run) advance(mustPersist bool) {
	r.mu.Lock()
	if r.ended || r.ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	if r.e.stopping() {
		// Stopping: keep what finished, start nothing; a restart carries on from here.
		r.mu.Unlock()
		r.writer.Changed()
		_ = r.writer.Flush(r.ctx)
		return
	}
	start := rules.Advance(r.prep.Plan, &r.status, metav1.NewTime(r.e.host.now()), r.cancelled)
	over := rules.ExecutionEnded(&r.status)
	if over {
		r.ended = true
		setCompleteConditions(&r.status, r.exec.Generation)
	}
	// A result recorded by another worker that has not flushed yet counts too: this advance
	// may start what follows it.
	mustPersist = mustPersist || r.durable
	r.durable = false
	r.mu.Unlock()
	r.writer.Changed()
	for _, a := range start {
		// Write-ahead: a call that must not be repeated is recorded as started before it is
		// made, so a restart finds it in flight and reports it instead of calling again. One
		// write covers the result that led here and every start.
		mustPersist = mustPersist || !actions.Idempotent(r.prep.Actions[a.Flat].Body)
	}
	switch {
	case mustPersist && len(start) > 0:
		if err := r.writer.Flush(r.ctx); err != nil {
			if r.ctx.Err() == nil {
				r.writeFailed(err)
			}
			return // shutting down or dropped: a restart decides from the last written status
		}
	case mustPersist && !over:
		// Nothing starts after it: write it now, without holding this worker.
		r.writer.Urge()
	}
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-r.ctx.Done():
			return // dropped: it never got the lock
		}
	}
	r.announce.Do(func() {
		// After the first writes, so that the event does not compete with them.
		if r.resumed {
			r.e.host.event(r.exec, true, "ExecutionResumed", "Execution resumed after a controller restart")
		} else {
			requester, _ := drv1.RequesterOf(r.exec.Annotations)
			r.e.host.event(r.exec, true, "ExecutionStarted", fmt.Sprintf("Execution started for plan %s, requested by %s", r.prep.PlanName, requester.Username))
		}
	})
	r.enqueue(start)
	if over {
		r.finish()
	}
}

// enqueue hands the actions advance started to the action queue's workers. One the queue does
// not take (it is shut down: the controller began stopping after advance decided) never starts,
// and a restart starts it afresh: it is written back Pending, else a restart would take a call
// not safe to repeat for one interrupted in flight.
func (r *run) enqueue(start []rules.ActionAddr) {
	var dropped []int
	for _, a := range start {
		if !r.e.queue.TryAdd(actionKey{exec: r.key, uid: r.exec.UID, index: a.Flat}) {
			dropped = append(dropped, a.Flat)
		}
	}
	if len(dropped) == 0 {
		return
	}
	r.e.draining.Store(true)
	r.mu.Lock()
	for _, i := range dropped {
		a := &r.status.ActionStatuses[i]
		a.Phase, a.StartTime = drv1.StepPending, nil
	}
	r.mu.Unlock()
	r.writer.Changed()
	_ = r.writer.Flush(r.ctx)
}

// flushAll writes every run's latest status, so that what finished before a stop is not done
// again by the next leader or after a restart. Bounded by ctx.
func (e *engine) flushAll(ctx context.Context) {
	e.mu.Lock()
	runs := make([]*run, 0, len(e.runs))
	for _, r := range e.runs {
		runs = append(runs, r)
	}
	e.mu.Unlock()
	for _, r := range runs {
		if err := r.writer.Flush(ctx); err != nil {
			klog.FromContext(ctx).V(2).Info("Could not write the status before stopping", "execution", r.key, "err", err)
		}
	}
}

// deleteCreated is a Revert's undo of a Create: it deletes the very object the reverted run
// made, through the KubernetesResource runner.
func (e *engine) undo(ctx context.Context, r *run, act runplan.Action) (actions.Result, error) {
	ref := *act.Undo
	rr, ok := e.runners[drv1.ActionTypeKubernetesResource].(*actions.ResourceRunner)
	if !ok {
		return actions.Result{}, fmt.Errorf("this controller has no KubernetesResource runner to delete %s %s with", ref.Kind, ref.Name)
	}
	if ref.UID != "" || r.prep.MadeBy == nil {
		return rr.DeleteCreated(ctx, r.identity, ref)
	}
	// An object an interrupted Create may have made: found by the name the Create used.
	by := r.prep.MadeBy
	if ref.Name == "" {
		obj, ferr := templates.CheckManifest(nil, act.Body.Resource.Manifest, act.Body.Resource.Operation)
		if ferr != nil {
			return actions.Result{}, ferr
		}
		ref.Name = actions.DeterministicName(obj.GetGenerateName(), types.UID(by.UID), act.UndoID)
	}
	return rr.DeleteIfMadeBy(ctx, r.identity, ref, actions.ExecutionRef{Namespace: r.exec.Namespace, Name: by.Name, UID: types.UID(by.UID), PlanName: r.prep.PlanName})
}

// runAction runs one action: it is the action queue's process function.
func (e *engine) runAction(qctx context.Context, k actionKey) error {
	r := e.running(k.exec)
	if r == nil || r.exec.UID != k.uid || k.index >= len(r.prep.Actions) {
		return nil // the run ended, or its execution was deleted or replaced
	}
	act := r.prep.Actions[k.index]
	body := act.Body
	r.mu.Lock()
	as := r.status.ActionStatuses[k.index]
	if as.Phase == drv1.StepRunning && (r.cancelled || e.draining.Load() || qctx.Err() != nil) {
		// Cancelled, or the controller is stopping, while it was queued: it never starts (a
		// restart starts it afresh).
		a := &r.status.ActionStatuses[k.index]
		a.Phase, a.StartTime = drv1.StepPending, nil
		r.mu.Unlock()
		r.advance(false)
		return nil
	}
	r.mu.Unlock()
	if as.Phase != drv1.StepRunning {
		return nil
	}
	ctx := r.ctx
	logger := klog.FromContext(ctx).WithValues("execution", k.exec, "action", as.Name, "stage", as.Stage)
	r.actionEvent("ActionStarted", fmt.Sprintf("Action %s started", as.Name))
	runner, ok := e.runners[body.Type]
	var (
		res actions.Result
		err error
	)
	started := time.Now()
	err = r.auth.action(ctx, r.prep, k.index) // refused, or the rights could not be checked: nothing is done
	switch {
	case err != nil:
	case act.Undo != nil:
		// A Revert deletes exactly the object the reverted run made.
		res, err = e.undo(ctx, r, act)
	case !ok:
		err = fmt.Errorf("action type %s is not supported by this controller yet", body.Type)
	default:
		res, err = runner.Run(ctx, actions.Request{Body: body, ActionID: as.ID(),
			Execution:      r.self,
			ServiceAccount: r.identity, Redact: r.prep.Redact})
	}
	if w := act.Wait; err == nil && w != nil && res.ResourceRef != nil {
		_, err = e.clients.WaitFor(ctx, r.identity, *res.ResourceRef, w.Cond, w.Params, w.Timeout, func(msg string) {
			r.mu.Lock()
			r.status.ActionStatuses[k.index].Message = truncate(msg)
			r.mu.Unlock()
			r.writer.Changed()
		})
		if err == nil {
			res.Message += fmt.Sprintf("; %q is true", w.Cond.Expression)
		}
	}
	if ctx.Err() != nil {
		return nil // shutting down or dropped: the action stays Running and a restart decides
	}
	kind := string(body.Type)
	if act.Undo != nil {
		kind = "Undo"
	}
	e.metrics.ActionDone(kind, time.Since(started), err)
	took := rules.FormatDuration(time.Since(started))
	r.complete(k.index, res, err)
	if err != nil {
		logger.Info("Action failed", "err", r.prep.Redact.Replace(err.Error()))
		e.host.event(r.exec, false, "ActionFailed", fmt.Sprintf("Action %s failed after %s: %s", as.Name, took, r.prep.Redact.Replace(err.Error())))
	} else {
		r.actionEvent("ActionSucceeded", fmt.Sprintf("Action %s completed successfully in %s", as.Name, took))
	}
	return nil
}

// complete records an action's result and moves the run on.
func (r *run) complete(index int, res actions.Result, err error) {
	now := metav1.NewTime(r.e.host.now())
	r.mu.Lock()
	a := &r.status.ActionStatuses[index]
	a.CompletionTime, a.RetryCount = &now, a.RetryCount+res.Retries
	if err != nil {
		a.Phase, a.Message, a.MayHaveActed = drv1.StepFailed, truncate(r.prep.Redact.Replace(err.Error())), res.MayHaveActed || madeMaybe(r.prep.Actions[index].Body, err)
	} else {
		a.Phase, a.Message = drv1.StepSucceeded, truncate(r.prep.Redact.Replace(res.Message))
	}
	if out := outputOf(*a, r.prep.Actions[index].Body.Type, res); out != nil {
		r.status.Outputs = append(r.status.Outputs, *out)
	}
	r.durable = r.durable || !actions.Idempotent(r.prep.Actions[index].Body)
	r.mu.Unlock()
	r.advance(false)
}

// madeMaybe says whether an action that failed with err may still have made its object: a
// KubernetesResource Create or Apply whose calls went on failing for a moment (a timeout, the API
// server unavailable) until its time ran out; the request that made it may have been answered
// too late.
func madeMaybe(b drv1.ActionBody, err error) bool {
	if b.Resource == nil || (b.Resource.Operation != drv1.OperationCreate && b.Resource.Operation != drv1.OperationApply) {
		return false
	}
	return actions.TransientAPIError(err, false)
}

// outputOf is what an action made, if anything worth recording.
func outputOf(a drv1.ActionStatus, t drv1.ActionType, res actions.Result) *drv1.ActionOutput {
	if res.HTTPResponse == nil && res.ResourceRef == nil {
		return nil
	}
	out := &drv1.ActionOutput{ActionName: a.Name, Stage: a.Stage, WorkflowIndex: a.WorkflowIndex}
	switch t { // the guide's outputs name the kind of object
	case drv1.ActionTypeJob:
		out.JobRef = res.ResourceRef
	case drv1.ActionTypeLocalization:
		out.LocalizationRef = res.ResourceRef
	case drv1.ActionTypeSubscription:
		out.SubscriptionRef = res.ResourceRef
	default:
		out.ResourceRef = res.ResourceRef
	}
	if res.HTTPResponse != nil {
		resp := *res.HTTPResponse // its body redacted by the runner (Request.Redact)
		out.HTTPResponse = &resp
	}
	return out
}

// finish writes the final status, then releases the plan's lock.
func (r *run) finish() {
	// Remembered before the final status is written, so that the sync which sees that status
	// (and forgets it) always comes after.
	r.e.mu.Lock()
	r.e.ended[r.key] = r.exec.UID
	r.e.mu.Unlock()
	defer func() {
		r.stop()
		r.e.mu.Lock()
		if r.e.runs[r.key] == r {
			delete(r.e.runs, r.key)
		}
		r.e.mu.Unlock()
	}()
	r.mu.Lock()
	st := r.status.DeepCopy()
	r.mu.Unlock()
	// A successful Revert marks its target first: once the Revert shows Succeeded, the target
	// is Reverted (and its plan Ready).
	if err := r.e.host.markReverted(r.ctx, r.exec, st); err != nil {
		klog.FromContext(r.ctx).Info("Marking the reverted execution failed; the final sync retries", "execution", r.key, "err", err)
	}
	if err := r.writer.Flush(r.ctx); err != nil {
		if r.ctx.Err() == nil {
			r.writeFailed(err)
		}
		return // shutting down: a restart reads the last written status and finishes again
	}
	r.e.host.finished(r.ctx, r.exec, st)
}

// writeFailed ends a run whose status cannot be written any more (refused for good, for example
// too large): it must not stay Running with the plan locked. The run stops at once (nothing more
// starts; results coming in are dropped) and the controller ends it: until the cache shows the
// end, a sync leaves it be instead of resuming it.
// Called by whichever notices first, the status writer or a flush; the first call acts.
func (r *run) writeFailed(err error) {
	r.failOnce.Do(func() {
		r.stop()
		ctx := context.WithoutCancel(r.ctx)
		klog.FromContext(ctx).Error(err, "Writing the execution's status failed for good; ending it", "execution", r.key)
		msg := "Cannot write the status: " + err.Error()
		if tooLarge(err) {
			msg = "Cannot write the status: the API server refuses it as too large (" + err.Error() +
				"). The run stopped here; its actions' phases and outputs are kept for a Revert, their messages dropped"
		}
		// Remembered before the end is written, as finish does: a sync that still sees Running
		// in the cache leaves it be; the one that sees the end forgets it.
		r.e.mu.Lock()
		r.e.ended[r.key] = r.exec.UID
		r.e.mu.Unlock()
		r.e.host.endUnwritable(ctx, r.exec, r.copyStatus().(*drv1.DRPlanExecutionStatus), msg)
		r.e.drop(r)
	})
}

// setCompleteConditions sets Complete (the run ended, however it ended) and Succeeded.
func setCompleteConditions(st *drv1.DRPlanExecutionStatus, generation int64) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: drv1.ConditionComplete, Status: metav1.ConditionTrue,
		Reason: string(st.Phase), Message: completionMessage(st), ObservedGeneration: generation})
	succeeded := metav1.ConditionFalse
	if st.Phase == drv1.ExecutionSucceeded {
		succeeded = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: "Succeeded", Status: succeeded,
		Reason: string(st.Phase), Message: completionMessage(st), ObservedGeneration: generation})
}

func completionMessage(st *drv1.DRPlanExecutionStatus) string {
	if st.Message != "" {
		return st.Message
	}
	return "Execution " + strings.ToLower(string(st.Phase))
}
