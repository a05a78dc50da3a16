package e2e

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bkbcs/drplan-controller/actions"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// TestHTTPEgressPolicy: under the chart's default egress policy, an HTTP action calling the
// recorder on loopback fails at once, its message naming the rule and the address, and nothing
// reaches the recorder; with loopback allowed (--http-allow-cidrs) the same plan runs.
func TestHTTPEgressPolicy(t *testing.T) {
	if env.SetHTTPEgress == nil {
		t.Skip("this backend cannot restart its controller under another egress policy")
	}
	rec := newRecorder(t)
	if !strings.HasPrefix(rec.URL(""), "http://127.0.0.1:") {
		t.Skipf("the recorder is not on loopback: %s", rec.URL(""))
	}
	policy, err := actions.ParseEgressPolicy(actions.DefaultHTTPDenyCIDRs, "", "", "")
	require.NoError(t, err)
	require.NoError(t, env.SetHTTPEgress(policy))
	t.Cleanup(func() { require.NoError(t, env.SetHTTPEgress(actions.EgressPolicy{})) })

	ns := newNamespace(t, "egress")
	kubectlApply(t, httpWorkflow(ns, "notify", rec, "", "/egress"))
	kubectlApply(t, planYAML(ns, "p", "notify"))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	createExecution(t, ns, "refused", "p")
	e := waitExecution(t, ns, "refused", drv1.ExecutionFailed)
	require.Len(t, e.Status.ActionStatuses, 1)
	a := e.Status.ActionStatuses[0]
	assert.Equal(t, drv1.StepFailed, a.Phase)
	assert.Equal(t, "POST "+rec.URL("/egress")+": address 127.0.0.1 is refused by --http-deny-cidrs 127.0.0.0/8", a.Message)
	assert.Zero(t, a.RetryCount)
	assert.Zero(t, rec.Arrived("/egress"), "nothing reached the recorder")

	policy.AllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	require.NoError(t, env.SetHTTPEgress(policy))
	waitLockReleased(t, ns, "p")
	createExecution(t, ns, "allowed", "p")
	waitExecution(t, ns, "allowed", drv1.ExecutionSucceeded)
	assert.Len(t, rec.CallsTo("/egress"), 1)
}
