package rules

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// RunPlan is what one execution runs, in order: stages of workflows of actions. It is built once
// from the execution's snapshot and never changes during the run.
type RunPlan struct {
	// FailurePolicy of the plan: governs workflows and stages.
	FailurePolicy drv1.FailurePolicy
	Stages        []RunStage
	DAG           *DAG
	// Rules decide when a stage is ready or blocked: the process's rules.
	Rules *Rules
	// Identity of the run, for guards: plan and execution names, namespace, operation.
	PlanName, ExecutionName, Namespace string
	Operation                          drv1.Operation
	// stageIndex maps a stage name to its index in Stages.
	stageIndex map[string]int
}

// RunStage is one stage of a run.
type RunStage struct {
	Name      string
	Parallel  bool
	DependsOn []string
	Workflows []RunWorkflow
	// When is the stage's guard (nil: none); Params are the values it sees.
	When   *Program
	Params map[string]any
}

// RunWorkflow is one workflow entry of a stage.
type RunWorkflow struct {
	Ref drv1.ObjectReference
	// FailurePolicy of the workflow: governs its actions.
	FailurePolicy drv1.FailurePolicy
	// Actions are the action names, in order.
	Actions []string
	// When is the workflow's guard and ActionWhen the actions' guards (nil: none); Params are
	// the workflow's resolved values, which they see.
	When       *Program
	ActionWhen []*Program
	Params     map[string]any
	// ActionSkip, where an entry is not empty, skips that action with that message when it is
	// reached (a Revert's actions that have nothing to undo).
	ActionSkip []string
	// First is the index of the workflow's first action in the execution's flat actionStatuses.
	First int
}

// ActionAddr locates an action: stage index, workflow index in the stage, action index in the
// workflow, and its index in the flat actionStatuses list.
type ActionAddr struct {
	Stage, Workflow, Action, Flat int
}

// NewRunPlan indexes stages (whose DAG must already be valid) and numbers the actions; decide
// are the rules its stages are decided by.
func NewRunPlan(decide *Rules, policy drv1.FailurePolicy, dag *DAG, stages []RunStage) *RunPlan {
	p := &RunPlan{FailurePolicy: policy, Stages: stages, DAG: dag, Rules: decide, stageIndex: map[string]int{}}
	flat := 0
	for i := range p.Stages {
		p.stageIndex[p.Stages[i].Name] = i
		for j := range p.Stages[i].Workflows {
			p.Stages[i].Workflows[j].First = flat
			flat += len(p.Stages[i].Workflows[j].Actions)
		}
	}
	return p
}

// ActionCount is the number of actions in the run.
func (p *RunPlan) ActionCount() int {
	n := 0
	for _, s := range p.Stages {
		for _, w := range s.Workflows {
			n += len(w.Actions)
		}
	}
	return n
}

// Addr returns the address of a flat action index.
func (p *RunPlan) Addr(flat int) ActionAddr {
	for si, s := range p.Stages {
		for wi, w := range s.Workflows {
			if flat >= w.First && flat < w.First+len(w.Actions) {
				return ActionAddr{Stage: si, Workflow: wi, Action: flat - w.First, Flat: flat}
			}
		}
	}
	panic(fmt.Sprintf("action index %d out of range", flat))
}

// InitialStatus lays out the status of a run that has not started anything: every stage,
// workflow and action Pending.
func (p *RunPlan) InitialStatus() ([]drv1.StageStatus, []drv1.ActionStatus) {
	stages := make([]drv1.StageStatus, len(p.Stages))
	actions := make([]drv1.ActionStatus, 0, p.ActionCount())
	for si, s := range p.Stages {
		stages[si] = drv1.StageStatus{Name: s.Name, Phase: drv1.StepPending, Parallel: s.Parallel, DependsOn: s.DependsOn}
		for wi, w := range s.Workflows {
			stages[si].WorkflowExecutions = append(stages[si].WorkflowExecutions, drv1.WorkflowExecutionStatus{
				WorkflowRef: w.Ref, Phase: drv1.StepPending, Progress: progress(0, len(w.Actions)),
			})
			for _, a := range w.Actions {
				actions = append(actions, drv1.ActionStatus{Name: a, Stage: s.Name, WorkflowIndex: int32(wi), Phase: drv1.StepPending})
			}
		}
	}
	return stages, actions
}

