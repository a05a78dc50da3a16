package admission

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/runplan"
)

// retry decides a retry (spec.retryOf): the run it retries must be one of the plan's that may be
// retried (runplan.RetryProblem), the actions skipActions names must be ones that did not
// succeed, and the plan must not be locked. Each call that may have acted and will run again is
// named in a warning, for the requester to decide (skipActions marks it done).
func (d *Decider) retry(ctx context.Context, plan *drv1.DRPlan, exec *drv1.DRPlanExecution) Decision {
	path := field.NewPath("spec", "retryOf")
	execs, err := d.State.ExecutionsForPlan(plan.Namespace, plan.Name)
	if err != nil {
		return Decision{Err: apierrors.NewInternalError(err)}
	}
	var prev *drv1.DRPlanExecution
	for _, e := range execs {
		if e.Name == exec.Spec.RetryOf && e.Namespace == exec.Namespace {
			prev = e
		}
	}
	refuse := func(p *field.Path, value, msg string) Decision {
		return Decision{Err: invalid("DRPlanExecution", orGenerated(exec.ObjectMeta), field.ErrorList{field.Invalid(p, value, msg)})}
	}
	if prev == nil {
		return refuse(path, exec.Spec.RetryOf, fmt.Sprintf("no execution %s of plan %s", exec.Spec.RetryOf, plan.Name))
	}
	if problem := runplan.RetryProblem(exec, prev, execs, string(plan.UID)); problem != "" {
		return refuse(path, exec.Spec.RetryOf, problem)
	}
	skip, err := runplan.SkipIndexes(prev.Status.ActionStatuses, exec.Spec.SkipActions)
	if err != nil {
		return refuse(field.NewPath("spec", "skipActions"), strings.Join(exec.Spec.SkipActions, ","), strings.TrimPrefix(err.Error(), "spec.skipActions: "))
	}
	if err := d.lockFree(ctx, plan, exec, execs); err != nil {
		return Decision{Err: err}
	}
	var warnings []string
	for _, id := range runplan.Interrupted(rules.Chain(prev, execs), skip) {
		warnings = append(warnings, fmt.Sprintf("%s may have acted in a run of this chain (it was interrupted, or failed after its request was sent), and this retry runs it again: name it in spec.skipActions if it took effect", id))
	}
	return Decision{Warnings: warnings}
}
