package runplan_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/runplan"
)

// svc calls https://dr.example/<name>/<replicas>, with a required region and an int replicas
// that defaults to 3.
func svc() drv1.DRWorkflowSpec {
	a := call("scale")
	a.HTTP.URL = "https://dr.example/{{ .params.name }}/{{ .params.replicas }}"
	return drv1.DRWorkflowSpec{Parameters: []drv1.Parameter{
		{Name: "region", Required: true}, {Name: "name"},
		{Name: "replicas", Type: drv1.ParameterTypeInt, Default: &apiextensionsv1.JSON{Raw: []byte("3")}},
	}, Actions: []drv1.Action{a}}
}

func pv(name, value string) drv1.ParamValue { return drv1.ParamValue{Name: name, Value: value} }

func entry(workflow string, params ...drv1.ParamValue) drv1.StageWorkflow {
	return drv1.StageWorkflow{WorkflowRef: drv1.ObjectReference{Name: workflow}, Params: params}
}

func TestPrepare(t *testing.T) {
	secret := drv1.ParamValue{Name: "region", ValueFrom: &drv1.ParamValueSource{SecretKeyRef: &drv1.SecretKeySelector{Name: "dr", Key: "region"}}}
	identity := call("who")
	identity.HTTP.URL = "https://dr.example/{{ .planName }}/{{ .executionName }}/{{ .namespace }}/{{ .timestamp }}"
	waiting := create("cm")
	waiting.WaitFor = &drv1.WaitFor{Condition: `params.region == "dr"`, Timeout: "30s"}
	guarded := call("guarded")
	guarded.When = `params.region == "dr"`
	tests := []struct {
		name      string
		spec      drv1.DRPlanSpec
		workflows map[string]drv1.DRWorkflowSpec
		exec      []drv1.ParamValue
		err       string
		check     func(t *testing.T, p *runplan.Prepared)
	}{{
		name: "parameters: default < globalParams < stage params < execution params",
		spec: drv1.DRPlanSpec{GlobalParams: []drv1.ParamValue{pv("region", "dr"), pv("name", "global")},
			Stages: []drv1.Stage{{Name: "apps", Workflows: []drv1.StageWorkflow{entry("svc", pv("name", "order")), entry("svc", pv("name", "pay"), pv("replicas", "5"))}}}},
		workflows: map[string]drv1.DRWorkflowSpec{"svc": svc()},
		check: func(t *testing.T, p *runplan.Prepared) {
			assert.Equal(t, "https://dr.example/order/3", p.Actions[0].Body.HTTP.URL)
			assert.Equal(t, "https://dr.example/pay/5", p.Actions[1].Body.HTTP.URL)
			assert.Equal(t, "https://dr.example/scale/back", p.Actions[0].Rollback.HTTP.URL, "the rollback is rendered too")
			assert.Equal(t, map[string]string{"region": "dr"}, p.Params, "what every entry agrees on")
			assert.Equal(t, [][]map[string]string{{{"name": "order", "replicas": "3"}, {"name": "pay", "replicas": "5"}}}, p.PerWorkflow)
			assert.Equal(t, map[string]any{"region": "dr"}, p.Plan.Stages[0].Params, "stage guards see the agreed values")
			assert.Equal(t, map[string]any{"region": "dr", "name": "pay", "replicas": int64(5)}, p.Plan.Stages[0].Workflows[1].Params)
		},
	}, {
		name: "the execution's params win over every layer",
		spec: drv1.DRPlanSpec{GlobalParams: []drv1.ParamValue{pv("region", "dr")},
			Stages: []drv1.Stage{{Name: "apps", Workflows: []drv1.StageWorkflow{entry("svc", pv("name", "order"), pv("replicas", "5"))}}}},
		workflows: map[string]drv1.DRWorkflowSpec{"svc": svc()},
		exec:      []drv1.ParamValue{pv("replicas", "9")},
		check: func(t *testing.T, p *runplan.Prepared) {
			assert.Equal(t, "https://dr.example/order/9", p.Actions[0].Body.HTTP.URL)
		},
	}, {
		name:      "a Secret's value is used, shown redacted and scrubbed",
		spec:      drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "svc"}, GlobalParams: []drv1.ParamValue{secret}},
		workflows: map[string]drv1.DRWorkflowSpec{"svc": svc()},
		check: func(t *testing.T, p *runplan.Prepared) {
			assert.Equal(t, "(redacted)", p.Params["region"])
			assert.Equal(t, "region (redacted) failed", p.Redact.Replace("region s3cr3t failed"))
		},
	}, {
		name:      "templates see the run's identity and start",
		spec:      drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}},
		workflows: map[string]drv1.DRWorkflowSpec{"wf": {Actions: []drv1.Action{identity}}},
		check: func(t *testing.T, p *runplan.Prepared) {
			assert.Equal(t, "https://dr.example/p/failover/prod/2026-01-30T10:00:00Z", p.Actions[0].Body.HTTP.URL)
			assert.Equal(t, "failover", p.Plan.ExecutionName)
			assert.Equal(t, drv1.OperationExecute, p.Plan.Operation)
		},
	}, {
		name: "guards and waitFor are compiled; the flat index numbers every action",
		spec: drv1.DRPlanSpec{GlobalParams: []drv1.ParamValue{pv("region", "dr")}, Stages: []drv1.Stage{
			{Name: "a", When: `operation == "Execute"`, Workflows: []drv1.StageWorkflow{{WorkflowRef: drv1.ObjectReference{Name: "wf"}, When: "true"}}},
			{Name: "b", DependsOn: []string{"a"}, Workflows: []drv1.StageWorkflow{entry("wf")}}}},
		workflows: map[string]drv1.DRWorkflowSpec{"wf": {Parameters: []drv1.Parameter{{Name: "region"}}, Actions: []drv1.Action{waiting, guarded}}},
		check: func(t *testing.T, p *runplan.Prepared) {
			require.Len(t, p.Actions, 4)
			assert.Equal(t, `operation == "Execute"`, p.Plan.Stages[0].When.Expression)
			assert.Equal(t, "true", p.Plan.Stages[0].Workflows[0].When.Expression)
			assert.Nil(t, p.Plan.Stages[1].When)
			w := p.Plan.Stages[1].Workflows[0]
			assert.Equal(t, 2, w.First)
			assert.Equal(t, []string{"cm", "guarded"}, w.Actions)
			assert.Nil(t, w.ActionWhen[0])
			assert.Equal(t, `params.region == "dr"`, w.ActionWhen[1].Expression)
			wait := p.Actions[2].Wait
			require.NotNil(t, wait)
			assert.Equal(t, `params.region == "dr"`, wait.Cond.Expression)
			assert.Equal(t, 30*time.Second, wait.Timeout)
			assert.Equal(t, map[string]any{"region": "dr"}, wait.Params)
			assert.Nil(t, p.Actions[3].Wait)
		},
	}, {
		name:      "a required parameter without a value",
		spec:      drv1.DRPlanSpec{Stages: []drv1.Stage{{Name: "apps", Workflows: []drv1.StageWorkflow{entry("svc")}}}},
		workflows: map[string]drv1.DRWorkflowSpec{"svc": svc()},
		err:       `stage "apps", workflow 0 (DRWorkflow prod/svc): required parameter region has no value: set it in the plan's globalParams, the stage's params or the execution's spec.params`,
	}, {
		name:      "a value that does not convert",
		spec:      drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "svc"}, GlobalParams: []drv1.ParamValue{pv("region", "dr")}},
		workflows: map[string]drv1.DRWorkflowSpec{"svc": svc()},
		exec:      []drv1.ParamValue{pv("replicas", "many")},
		err:       `stage "default", workflow 0 (DRWorkflow prod/svc): parameter replicas: "many" is not an int`,
	}, {
		name:      "an unreadable Secret",
		spec:      drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "svc"}, GlobalParams: []drv1.ParamValue{{Name: "region", ValueFrom: &drv1.ParamValueSource{SecretKeyRef: &drv1.SecretKeySelector{Name: "gone", Key: "k"}}}}},
		workflows: map[string]drv1.DRWorkflowSpec{"svc": svc()},
		err:       `stage "default", workflow 0 (DRWorkflow prod/svc): parameter region: reading Secret gone key k: secrets "gone" not found`,
	}, {
		name:      "a workflow missing from the snapshot",
		spec:      drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "gone"}},
		workflows: map[string]drv1.DRWorkflowSpec{},
		err:       `stage "default", workflow 0 (DRWorkflow prod/gone): not in the snapshot`,
	}, {
		name:      "a template naming an undeclared parameter",
		spec:      drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}},
		workflows: map[string]drv1.DRWorkflowSpec{"wf": {Actions: []drv1.Action{{Name: "x", ActionBody: drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x/{{ .params.nope }}"}}}}}},
		err:       `stage "default", workflow 0 (DRWorkflow prod/wf): spec.actions[0] (x): http.url: template "{{ .params.nope }}": map has no entry for key "nope"`,
	}, {
		name:      "a guard that does not compile",
		spec:      drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}},
		workflows: map[string]drv1.DRWorkflowSpec{"wf": {Actions: []drv1.Action{{Name: "x", When: "params.nope", ActionBody: call("x").ActionBody}}}},
		err:       `stage "default", workflow 0 (DRWorkflow prod/wf): spec.actions[0] (x): when: params.nope is not a parameter of the workflow`,
	}, {
		name: "a dependency cycle",
		spec: drv1.DRPlanSpec{Stages: []drv1.Stage{
			{Name: "a", DependsOn: []string{"b"}, Workflows: []drv1.StageWorkflow{entry("wf")}},
			{Name: "b", DependsOn: []string{"a"}, Workflows: []drv1.StageWorkflow{entry("wf")}}}},
		workflows: workflowsOf("wf"),
		err:       `spec.stages[0].dependsOn: Invalid value: ["b"]: dependency cycle: a -> b -> a`,
	}}
	read := func(name, key string) (string, error) {
		if name == "dr" && key == "region" {
			return "s3cr3t", nil
		}
		return "", errors.New(`secrets "` + name + `" not found`)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exec := execution("failover", drv1.OperationExecute)
			exec.Spec.Params = tc.exec
			p, err := runplan.Prepare(exec, snapshotOf(tc.spec, tc.workflows), read, started, newRules(t))
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			tc.check(t, p)
		})
	}
}