func progress(done, total int) string { return fmt.Sprintf("%d/%d actions completed", done, total) }

// ExecutionEnded reports whether an execution is over: its phase is final and no action is in
// flight. A run cancelled mid-action is Cancelled at once (nothing new starts), but it holds the
// plan's lock, and is not Complete, until its running actions have finished.
func ExecutionEnded(st *drv1.DRPlanExecutionStatus) bool {
	return ExecutionFinished(st.Phase) && !anyRunning(st)
}

// ExecutionFinished reports whether an execution phase is final.
func ExecutionFinished(p drv1.ExecutionPhase) bool {
	return p == drv1.ExecutionSucceeded || p == drv1.ExecutionFailed || p == drv1.ExecutionCancelled
}

func finished(p drv1.StepPhase) bool {
	return p == drv1.StepSucceeded || p == drv1.StepFailed || p == drv1.StepSkipped || p == drv1.StepCancelled
}

// Advance moves a run forward from its status, in place: it rolls finished actions up into
// their workflows and stages, starts what may start, and ends the run when nothing more can
// happen. It returns the actions to start now (already marked Running). It is a pure function of
// its arguments, so a restarted controller that reads the status back decides the same.
//
// Rules, in order:
//   - a workflow runs its actions one after another; under its failurePolicy Stop the first
//     failure ends it, under Continue the rest still run; it is Failed if any action failed;
//   - a stage runs its workflows all at once when parallel, else one after another; it is
//     Failed if any workflow failed;
//   - a stage may start once every stage it depends on Succeeded (StageReady);
//   - under the plan's failurePolicy Stop, after a failure nothing new starts (workflows already
//     running finish); under Continue, stages that depend on a failed stage are Skipped and
//     everything else still runs;
//   - when cancelled, nothing new starts;
//   - the run ends when nothing is running and nothing more can start.
func Advance(p *RunPlan, st *drv1.DRPlanExecutionStatus, now metav1.Time, cancelled bool) []ActionAddr {
	if ExecutionEnded(st) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), EvalTimeout) // and CostLimit
	defer cancel()
	var start []ActionAddr
	// A step skipped or failed by its guard settles at once; go round until nothing more
	// settles, so that what follows it is decided in the same call.
	for settled := true; settled && !cancelled; {
		failed := rollUp(p, st, now)
		// After a failure under Stop, running workflows finish but nothing new starts.
		noNewWorkflows := failed && p.FailurePolicy != drv1.FailurePolicyContinue
		start, settled = p.startReady(ctx, st, now, noNewWorkflows)
	}
	if cancelled {
		rollUp(p, st, now)
	}
	switch {
	case len(start) == 0 && !anyRunning(st):
		endRun(p, st, now, cancelled)
	case cancelled:
		// Cancelled at once, as the guide shows, while what runs finishes.
		st.Phase, st.Message = drv1.ExecutionCancelled, "Execution cancelled by user"
	}
	summarize(st)
	return start
}

// startReady starts the stages that may start and, in every running stage, what may run next. It
// reports whether a guard settled a step without starting it.
func (p *RunPlan) startReady(ctx context.Context, st *drv1.DRPlanExecutionStatus, now metav1.Time, noNewWorkflows bool) ([]ActionAddr, bool) {
	var start []ActionAddr
	settled := false
	stages := stagesVar(st)
	for _, name := range p.DAG.TopologicalOrder() {
		si := p.stageIndex[name]
		ss := &st.StageStatuses[si]
		if ss.Phase == drv1.StepPending && !noNewWorkflows {
			ready, blocked := p.stageReady(ctx, stages, si)
			if blocked != "" {
				ss.Phase, ss.Message, ss.CompletionTime = drv1.StepSkipped, blocked, &now
				skipStage(p, st, si, blocked)
				stages[name] = stageVar(ss)
				continue
			}
			if !ready {
				continue
			}
			s := p.Stages[si]
			switch run, msg := p.guard(ctx, s.When, p.guardVars(stages, si, -1, s.Params, nil, now)); {
			case run:
				ss.Phase, ss.StartTime = drv1.StepRunning, &now
			default:
				ss.Phase, ss.Message, ss.CompletionTime = drv1.StepSkipped, msg, &now
				if !IsGuardSkip(msg) {
					ss.Phase = drv1.StepFailed
				}
				skipStage(p, st, si, msg)
				settled = true
			}
			stages[name] = stageVar(ss)
		}
		if ss.Phase == drv1.StepRunning {
			more, s := p.startInStage(ctx, st, stages, si, now, noNewWorkflows)
			start = append(start, more...)
			settled = settled || s
		}
	}
	return start, settled && len(start) == 0
}

