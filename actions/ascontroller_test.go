package actions

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// An action acting as the controller (no ServiceAccount) never reaches the API server with an
// object of the controller's own group: the webhooks trust the controller's user for the records
// of who asked. No client is needed to tell: the runner here has none.
func TestResourceRunnerRefusesOwnGroupAsController(t *testing.T) {
	r := NewResourceRunner(nil)
	forged := `
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlanExecution
metadata:
  name: forged
  namespace: victims
  annotations:
    dr.bkbcs.tencent.com/requester: '{"username":"admin"}'
spec:
  planRef: {name: p}
`
	for _, op := range []drv1.ResourceOperation{drv1.OperationCreate, drv1.OperationApply, drv1.OperationPatch, drv1.OperationDelete} {
		t.Run(string(op), func(t *testing.T) {
			_, err := r.Run(t.Context(), resourceRequest("default", op, forged))
			require.Error(t, err)
			assert.Equal(t, `action "prepare/0/create-dr-config" (`+string(op)+` DRPlanExecution victims/forged) acts as the controller, `+
				`which may not create, change or delete dr.bkbcs.tencent.com objects for a plan; give the plan a serviceAccountName`, err.Error())
		})
	}
	t.Run("DeleteCreated", func(t *testing.T) {
		_, err := r.DeleteCreated(t.Context(), "", drv1.ResourceReference{APIVersion: "dr.bkbcs.tencent.com/v1alpha1", Kind: "DRPlan", Name: "p", Namespace: "ns", UID: "u"})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "acts as the controller")
	})
	t.Run("OtherGroupsAreNotJudgedHere", func(t *testing.T) {
		assert.False(t, ownGroupRefused("", "apps/v1"))
		assert.False(t, ownGroupRefused("", "v1"))
		assert.False(t, ownGroupRefused("", "dr.bkbcs.tencent.com.example/v1"))
		assert.False(t, ownGroupRefused("ns/sa", "dr.bkbcs.tencent.com/v1alpha1"), "a ServiceAccount's rights are RBAC's to judge")
		assert.True(t, ownGroupRefused("", "dr.bkbcs.tencent.com/v1alpha1"))
	})
}
