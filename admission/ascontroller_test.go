package admission_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bkbcs/drplan-controller/admission"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// A plan without a serviceAccountName whose workflow's static manifest names an object of
// dr.bkbcs.tencent.com is refused (its actions would act as the controller, which the records of
// who asked trust): its create or spec change, its execute and revert triggers, and its
// executions. With a ServiceAccount, RBAC judges.
func TestDecideRefusesOwnGroupAsController(t *testing.T) {
	resource := func(name, manifest string, rollback string) drv1.Action {
		a := drv1.Action{Name: name, ActionBody: drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource,
			Resource: &drv1.ResourceAction{Operation: drv1.OperationCreate, Manifest: manifest}}}
		if rollback != "" {
			a.Rollback = &drv1.RollbackAction{ActionBody: drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource,
				Resource: &drv1.ResourceAction{Operation: drv1.OperationDelete, Manifest: rollback}}}
		}
		return a
	}
	const forged = "apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlanExecution\nmetadata:\n  name: forged\n  namespace: other\nspec:\n  planRef: {name: q}\n"
	const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: '{{ .params.name }}'\n"
	const patchPlan = "apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata:\n  name: q\n"
	tests := []struct {
		name    string
		actions []drv1.Action
		sa      string
		want    string // "" admits
	}{
		{name: "a ConfigMap", actions: []drv1.Action{resource("cm", cm, "")}},
		{name: "a forged execution", actions: []drv1.Action{resource("cm", cm, ""), resource("forge", forged, "")},
			want: `DRPlan prod/p has no serviceAccountName, so DRWorkflow prod/wf spec.actions[1] (action "forge": Create DRPlanExecution) acts as the controller, ` +
				`which may not create, change or delete dr.bkbcs.tencent.com objects for a plan; give the plan a serviceAccountName`},
		{name: "in a rollback", actions: []drv1.Action{resource("cm", cm, patchPlan)},
			want: `spec.actions[0].rollback (action "cm": Delete DRPlan) acts as the controller`},
		{name: "as a ServiceAccount", actions: []drv1.Action{resource("forge", forged, "")}, sa: "dr-runner"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wf := &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "wf", Namespace: "prod"}, Spec: drv1.DRWorkflowSpec{
				Parameters: []drv1.Parameter{{Name: "name"}}, Actions: tc.actions}}
			p := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"},
				Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}, ServiceAccountName: tc.sa,
					GlobalParams: []drv1.ParamValue{{Name: "name", Value: "x"}}}}
			s := &state{workflows: map[string]*drv1.DRWorkflow{key("prod", "wf"): wf}, plans: map[string]*drv1.DRPlan{key("prod", "p"): p},
				executions: map[string]*drv1.DRPlanExecution{}}
			r, err := rules.New(rules.Options{})
			require.NoError(t, err)
			d := &admission.Decider{State: s, Rules: r}

			exec := execution("new", drv1.OperationExecute, "", nil)
			triggered := p.DeepCopy()
			triggered.Annotations = map[string]string{drv1.AnnotationTrigger: "execute"}
			decisions := map[string]admission.Decision{
				"execution": d.Execution(context.Background(), exec, nil),
				"plan":      d.Plan(context.Background(), p, nil),
				"trigger":   d.Plan(context.Background(), triggered, p),
			}
			for what, dec := range decisions {
				if tc.want == "" {
					assert.True(t, dec.Allowed(), "%s refused: %v", what, dec.Err)
					continue
				}
				require.False(t, dec.Allowed(), what)
				assert.Contains(t, dec.Err.Error(), tc.want, what)
			}
		})
	}
}