// GuardSkipPrefix starts the message of a step skipped because its when guard was false.
const GuardSkipPrefix = "Skipped by its guard: "

// IsGuardSkip reports whether a step's message says its guard skipped it.
func IsGuardSkip(message string) bool { return strings.HasPrefix(message, GuardSkipPrefix) }

// guard evaluates a when guard: run says the step runs; otherwise msg says why not, a guard
// skip (GuardSkipPrefix) or an evaluation error.
func (p *RunPlan) guard(ctx context.Context, when *Program, vars map[string]any) (run bool, msg string) {
	if when == nil {
		return true, ""
	}
	ok, err := when.Eval(ctx, vars)
	switch {
	case err != nil:
		return false, fmt.Sprintf("when %q: %v", when.Expression, err)
	case !ok:
		return false, fmt.Sprintf("%swhen %q is false", GuardSkipPrefix, when.Expression)
	}
	return true, ""
}

// guardVars are the variables a guard sees. wi < 0 is a stage guard; actions is set for action
// guards.
func (p *RunPlan) guardVars(stages map[string]any, si, wi int, params map[string]any, actions map[string]any, now metav1.Time) map[string]any {
	s := p.Stages[si]
	deps := s.DependsOn
	if deps == nil {
		deps = []string{}
	}
	vars := map[string]any{
		VarParams:    params,
		VarStage:     map[string]any{"name": s.Name, "dependsOn": deps, "parallel": s.Parallel},
		VarStages:    stages,
		VarPlan:      map[string]any{"name": p.PlanName, "namespace": p.Namespace},
		VarExecution: map[string]any{"name": p.ExecutionName, "namespace": p.Namespace, "operation": string(p.Operation)},
		VarOperation: string(p.Operation),
		VarNow:       now.Time,
	}
	if vars[VarParams] == nil {
		vars[VarParams] = map[string]any{}
	}
	if wi >= 0 {
		w := s.Workflows[wi]
		vars[VarWorkflow] = map[string]any{"name": w.Ref.Name, "namespace": w.Ref.Namespace, "index": wi}
	}
	if actions != nil {
		vars[VarActions] = actions
	}
	return vars
}

// actionsVar is what an action guard sees of its workflow's actions: by name, phase, message and
// outputs (httpResponse with statusCode and body; resourceRef).
func actionsVar(p *RunPlan, st *drv1.DRPlanExecutionStatus, si, wi int) map[string]any {
	w := p.Stages[si].Workflows[wi]
	out := make(map[string]any, len(w.Actions))
	for ai := range w.Actions {
		a := st.ActionStatuses[w.First+ai]
		out[a.Name] = map[string]any{"phase": string(a.Phase), "message": a.Message, "outputs": map[string]any{}}
	}
	stage := p.Stages[si].Name
	for _, o := range st.Outputs {
		if o.Stage != stage || int(o.WorkflowIndex) != wi {
			continue
		}
		a, ok := out[o.ActionName].(map[string]any)
		if !ok {
			continue
		}
		outputs := map[string]any{}
		if o.HTTPResponse != nil {
			outputs["httpResponse"] = map[string]any{"statusCode": int64(o.HTTPResponse.StatusCode), "body": o.HTTPResponse.Body}
		}
		if o.ResourceRef != nil {
			outputs["resourceRef"] = map[string]any{"name": o.ResourceRef.Name, "namespace": o.ResourceRef.Namespace,
				"kind": o.ResourceRef.Kind, "apiVersion": o.ResourceRef.APIVersion, "uid": o.ResourceRef.UID}
		}
		a["outputs"] = outputs
	}
	return out
}

