package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bkbcs/drplan-controller/controlplane"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// TestJobWithoutTimeoutEndsAtTheDefault: a Job action without a timeout does not wait for ever
// (its run would hold the plan's lock): past --default-job-timeout (here 2 s) the Job is deleted
// and the action fails saying so.
func TestJobWithoutTimeoutEndsAtTheDefault(t *testing.T) {
	if env.SetJobTimeout == nil {
		t.Skip("this backend cannot restart its controller with another --default-job-timeout (the chart's pods)")
	}
	require.NoError(t, env.SetJobTimeout(2*time.Second))
	t.Cleanup(func() { require.NoError(t, env.SetJobTimeout(0)) })
	ctx := context.Background()
	ns := newNamespace(t, "job-default")
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  actions:
  - name: run
    type: Job
    job:
      namespace: %[1]s
      generateName: endless-
      template:
        spec:
          containers: [{name: c, image: %[2]s, command: [sh, -c, "sleep 600"]}]
`, ns, controlplane.BusyboxImage))
	applyPlan(t, ns, "p", "wf")
	createExecution(t, ns, "run", "p")
	e := waitExecution(t, ns, "run", drv1.ExecutionFailed)
	assert.Contains(t, e.Status.Message, "did not finish within 2s (the default of a Job without a timeout, --default-job-timeout): deleted it and its pods")
	eventually(t, "the Job to be gone", func() (bool, string) {
		list, err := env.Kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for _, j := range list.Items {
			if strings.HasPrefix(j.Name, "endless-") && j.DeletionTimestamp == nil {
				return false, "still there: " + j.Name
			}
		}
		return true, ""
	})
	_, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(ctx, "run", metav1.GetOptions{})
	assert.False(t, apierrors.IsNotFound(err))
}