// TestPrepareBoundsWhatItShows: the attacker's plan, where one workflow's 200 values of 4 KiB
// differ from another's, so that 400 entries would each show all 200 (330 MB of status): each
// value shown is cut to 256 bytes, and past 128 KiB an entry shows that its values are not shown.
// The run itself uses the values whole.
func TestPrepareBoundsWhatItShows(t *testing.T) {
	big, empty := drv1.DRWorkflowSpec{Actions: []drv1.Action{call("a")}}, drv1.DRWorkflowSpec{Actions: []drv1.Action{call("b")}}
	for i := range 200 {
		big.Parameters = append(big.Parameters, drv1.Parameter{Name: fmt.Sprintf("p%03d", i), Default: &apiextensionsv1.JSON{Raw: []byte(`"` + strings.Repeat("v", 4096) + `"`)}})
		empty.Parameters = append(empty.Parameters, drv1.Parameter{Name: fmt.Sprintf("p%03d", i), Default: &apiextensionsv1.JSON{Raw: []byte(`""`)}})
	}
	stage := drv1.Stage{Name: "s", Workflows: []drv1.StageWorkflow{entry("empty")}}
	for range 400 {
		stage.Workflows = append(stage.Workflows, entry("big"))
	}
	p, err := runplan.Prepare(execution("run", drv1.OperationExecute), snapshotOf(drv1.DRPlanSpec{Stages: []drv1.Stage{stage}},
		map[string]drv1.DRWorkflowSpec{"big": big, "empty": empty}), noSecrets, started, newRules(t))
	require.NoError(t, err)
	shown, notShown := 0, 0
	for _, m := range p.PerWorkflow[0] {
		for k, v := range m {
			shown += len(k) + len(v)
			assert.LessOrEqual(t, len(v), 256)
			if k == runplan.NotShown {
				notShown++
			}
		}
	}
	t.Logf("%d bytes of values shown; %d of 401 entries show that theirs are not", shown, notShown)
	assert.Less(t, shown, 200<<10)
	assert.Greater(t, notShown, 300)
	assert.Len(t, p.Plan.Stages[0].Workflows[1].Params["p000"], 4096, "the run uses the values whole")
}