// stageReady decides through the StageReady and StageBlocked rules whether a pending stage may
// start (ready), or can never run (blocked, with the reason it is skipped).
func (p *RunPlan) stageReady(ctx context.Context, stages map[string]any, si int) (ready bool, blocked string) {
	s := p.Stages[si]
	deps := s.DependsOn
	if deps == nil {
		deps = []string{}
	}
	vars := map[string]any{
		VarStage:  map[string]any{"name": s.Name, "dependsOn": deps, "parallel": s.Parallel},
		VarStages: stages,
	}
	isBlocked, msg, err := p.Rules.StageBlocked.Decide(ctx, vars, true)
	switch {
	case err != nil:
		return false, "Skipped: " + err.Error()
	case isBlocked:
		return false, msg
	}
	ready, _, err = p.Rules.StageReady.Decide(ctx, vars, false)
	if err != nil {
		return false, "Skipped: " + err.Error()
	}
	return ready, ""
}

// stagesVar is the rules' view of every stage: name -> phase and message.
func stagesVar(st *drv1.DRPlanExecutionStatus) map[string]any {
	out := make(map[string]any, len(st.StageStatuses))
	for i := range st.StageStatuses {
		out[st.StageStatuses[i].Name] = stageVar(&st.StageStatuses[i])
	}
	return out
}

func stageVar(s *drv1.StageStatus) map[string]any {
	return map[string]any{"phase": string(s.Phase), "message": s.Message, "guarded": IsGuardSkip(s.Message)}
}

func skipStage(p *RunPlan, st *drv1.DRPlanExecutionStatus, si int, msg string) {
	for wi, w := range p.Stages[si].Workflows {
		ws := &st.StageStatuses[si].WorkflowExecutions[wi]
		ws.Phase, ws.Message = drv1.StepSkipped, msg
		skipPending(st, w, msg)
	}
}

// skipPending skips the actions of w that have not run: one carried over from an earlier run of
// a retry's chain keeps its phase when the guard that now skips its workflow did not then.
func skipPending(st *drv1.DRPlanExecutionStatus, w RunWorkflow, msg string) {
	for ai := range w.Actions {
		if a := &st.ActionStatuses[w.First+ai]; a.Phase == drv1.StepPending {
			a.Phase, a.Message = drv1.StepSkipped, msg
		}
	}
}

// startInStage starts, in a running stage, the workflows that may start (unless noNewWorkflows)
// and the next action of each running workflow, skipping (or failing) steps by their guards. It
// reports whether a guard settled a step.
func (p *RunPlan) startInStage(ctx context.Context, st *drv1.DRPlanExecutionStatus, stages map[string]any, si int, now metav1.Time, noNewWorkflows bool) ([]ActionAddr, bool) {
	s := p.Stages[si]
	var start []ActionAddr
	settled := false
	for wi, w := range s.Workflows {
		ws := &st.StageStatuses[si].WorkflowExecutions[wi]
		if ws.Phase == drv1.StepPending {
			if noNewWorkflows || (!s.Parallel && wi > 0 && !finished(st.StageStatuses[si].WorkflowExecutions[wi-1].Phase)) {
				break // sequential: the previous workflow has not finished
			}
			if run, msg := p.guard(ctx, w.When, p.guardVars(stages, si, wi, w.Params, nil, now)); !run {
				ws.Phase, ws.Message, ws.CompletionTime = drv1.StepSkipped, msg, &now
				if !IsGuardSkip(msg) {
					ws.Phase = drv1.StepFailed
				}
				skipPending(st, w, msg)
				settled = true
				continue
			}
			ws.Phase, ws.StartTime = drv1.StepRunning, &now
		}
		if ws.Phase != drv1.StepRunning {
			continue
		}
		for ai := range w.Actions {
			a := &st.ActionStatuses[w.First+ai]
			if a.Phase == drv1.StepRunning {
				break // one action at a time
			}
			if a.Phase != drv1.StepPending {
				continue
			}
			if ai < len(w.ActionSkip) && w.ActionSkip[ai] != "" {
				a.Phase, a.CompletionTime, a.Message = drv1.StepSkipped, &now, w.ActionSkip[ai]
				settled = true
				continue
			}
			var when *Program
			if ai < len(w.ActionWhen) {
				when = w.ActionWhen[ai]
			}
			if when != nil {
				run, msg := p.guard(ctx, when, p.guardVars(stages, si, wi, w.Params, actionsVar(p, st, si, wi), now))
				if !run {
					a.CompletionTime, a.Message = &now, msg
					a.Phase = drv1.StepSkipped
					settled = true
					if !IsGuardSkip(msg) {
						a.Phase = drv1.StepFailed
						break // the workflow settles on the next round
					}
					continue
				}
			}
			a.Phase, a.StartTime, a.Message = drv1.StepRunning, &now, ""
			ws.CurrentAction = a.Name
			start = append(start, ActionAddr{Stage: si, Workflow: wi, Action: ai, Flat: w.First + ai})
			break
		}
		if !s.Parallel {
			break
		}
	}
	return start, settled
}

