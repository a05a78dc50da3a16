package e2e

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

func example(path string) string { return filepath.Join(env.Root, "examples", path) }

// TestGuideExamples applies every complete document of the user guide (kept under examples/)
// with kubectl, in the guide's namespaces, and checks the statuses the guide describes.
func TestGuideExamples(t *testing.T) {
	ctx := context.Background()
	createNamespace(t, "production") // the guide's namespace: this test runs once per control plane
	dr := env.DR.DrV1alpha1()

	// The guide applies each document in turn: workflow, plan, execution. (A directory applies in
	// file-name order: a plan before its workflow is admitted with a warning, but an execution of
	// a plan whose workflow does not exist yet is refused.)
	applyInOrder := func(t *testing.T, dir string, files ...string) string {
		var out string
		for _, f := range files {
			out += kubectl(t, "apply", "-f", example(filepath.Join(dir, f)))
		}
		return out
	}

	t.Run("quickstart", func(t *testing.T) {
		out := applyInOrder(t, "quickstart", "simple-workflow.yaml", "simple-plan.yaml", "execute-plan.yaml")
		assert.Contains(t, out, "drworkflow.dr.bkbcs.tencent.com/simple-notify created")
		waitWorkflowPhase(t, "default", "simple-notify", drv1.WorkflowReady)
		p := waitPlanPhase(t, "default", "my-first-plan", drv1.PlanReady)
		assert.EqualValues(t, 1, p.Status.StageCount, "the workflowRef shorthand is one stage")
		assert.Equal(t, "Ready", kubectl(t, "get", "drworkflow", "simple-notify", "-o", "jsonpath={.status.phase}"))
		e, err := dr.DRPlanExecutions("default").Get(ctx, "my-first-execution", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, drv1.OperationExecute, e.Spec.Operation)
	})

	t.Run("workflow fragments", func(t *testing.T) {
		kubectl(t, "apply", "-f", example("fragments"))
		for _, name := range []string{"http-action", "job-action", "localization-create-action",
			"localization-patch-action", "subscription-create-action", "kubernetes-resource-actions"} {
			wf := waitWorkflowPhase(t, "default", name, drv1.WorkflowReady)
			assert.NotZero(t, wf.Status.ActionCount)
		}
		wf, err := dr.DRWorkflows("default").Get(ctx, "http-action", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, []int32{200, 201, 202}, wf.Spec.Actions[0].HTTP.ExpectedStatusCodes)
	})

	t.Run("parameterized workflow (corrected copy) is refused without a feed", func(t *testing.T) {
		// The guide's example omits the Localization's feed, which a Create needs: refused with
		// the field and what to do, on apply and on a server-side dry run alike.
		want := `The DRWorkflow "parameterized-workflow" is invalid: spec.actions[0].localization.feed: Required value: a Localization Create needs the feed it customises`
		for _, args := range [][]string{{"apply", "-f"}, {"apply", "--dry-run=server", "-f"}} {
			_, stderr, err := env.Kubectl(ctx, "", append(args, example("workflows/parameterized-workflow.yaml"))...)
			require.Error(t, err)
			assert.Contains(t, stderr, want)
		}
	})

	t.Run("scenario 1", func(t *testing.T) {
		applyInOrder(t, "scenario1", "app-failover-workflow.yaml", "app-failover-plan.yaml", "app-dr-exec.yaml")
		wf := waitWorkflowPhase(t, "production", "app-failover", drv1.WorkflowReady)
		assert.EqualValues(t, 5, wf.Status.ActionCount)
		waitPlanPhase(t, "production", "app-dr-plan", drv1.PlanReady)
		// The guide's printer output: NAME STAGES PHASE AGE / app-dr-plan 1 Ready.
		out := kubectl(t, "get", "drplan", "app-dr-plan", "-n", "production")
		assertColumns(t, out, []string{"NAME", "STAGES", "PHASE", "AGE"}, []string{"app-dr-plan", "1", "Ready"})
	})

	t.Run("scenario 2", func(t *testing.T) {
		applyInOrder(t, "scenario2", "notification-workflow.yaml", "mysql-failover.yaml", "service-failover.yaml",
			"ecommerce-dr-plan-with-stages.yaml", "ecommerce-dr-exec.yaml")
		for _, name := range []string{"notification-workflow", "mysql-failover", "service-failover"} {
			waitWorkflowPhase(t, "production", name, drv1.WorkflowReady)
		}
		p := waitPlanPhase(t, "production", "ecommerce-dr-plan", drv1.PlanReady)
		assert.EqualValues(t, 5, p.Status.StageCount)
		assert.True(t, conditionTrue(p.Status.Conditions, drv1.ConditionParametersComplete))
	})

	t.Run("plans referring to workflows the guide never defines", func(t *testing.T) {
		_, stderr, err := env.Kubectl(ctx, "", "apply", "-f", example("plans"))
		require.NoError(t, err)
		assert.Contains(t, stderr, "Warning: DRWorkflow production/cluster-failover-workflow not found: the plan stays Invalid until it is fixed",
			"admitted, with a warning")
		p := waitPlanPhase(t, "production", "failover-to-backup", drv1.PlanInvalid)
		assert.Equal(t, "DRWorkflow production/cluster-failover-workflow not found", p.Status.Message)
		p = waitPlanPhase(t, "production", "multi-service-dr-plan", drv1.PlanInvalid)
		assert.Equal(t, "DRWorkflow production/redis-failover not found; DRWorkflow production/health-check-workflow not found", p.Status.Message)
		waitPlanPhase(t, "production", "database-dr-plan", drv1.PlanInvalid)

		// Creating the missing workflow makes the plan Ready, with no change to the plan.
		kubectlApply(t, `apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata:
  name: cluster-failover-workflow
  namespace: production
spec:
  parameters:
    - name: targetCluster
      required: true
    - name: notifyURL
  actions:
    - name: notify-oncall
      type: HTTP
      http:
        url: "{{ .params.notifyURL }}"
        body: '{"cluster": {{ toJson .params.targetCluster }}}'
`)
		waitPlanPhase(t, "production", "failover-to-backup", drv1.PlanReady)
	})

	t.Run("executions", func(t *testing.T) {
		kubectl(t, "apply", "-f", example("executions/execute.yaml"))
		out := kubectl(t, "get", "drplanexecution", "failover-execution-001", "-n", "production")
		assertColumns(t, out, []string{"NAME", "PLAN", "OPERATION", "PHASE", "AGE"},
			[]string{"failover-execution-001", "failover-to-backup", "Execute"})
		// The guide: a Revert needs the plan Executed. Its notify URL is not reachable here, so
		// the Execute fails before taking effect, and there is nothing to revert.
		waitExecution(t, "production", "failover-execution-001", drv1.ExecutionFailed)
		_, stderr, err := env.Kubectl(ctx, "", "apply", "-f", example("executions/revert.yaml"))
		require.Error(t, err)
		assert.Contains(t, stderr, `The DRPlanExecution "failover-revert-001" is invalid: spec.revertExecutionRef: Invalid value: "(the latest Execute in effect)": cannot revert: nothing to revert: no Execute of plan failover-to-backup has taken effect without being reverted since`)
	})

	t.Run("printer columns and the dr category", func(t *testing.T) {
		out := kubectl(t, "get", "drworkflow", "app-failover", "-n", "production")
		assertColumns(t, out, []string{"NAME", "ACTIONS", "PHASE", "AGE"}, []string{"app-failover", "5", "Ready"})
		out = kubectl(t, "get", "dr", "-n", "production")
		for _, want := range []string{"drworkflow.dr.bkbcs.tencent.com/app-failover",
			"drplan.dr.bkbcs.tencent.com/ecommerce-dr-plan", "drplanexecution.dr.bkbcs.tencent.com/failover-execution-001"} {
			assert.Contains(t, out, want)
		}
		for _, short := range []string{"drwf", "drp", "drpe", "drexec"} {
			kubectl(t, "get", short, "-n", "production")
		}
	})
}

// kubectlApply applies a manifest from stdin.
func kubectlApply(t testing.TB, manifest string) string {
	t.Helper()
	out, errOut, err := env.Kubectl(context.Background(), manifest, "apply", "-f", "-")
	require.NoError(t, err, "kubectl apply: %s", errOut)
	return out
}

var spaces = regexp.MustCompile(`\s{2,}`)

// assertColumns checks kubectl's table: the header, and that the first row starts with want.
func assertColumns(t *testing.T, table string, header, want []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(table), "\n")
	require.GreaterOrEqual(t, len(lines), 2, table)
	assert.Equal(t, header, spaces.Split(strings.TrimSpace(lines[0]), -1))
	row := spaces.Split(strings.TrimSpace(lines[1]), -1)
	require.GreaterOrEqual(t, len(row), len(want), table)
	assert.Equal(t, want, row[:len(want)], table)
}

func conditionTrue(conds []metav1.Condition, typ string) bool {
	for _, c := range conds {
		if c.Type == typ {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}
