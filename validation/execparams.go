package validation

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// unlisted keeps the missing parameters the plan does not leave to its executions.
func unlisted(missing []MissingParam, executionParams []string) []MissingParam {
	return slices.DeleteFunc(missing, func(m MissingParam) bool { return slices.Contains(executionParams, m.Name) })
}

// missingErrors are the errors of required parameters that the plan leaves without a value and
// does not name in spec.executionParams, at the place the plan would give them one.
func missingErrors(missing []MissingParam) field.ErrorList {
	var errs field.ErrorList
	for _, m := range missing {
		where := "here or in spec.globalParams"
		if m.Path.String() == "spec.globalParams" {
			where = "in spec.globalParams"
		}
		errs = append(errs, field.Required(m.Path, fmt.Sprintf(
			"required parameter %s has no value: set it %s, or name it in spec.executionParams so that every execution gives it in spec.params", m, where)))
	}
	return errs
}

// executionParamsDeclared checks that every name of spec.executionParams is a parameter of a
// workflow the plan runs. It is known only once every workflow is found and valid.
func executionParamsDeclared(plan *drv1.DRPlan, workflows WorkflowGetter) field.ErrorList {
	if len(plan.Spec.ExecutionParams) == 0 {
		return nil
	}
	var declared []string
	for _, s := range plan.Spec.EffectiveStages() {
		for _, sw := range s.Workflows {
			wf, unresolved := resolveWorkflow(workflows, plan.Namespace, sw.WorkflowRef)
			if unresolved != "" {
				return nil // the plan is Invalid for it; its parameters are not known
			}
			declared = append(declared, wf.Spec.ParameterNames()...)
		}
	}
	var errs field.ErrorList
	for i, name := range plan.Spec.ExecutionParams {
		if !slices.Contains(declared, name) {
			errs = append(errs, field.Invalid(field.NewPath("spec", "executionParams").Index(i), name, fmt.Sprintf(
				"no workflow of the plan declares a parameter %q%s", name, rules.DidYouMean(name, declared))))
		}
	}
	return errs
}

// UnsuppliedExecutionParams lists the names of the plan's spec.executionParams that params (an
// execution's spec.params; nil for a trigger) does not give, in the plan's order.
func UnsuppliedExecutionParams(plan *drv1.DRPlanSpec, params []drv1.ParamValue) []string {
	var out []string
	for _, name := range plan.ExecutionParams {
		if !slices.ContainsFunc(params, func(p drv1.ParamValue) bool { return p.Name == name }) {
			out = append(out, name)
		}
	}
	return out
}

// ExecutionParamsMessage says that an execution of plan namespace/name must give names, which
// it does not: the webhook's refusal and the controller's failure at start.
func ExecutionParamsMessage(namespace, name string, names []string) string {
	return fmt.Sprintf("DRPlan %s/%s names %s in spec.executionParams: every execution must give %s a value in its spec.params",
		namespace, name, strings.Join(names, ", "), pronoun(len(names)))
}

func pronoun(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}