// rollUp settles workflows and stages whose actions have all finished, and reports whether
// anything failed.
func rollUp(p *RunPlan, st *drv1.DRPlanExecutionStatus, now metav1.Time) (anyFailed bool) {
	for si, s := range p.Stages {
		ss := &st.StageStatuses[si]
		stageDone, stageFailed := true, false
		for wi, w := range s.Workflows {
			ws := &st.StageStatuses[si].WorkflowExecutions[wi]
			done, failedAt, running := 0, -1, false
			for ai := range w.Actions {
				a := st.ActionStatuses[w.First+ai]
				switch {
				case a.Phase == drv1.StepRunning:
					running = true
				case finished(a.Phase):
					done++
					if a.Phase == drv1.StepFailed && failedAt < 0 {
						failedAt = ai
					}
				}
			}
			ws.Progress = progress(done, len(w.Actions))
			if ws.Phase == drv1.StepRunning && !running {
				stop := failedAt >= 0 && w.FailurePolicy != drv1.FailurePolicyContinue
				if done == len(w.Actions) || stop {
					ws.Phase, ws.CurrentAction, ws.CompletionTime = drv1.StepSucceeded, "", &now
					ws.Duration = duration(ws.StartTime, &now)
					if failedAt >= 0 {
						a := st.ActionStatuses[w.First+failedAt]
						ws.Phase, ws.Message = drv1.StepFailed, ActionFailedMessage(a.Name, a.Message)
					}
				}
			}
			if ws.Phase == drv1.StepFailed {
				stageFailed, anyFailed = true, true
			}
			if !finished(ws.Phase) {
				stageDone = false
			}
		}
		if ss.Phase == drv1.StepRunning && stageDone {
			ss.Phase, ss.CompletionTime = drv1.StepSucceeded, &now
			ss.Duration = duration(ss.StartTime, &now)
			if stageFailed {
				ss.Phase = drv1.StepFailed
				ss.Message = firstWorkflowFailure(st.StageStatuses[si].WorkflowExecutions)
			}
		}
		if ss.Phase == drv1.StepFailed {
			anyFailed = true
		}
	}
	return anyFailed
}

// ActionFailedMessage is the guide's form of a failure: Action '<name>' failed: <reason>.
func ActionFailedMessage(name, reason string) string {
	return fmt.Sprintf("Action '%s' failed: %s", name, reason)
}

func firstWorkflowFailure(ws []drv1.WorkflowExecutionStatus) string {
	for _, w := range ws {
		if w.Phase == drv1.StepFailed {
			return w.Message
		}
	}
	return ""
}

func anyRunning(st *drv1.DRPlanExecutionStatus) bool {
	for _, a := range st.ActionStatuses {
		if a.Phase == drv1.StepRunning {
			return true
		}
	}
	return false
}

