package admission_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// TestPatchRollbackLeavesOverrides: the webhook warns when a Localization Patch's rollback
// leaves in place an override the Patch sets (the guide's 示例 4 does).
func TestPatchRollbackLeavesOverrides(t *testing.T) {
	scale := func(name string) drv1.Override {
		return drv1.Override{Name: name, Type: "JSONPatch", Value: "- op: replace\n  path: /spec/replicas\n  value: 1\n"}
	}
	loc := func(op drv1.ClusternetOperation, name string, overrides ...drv1.Override) *drv1.LocalizationAction {
		return &drv1.LocalizationAction{Operation: op, Name: name, Namespace: "{{ .params.drClusterNamespace }}", Overrides: overrides}
	}
	patch := loc("Patch", "existing-app-localization", scale("scale-up"))
	warned := `spec.actions[0] (update-replicas): its rollback leaves in place the overrides this Patch sets ("scale-up"), so a Revert keeps them; ` +
		`name each in the rollback's overrides: remove: true takes away one the Patch added, a value sets back one it replaced`
	tests := []struct {
		name     string
		patch    *drv1.LocalizationAction
		rollback drv1.ActionBody
		want     []string
	}{
		{name: "the guide's 示例 4: the rollback adds scale-down and leaves scale-up", patch: patch,
			rollback: drv1.ActionBody{Type: drv1.ActionTypeLocalization, Localization: loc("Patch", "existing-app-localization", scale("scale-down"))},
			want:     []string{warned}},
		{name: "a rollback removing scale-up", patch: patch,
			rollback: drv1.ActionBody{Type: drv1.ActionTypeLocalization, Localization: loc("Patch", "existing-app-localization", drv1.Override{Name: "scale-up", Remove: true})}},
		{name: "a rollback setting scale-up back", patch: patch,
			rollback: drv1.ActionBody{Type: drv1.ActionTypeLocalization, Localization: loc("Patch", "existing-app-localization", scale("scale-up"))}},
		{name: "a rollback deleting the Localization", patch: patch,
			rollback: drv1.ActionBody{Type: drv1.ActionTypeLocalization, Localization: loc("Delete", "existing-app-localization")}},
		{name: "a rollback of another Localization", patch: patch,
			rollback: drv1.ActionBody{Type: drv1.ActionTypeLocalization, Localization: loc("Patch", "other", drv1.Override{Name: "scale-up", Remove: true})},
			want:     []string{warned}},
		{name: "a rollback that is an HTTP call", patch: patch,
			rollback: drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x"}},
			want:     []string{warned}},
		{name: "a Patch that only removes", patch: loc("Patch", "existing-app-localization", drv1.Override{Name: "scale-up", Remove: true}),
			rollback: drv1.ActionBody{Type: drv1.ActionTypeLocalization, Localization: loc("Patch", "existing-app-localization", scale("scale-up"))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wf := &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "w", Namespace: "prod"}, Spec: drv1.DRWorkflowSpec{
				Parameters: []drv1.Parameter{{Name: "drClusterNamespace", Required: true}},
				Actions: []drv1.Action{{Name: "update-replicas", ActionBody: drv1.ActionBody{Type: drv1.ActionTypeLocalization, Localization: tc.patch},
					Rollback: &drv1.RollbackAction{ActionBody: tc.rollback}}}}}
			d := fixture(t).Workflow(wf)
			assert.True(t, d.Allowed(), "refused: %v", d.Err)
			assert.Equal(t, tc.want, d.Warnings)
		})
	}
}
