package validation_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/test/fixtures"
	"github.com/bkbcs/drplan-controller/validation"
)

// TestGuardCost: a guard or condition whose estimated worst case exceeds the cost limit makes
// the workflow or plan Invalid at its field, with the estimate and where; the usual ones pass.
func TestGuardCost(t *testing.T) {
	env := newEnv(t)
	cm := drv1.ActionBody{Type: "KubernetesResource", Resource: &drv1.ResourceAction{Operation: "Create",
		Manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"}}
	http := func(cond string) drv1.ActionBody {
		return drv1.ActionBody{Type: "HTTP", HTTP: &drv1.HTTPAction{URL: "https://x", SuccessCondition: cond}}
	}
	tests := []struct {
		name string
		acts []drv1.Action
		want []string
	}{{
		name: "the usual guards and conditions",
		acts: []drv1.Action{
			{Name: "probe", ActionBody: http("response.code == 200 && has(response.json) && response.json.items.exists(i, i.ready)")},
			{Name: "cm", When: "actions['probe'].outputs.httpResponse.body.contains('ok') && params.replicas >= 3", ActionBody: cm,
				WaitFor: &drv1.WaitFor{Condition: "object.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')"}},
		},
	}, {
		name: "nested comprehensions in a waitFor",
		acts: []drv1.Action{{Name: "cm", ActionBody: cm,
			WaitFor: &drv1.WaitFor{Condition: "object.data.all(a, object.data.all(b, a == b))"}}},
		want: []string{`spec.actions[0].waitFor.condition: Invalid value: "object.data.all(a, object.data.all(b, a == b))": ` +
			`estimated cost 3524020862979 exceeds the limit 1000000, at 1:1: lists, maps and strings are assumed as large as docs/rules.md says`},
	}, {
		name: "a regex on a grown body in a successCondition",
		acts: []drv1.Action{{Name: "probe", ActionBody: http("response.code == 200 && response.body.replace('', response.body).matches('x+y')")}},
		want: []string{`spec.actions[0].http.successCondition: Invalid value: "response.code == 200 && response.body.replace('', response.body).matches('x+y')": ` +
			`estimated cost 859019680 exceeds the limit 1000000, most of it in "response.body.replace('', response.body)" at 1:25 (estimated cost 429509840): ` +
			`lists, maps and strings are assumed as large as docs/rules.md says`},
	}, {
		name: "every action against every other, three deep, in a when",
		acts: []drv1.Action{{Name: "a", When: "actions.all(x, actions.all(y, actions.all(z, x != z)))", ActionBody: http("")}},
		want: []string{`spec.actions[0].when: Invalid value: "actions.all(x, actions.all(y, actions.all(z, x != z)))": ` +
			`estimated cost 144201002 exceeds the limit 1000000, at 1:1: lists, maps and strings are assumed as large as docs/rules.md says`},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wf := &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "wf", Namespace: "ns"},
				Spec: drv1.DRWorkflowSpec{Parameters: []drv1.Parameter{fixtures.Param("replicas", "int", "3")}, Actions: tc.acts}}
			assert.Equal(t, tc.want, errStrings(validation.ValidateWorkflow(env, wf)))
		})
	}

	plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"}, Spec: drv1.DRPlanSpec{Stages: []drv1.Stage{{
		Name: "s", When: "stages.all(a, stages.all(b, stages[a].message.contains(stages[b].message)))",
		Workflows: []drv1.StageWorkflow{{WorkflowRef: drv1.ObjectReference{Name: "wf"}, When: "stages['s'].phase == 'Pending'"}},
	}}}}
	assert.Equal(t, []string{`spec.stages[0].when: Invalid value: "stages.all(a, stages.all(b, stages[a].message.contains(stages[b].message)))": ` +
		`estimated cost 106200502 exceeds the limit 1000000, at 1:1: lists, maps and strings are assumed as large as docs/rules.md says`},
		errStrings(validation.ValidatePlan(env, plan, workflows{}).Errors))
}