// TestPrepareBoundsWhatItRenders: a run keeps every rendered action until it ends, so their total
// is bounded: 200 actions of 100 KB bodies (20 MB) are refused, naming where the total was passed.
func TestPrepareBoundsWhatItRenders(t *testing.T) {
	var wf drv1.DRWorkflowSpec
	for i := range 200 {
		a := call(fmt.Sprintf("a%d", i))
		a.HTTP.Body = strings.Repeat("x", 100_000)
		wf.Actions = append(wf.Actions, a)
	}
	_, err := runplan.Prepare(execution("run", drv1.OperationExecute), snapshotOf(drv1.DRPlanSpec{Stages: []drv1.Stage{{Name: "s", Workflows: []drv1.StageWorkflow{entry("w")}}}},
		map[string]drv1.DRWorkflowSpec{"w": wf}), noSecrets, started, newRules(t))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "spec.actions[167] (a167): the run's actions render to more than 16 MiB in all: split the plan")
}

// TestPrepareRedactsSecrets: a value read from a Secret is redacted in a rendering error (a
// whole-URL parameter that is no URL quotes it) and, as written, JSON-escaped, quoted or
// URL-escaped, in what the run reports.
func TestPrepareRedactsSecrets(t *testing.T) {
	const secret = `hooks.slack.com/T000/"XXXXSECRET"<&>`
	hook := call("notify")
	hook.HTTP.URL = "{{ .params.webhook }}"
	wf := drv1.DRWorkflowSpec{Parameters: []drv1.Parameter{{Name: "webhook", Required: true}}, Actions: []drv1.Action{hook}}
	spec := drv1.DRPlanSpec{GlobalParams: []drv1.ParamValue{{Name: "webhook", ValueFrom: &drv1.ParamValueSource{SecretKeyRef: &drv1.SecretKeySelector{Name: "hooks", Key: "slack"}}}},
		Stages: []drv1.Stage{{Name: "s", Workflows: []drv1.StageWorkflow{entry("w")}}}}
	read := func(string, string) (string, error) { return secret, nil }
	_, err := runplan.Prepare(execution("run", drv1.OperationExecute), snapshotOf(spec, map[string]drv1.DRWorkflowSpec{"w": wf}), read, started, newRules(t))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "XXXXSECRET")
	assert.Contains(t, err.Error(), "(redacted)")

	hook.HTTP.URL = "https://dr.example/{{ .params.webhook }}" // in the path, escaped
	wf.Actions = []drv1.Action{hook}
	p, err := runplan.Prepare(execution("run", drv1.OperationExecute), snapshotOf(spec, map[string]drv1.DRWorkflowSpec{"w": wf}), read, started, newRules(t))
	require.NoError(t, err)
	q, _ := json.Marshal(secret)
	for _, form := range []string{secret, string(q), strconv.Quote(secret), url.QueryEscape(secret), url.PathEscape(secret), p.Actions[0].Body.HTTP.URL} {
		assert.NotContains(t, p.Redact.Replace("echo: "+form), "XXXXSECRET", "%s", form)
	}
}