// endRun sets the final phase once nothing runs and nothing more can start. Stages and
// workflows left Running (stopped by a failure or a cancel) are closed: Failed when something in
// them failed, else Cancelled; what never started stays Pending.
func endRun(p *RunPlan, st *drv1.DRPlanExecutionStatus, now metav1.Time, cancelled bool) {
	for si := range st.StageStatuses {
		ss := &st.StageStatuses[si]
		if ss.Phase != drv1.StepRunning {
			continue
		}
		for wi := range ss.WorkflowExecutions {
			if ws := &ss.WorkflowExecutions[wi]; ws.Phase == drv1.StepRunning {
				ws.Phase, ws.CurrentAction, ws.CompletionTime = drv1.StepCancelled, "", &now
				ws.Duration = duration(ws.StartTime, &now)
			}
		}
		ss.CompletionTime, ss.Duration = &now, duration(ss.StartTime, &now)
		if msg := firstWorkflowFailure(ss.WorkflowExecutions); msg != "" {
			ss.Phase, ss.Message = drv1.StepFailed, msg
		} else {
			ss.Phase = drv1.StepCancelled
		}
	}
	var firstFailure string
	for _, name := range p.DAG.TopologicalOrder() {
		ss := st.StageStatuses[p.stageIndex[name]]
		if ss.Phase == drv1.StepFailed && firstFailure == "" {
			firstFailure = ss.Message
		}
	}
	st.CompletionTime = &now
	switch {
	case cancelled:
		st.Phase, st.Message = drv1.ExecutionCancelled, "Execution cancelled by user"
	case firstFailure != "":
		st.Phase, st.Message = drv1.ExecutionFailed, firstFailure
	default:
		st.Phase, st.Message = drv1.ExecutionSucceeded, ""
	}
}

// summarize recounts the summary from the stage and workflow phases. Cancelled counts as
// neither completed nor failed: pending.
func summarize(st *drv1.DRPlanExecutionStatus) {
	var s drv1.ExecutionSummary
	for _, ss := range st.StageStatuses {
		s.TotalStages++
		count(ss.Phase, &s.CompletedStages, &s.RunningStages, &s.PendingStages, &s.FailedStages)
		for _, ws := range ss.WorkflowExecutions {
			s.TotalWorkflows++
			count(ws.Phase, &s.CompletedWorkflows, &s.RunningWorkflows, &s.PendingWorkflows, &s.FailedWorkflows)
		}
	}
	st.Summary = &s
}

func count(phase drv1.StepPhase, completed, running, pending, failed *int32) {
	switch phase {
	case drv1.StepSucceeded, drv1.StepSkipped:
		*completed++
	case drv1.StepRunning:
		*running++
	case drv1.StepFailed:
		*failed++
	default:
		*pending++
	}
}

// duration formats the time between two instants as the guide does ("40s", "2.1s").
func duration(from, to *metav1.Time) string {
	if from == nil || to == nil {
		return ""
	}
	return FormatDuration(to.Sub(from.Time))
}

// FormatDuration rounds d for people: 2.1s, 40s, 1m30s.
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// CloseRunning ends whatever a status shows Running, for a run that stops without finishing
// (it cannot resume): running actions Failed with message; a running workflow Succeeded if all
// its actions had, else Failed; running stages Failed.
func CloseRunning(st *drv1.DRPlanExecutionStatus, now metav1.Time, message string) {
	type wfKey struct {
		stage string
		index int32
	}
	complete := map[wfKey]bool{}
	for i := range st.ActionStatuses {
		a := &st.ActionStatuses[i]
		if a.Phase == drv1.StepRunning {
			// It was in flight: it may have done its work before it was cut off.
			a.Phase, a.Message, a.CompletionTime, a.MayHaveActed = drv1.StepFailed, message, &now, true
		}
		k := wfKey{a.Stage, a.WorkflowIndex}
		if _, seen := complete[k]; !seen {
			complete[k] = true
		}
		complete[k] = complete[k] && (a.Phase == drv1.StepSucceeded || a.Phase == drv1.StepSkipped)
	}
	for si := range st.StageStatuses {
		ss := &st.StageStatuses[si]
		for wi := range ss.WorkflowExecutions {
			ws := &ss.WorkflowExecutions[wi]
			if ws.Phase != drv1.StepRunning {
				continue
			}
			ws.CurrentAction, ws.CompletionTime = "", &now
			if complete[wfKey{ss.Name, int32(wi)}] {
				ws.Phase = drv1.StepSucceeded
			} else {
				ws.Phase, ws.Message = drv1.StepFailed, message
			}
		}
		if ss.Phase == drv1.StepRunning {
			ss.Phase, ss.Message, ss.CompletionTime = drv1.StepFailed, message, &now
		}
	}
}
