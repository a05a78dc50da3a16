package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	"github.com/bkbcs/drplan-controller/metrics"
)

// TestRulesFileReachesTheRulesAndMetrics: the process's rules are those of --rules-file, and
// their evaluations, and the guards compiled in their environment, are counted in its metrics.
func TestRulesFileReachesTheRulesAndMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(path, []byte("- name: PlanLock\n  expression: \"!has(plan.currentExecution)\"\n  message: \"'the plan is busy'\"\n"), 0o644))
	m := metrics.NewMetrics()
	decide, err := newRules(path, m)
	require.NoError(t, err)

	ok, msg, err := decide.PlanLock.Decide(context.Background(), map[string]any{
		"plan":      map[string]any{"currentExecution": map[string]any{"name": "a", "namespace": "n"}},
		"execution": map[string]any{"name": "b", "namespace": "n"}, "lockHolder": map[string]any{"exists": false, "finished": false}}, false)
	require.NoError(t, err)
	assert.False(t, ok, "the file's PlanLock decides")
	assert.Equal(t, "the plan is busy", msg)
	guard, err := decide.Env.CompileGuard("operation == 'Execute'", nil)
	require.NoError(t, err)
	_, err = guard.Eval(context.Background(), map[string]any{"operation": "Execute"})
	require.NoError(t, err)

	rec := httptest.NewRecorder()
	m.Handler(func() bool { return true }).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	assert.Contains(t, string(body), `drplan_cel_evaluations_total{kind="rule",result="ok"} 1`)
	assert.Contains(t, string(body), `drplan_cel_evaluations_total{kind="guard",result="ok"} 1`)
}

// TestRunRefusesRulesThatDoNotCompile: a rules file with a rule that does not compile stops the
// process at start-up, naming the file and the rule, before anything is started.
func TestRunRefusesRulesThatDoNotCompile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(path, []byte("- name: StageReady\n  expression: \"stage.dependsOn.all(\"\n  message: \"''\"\n"), 0o644))
	err := RunWithConfig(context.Background(), &rest.Config{Host: "http://127.0.0.1:1", Timeout: time.Second}, Options{RulesFile: path})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rules file "+path)
	assert.Contains(t, err.Error(), "rule StageReady: expression")
}
