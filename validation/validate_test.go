package validation_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/test/fixtures"
	"github.com/bkbcs/drplan-controller/validation"
)

func errStrings(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

// newEnv is a CEL environment of the test's own: the checks use the one they are given.
func newEnv(t *testing.T) *rules.Env {
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(t, err)
	return env
}

func TestValidateWorkflow(t *testing.T) {
	env := newEnv(t)
	tests := []struct {
		name   string
		params []drv1.Parameter
		acts   []drv1.Action
		want   []string
	}{{
		name:   "valid: int default written as number and as string, bool, url",
		params: []drv1.Parameter{fixtures.Param("replicas", "int", `3`), fixtures.Param("port", "int", `"3306"`), fixtures.Param("on", "bool", `true`), fixtures.Param("url", "string", `"https://x"`)},
		acts:   []drv1.Action{fixtures.HTTPAction("a", "{{ .params.url }}", `{"r": {{ .params.replicas }}, "p": {{ toJson .params.port }}}`)},
	}, {
		name:   "default that is not an int",
		params: []drv1.Parameter{fixtures.Param("replicas", "int", `"three"`)},
		acts:   []drv1.Action{fixtures.HTTPAction("a", "https://x", "")},
		want:   []string{`spec.parameters[0].default: Invalid value: "\"three\"": "three" is not an int: give a default of type int or change the parameter's type`},
	}, {
		name:   "default that is a map",
		params: []drv1.Parameter{fixtures.Param("x", "string", `{"a":1}`)},
		acts:   []drv1.Action{fixtures.HTTPAction("a", "https://x", "")},
		want:   []string{`spec.parameters[0].default: Invalid value: "{\"a\":1}": must be a scalar (string, number or bool), not a list or map: give a default of type string or change the parameter's type`},
	}, {
		name:   "template naming an undeclared parameter, with the exact field",
		acts:   []drv1.Action{fixtures.HTTPAction("a", "https://x", `{"m": "{{ .params.mesage }}"}`)},
		params: []drv1.Parameter{fixtures.Param("message", "string", "")},
		want:   []string{`spec.actions[0].http.body: Invalid value: "{\"m\": \"{{ .params.mesage }}\"}": template uses .params.mesage, which the workflow does not declare (did you mean "message"?)`},
	}, {
		name: "template that does not parse, in a rollback",
		acts: []drv1.Action{{Name: "a", ActionBody: drv1.ActionBody{Type: "HTTP", HTTP: &drv1.HTTPAction{URL: "https://x"}},
			Rollback: &drv1.RollbackAction{ActionBody: drv1.ActionBody{Type: "HTTP", HTTP: &drv1.HTTPAction{URL: "{{ .planName"}}}}},
		want: []string{`spec.actions[0].rollback.http.url: Invalid value: "{{ .planName": template does not parse: :1: unclosed action`},
	}, {
		name: "localization create without namespace, feed or overrides",
		acts: []drv1.Action{{Name: "l", ActionBody: drv1.ActionBody{Type: "Localization",
			Localization: &drv1.LocalizationAction{Operation: "Create", Name: "x"}}}},
		want: []string{
			"spec.actions[0].localization.namespace: Required value: the ManagedCluster namespace (clusternet-xxxxx) the Localization lives in",
			"spec.actions[0].localization.feed: Required value: a Localization Create needs the feed it customises",
			"spec.actions[0].localization.overrides: Required value: a Localization Create needs at least one override",
		},
	}, {
		name: "override shorthand path together with type",
		acts: []drv1.Action{{Name: "l", ActionBody: drv1.ActionBody{Type: "Localization",
			Localization: &drv1.LocalizationAction{Operation: "Delete", Name: "x", Namespace: "ns",
				Overrides: []drv1.Override{{Type: "JSONPatch", Path: "/spec/replicas", Value: "1"}}}}}},
		want: []string{"spec.actions[0].localization.overrides[0].path: Invalid value: \"/spec/replicas\": path is the shorthand for a JSONPatch replace: drop it and write the patch in value, or drop type"},
	}, {
		name: "a Patch's overrides: named once each; remove: true is named only",
		acts: []drv1.Action{{Name: "l", ActionBody: drv1.ActionBody{Type: "Localization",
			Localization: &drv1.LocalizationAction{Operation: "Patch", Name: "x", Namespace: "ns", Overrides: []drv1.Override{
				{Name: "scale-up", Type: "JSONPatch", Value: "[]"}, {Type: "MergePatch", Value: "{}"}, {Name: "scale-up", Remove: true},
				{Name: "old", Remove: true, Type: "MergePatch"}, {Name: "gone", Remove: true}}}}}},
		want: []string{
			"spec.actions[0].localization.overrides[1].name: Required value: a Patch adds, replaces or removes the Localization's overrides by name",
			`spec.actions[0].localization.overrides[2].name: Duplicate value: "scale-up"`,
			"spec.actions[0].localization.overrides[3].remove: Invalid value: true: an override removed is named only: drop its type, value and path",
		},
	}, {
		name: "remove: true in a Create",
		acts: []drv1.Action{{Name: "l", ActionBody: drv1.ActionBody{Type: "Localization",
			Localization: &drv1.LocalizationAction{Operation: "Create", Name: "x", Namespace: "ns", Feed: &drv1.Feed{APIVersion: "v1", Kind: "ConfigMap", Name: "c"},
				Overrides: []drv1.Override{{Name: "a", Remove: true}}}}}},
		want: []string{"spec.actions[0].localization.overrides[0].remove: Invalid value: true: remove is for a Patch, which changes a Localization's overrides; a Create does not"},
	}, {
		name: "subscription create without feeds and subscribers",
		acts: []drv1.Action{{Name: "s", ActionBody: drv1.ActionBody{Type: "Subscription",
			Subscription: &drv1.SubscriptionAction{Operation: "Create", Name: "x"}}}},
		want: []string{
			"spec.actions[0].subscription.feeds: Required value: a Subscription Create needs the feeds to distribute",
			"spec.actions[0].subscription.subscribers: Required value: a Subscription Create needs subscribers that select clusters",
		},
	}, {
		name: "manifest with two objects",
		acts: []drv1.Action{{Name: "r", ActionBody: drv1.ActionBody{Type: "KubernetesResource",
			Resource: &drv1.ResourceAction{Operation: "Create", Manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"}}}},
		want: []string{`spec.actions[0].resource.manifest: Invalid value: "<manifest>": holds 2 objects: write one action per object`},
	}, {
		name: "manifest without kind and name",
		acts: []drv1.Action{{Name: "r", ActionBody: drv1.ActionBody{Type: "KubernetesResource",
			Resource: &drv1.ResourceAction{Operation: "Create", Manifest: "apiVersion: v1\ndata: {a: b}\n"}}}},
		want: []string{`spec.actions[0].resource.manifest: Invalid value: "<manifest>": the object has no kind, metadata.name`},
	}, {
		// Verdict changed: admitted before (only the runner refused it, at run time).
		name: "manifest whose apiVersion is not group/version",
		acts: []drv1.Action{{Name: "r", ActionBody: drv1.ActionBody{Type: "KubernetesResource",
			Resource: &drv1.ResourceAction{Operation: "Apply", Manifest: "apiVersion: apps/v1/beta\nkind: Deployment\nmetadata: {name: app}\n"}}}},
		want: []string{`spec.actions[0].resource.manifest: Invalid value: "<manifest>": apiVersion: unexpected GroupVersion string: apps/v1/beta`},
	}, {
		// Verdict changed: admitted before (only the runner refused it, at run time).
		name: "patch of a manifest named by generateName",
		acts: []drv1.Action{{Name: "r", Rollback: &drv1.RollbackAction{ActionBody: drv1.ActionBody{Type: "KubernetesResource",
			Resource: &drv1.ResourceAction{Operation: "Delete", Manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: dr-}\n"}}},
			ActionBody: drv1.ActionBody{Type: "KubernetesResource",
				Resource: &drv1.ResourceAction{Operation: "Patch", Manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: dr-}\ndata: {a: b}\n"}}}},
		want: []string{
			`spec.actions[0].resource.manifest: Invalid value: "<manifest>": Patch needs metadata.name: generateName only names a new object`,
			`spec.actions[0].rollback.resource.manifest: Invalid value: "<manifest>": Delete needs metadata.name: generateName only names a new object`,
		},
	}, {
		name: "manifest whose metadata is not a mapping",
		acts: []drv1.Action{{Name: "r", ActionBody: drv1.ActionBody{Type: "KubernetesResource",
			Resource: &drv1.ResourceAction{Operation: "Create", Manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: dr-config\n"}}}},
		want: []string{`spec.actions[0].resource.manifest: Invalid value: "<manifest>": metadata must be a mapping`},
	}, {
		name: "create of a manifest named by generateName",
		acts: []drv1.Action{{Name: "r", ActionBody: drv1.ActionBody{Type: "KubernetesResource",
			Resource: &drv1.ResourceAction{Operation: "Create", Manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: dr-}\n"}}}},
	}, {
		name:   "manifest with templated values renders and parses",
		params: []drv1.Parameter{fixtures.Param("ns", "string", "")},
		acts: []drv1.Action{{Name: "r", ActionBody: drv1.ActionBody{Type: "KubernetesResource",
			Resource: &drv1.ResourceAction{Operation: "Create", Manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"dr-{{ .planName }}\"\n  namespace: \"{{ .params.ns }}\"\n"}}}},
	}, {
		name: "guard that does not compile, with its position",
		acts: []drv1.Action{{Name: "a", When: "actions['x'].phase == ", ActionBody: drv1.ActionBody{Type: "HTTP", HTTP: &drv1.HTTPAction{URL: "https://x"}}}},
		want: []string{"spec.actions[0].when: Invalid value: \"actions['x'].phase == \": ERROR: <input>:1:23: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n | actions['x'].phase == \n | ......................^"},
	}, {
		name: "guard that is not a bool",
		acts: []drv1.Action{{Name: "a", When: "'yes'", ActionBody: drv1.ActionBody{Type: "HTTP", HTTP: &drv1.HTTPAction{URL: "https://x"}}}},
		want: []string{`spec.actions[0].when: Invalid value: "'yes'": must evaluate to bool, but evaluates to string`},
	}, {
		name:   "guard reading an undeclared parameter, in a waitFor",
		params: []drv1.Parameter{fixtures.Param("replicas", "int", "3")},
		acts: []drv1.Action{{Name: "a", WaitFor: &drv1.WaitFor{Condition: "object.status.readyReplicas >= params.replica"},
			ActionBody: drv1.ActionBody{Type: "KubernetesResource", Resource: &drv1.ResourceAction{Operation: "Create", Manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"}}}},
		want: []string{`spec.actions[0].waitFor.condition: Invalid value: "object.status.readyReplicas >= params.replica": params.replica is not a parameter of the workflow (did you mean "replicas"?)`},
	}, {
		name: "job template without containers",
		acts: []drv1.Action{{Name: "j", ActionBody: drv1.ActionBody{Type: "Job",
			Job: &drv1.JobAction{Namespace: "ns", GenerateName: "j-", Template: runtime.RawExtension{Raw: []byte(`{"spec":{"restartPolicy":"Never"}}`)}}}}},
		want: []string{"spec.actions[0].job.template.spec.containers: Required value: a Job's pod template needs at least one container"},
	}, {
		name: "durations of 24h at most, in every unit",
		acts: []drv1.Action{{Name: "h", ActionBody: drv1.ActionBody{Type: "HTTP", HTTP: &drv1.HTTPAction{URL: "https://x", Timeout: "24h",
			Retry: &drv1.HTTPRetry{Limit: 1, Interval: "1440m", MaxInterval: "23h59m60s"}}}}},
	}, {
		name: "durations over 24h, each with its field",
		acts: []drv1.Action{{Name: "h", ActionBody: drv1.ActionBody{Type: "HTTP", HTTP: &drv1.HTTPAction{URL: "https://x", Timeout: "25h",
			Retry: &drv1.HTTPRetry{Limit: 1, Interval: "1441m", MaxInterval: "24h0.001s"}}}}},
		want: []string{
			`spec.actions[0].http.timeout: Invalid value: "25h": must be at most 24h`,
			`spec.actions[0].http.retry.interval: Invalid value: "1441m": must be at most 24h`,
			`spec.actions[0].http.retry.maxInterval: Invalid value: "24h0.001s": must be at most 24h`,
		},
	}, {
		name: "a Job's timeout, a wait's and a rollback's over 24h",
		acts: []drv1.Action{{Name: "r", WaitFor: &drv1.WaitFor{Condition: "true", Timeout: "48h"},
			ActionBody: drv1.ActionBody{Type: "KubernetesResource", Resource: &drv1.ResourceAction{Operation: "Create", Manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"}},
			Rollback: &drv1.RollbackAction{ActionBody: drv1.ActionBody{Type: "Job", Job: &drv1.JobAction{Namespace: "ns", Name: "undo", Timeout: "100h",
				Template: runtime.RawExtension{Raw: []byte(`{"spec":{"containers":[{"name":"c","image":"busybox"}]}}`)}}}}}},
		want: []string{
			`spec.actions[0].waitFor.timeout: Invalid value: "48h": must be at most 24h`,
			`spec.actions[0].rollback.job.timeout: Invalid value: "100h": must be at most 24h`,
		},
	}, {
		name: "a duration that overflows",
		acts: []drv1.Action{{Name: "h", ActionBody: drv1.ActionBody{Type: "HTTP", HTTP: &drv1.HTTPAction{URL: "https://x", Timeout: "9999999999h"}}}},
		want: []string{`spec.actions[0].http.timeout: Invalid value: "9999999999h": must be a duration such as 30s, 5m or 1h30m`},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wf := &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "wf", Namespace: "ns"},
				Spec: drv1.DRWorkflowSpec{Parameters: tc.params, Actions: tc.acts}}
			assert.Equal(t, tc.want, errStrings(validation.ValidateWorkflow(env, wf)))
		})
	}
}

// TestValidateWorkflowBoundsEveryDuration: every Duration field of an action, found by
// reflection, is bounded by validation, so that a new one is not forgotten.
func TestValidateWorkflowBoundsEveryDuration(t *testing.T) {
	var a drv1.Action
	n := fillDurations(reflect.ValueOf(&a).Elem(), "25h")
	require.Equal(t, 9, n, "an action's durations: its wait's, and its body's and its rollback's HTTP and Job timings")
	wf := &drv1.DRWorkflow{Spec: drv1.DRWorkflowSpec{Actions: []drv1.Action{a}}}
	var bounded []string
	for _, e := range validation.ValidateWorkflow(newEnv(t), wf) {
		if strings.HasSuffix(e.Error(), `Invalid value: "25h": must be at most 24h`) {
			bounded = append(bounded, e.Field)
		}
	}
	assert.Len(t, bounded, n, "bounded: %v", bounded)
}

// fillDurations allocates every struct a pointer under v may point to and sets every Duration to
// d; it returns how many it set.
func fillDurations(v reflect.Value, d drv1.Duration) int {
	switch {
	case v.Type() == reflect.TypeFor[drv1.Duration]():
		v.Set(reflect.ValueOf(d))
		return 1
	case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct:
		v.Set(reflect.New(v.Type().Elem()))
		return fillDurations(v.Elem(), d)
	case v.Kind() == reflect.Struct:
		n := 0
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				n += fillDurations(v.Field(i), d)
			}
		}
		return n
	}
	return 0
}

// workflows is an in-memory validation.WorkflowGetter.
type workflows map[string]*drv1.DRWorkflow

func (w workflows) GetWorkflow(ns, name string) (*drv1.DRWorkflow, bool) {
	wf, ok := w[ns+"/"+name]
	return wf, ok
}

func TestValidatePlan(t *testing.T) {
	env := newEnv(t)
	notify := &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "notify", Namespace: "prod"},
		Spec: drv1.DRWorkflowSpec{Parameters: []drv1.Parameter{
			{Name: "webhookURL", Required: true}, {Name: "message", Required: true}, {Name: "event"}}},
		Status: drv1.DRWorkflowStatus{Phase: drv1.WorkflowReady}}
	svc := &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "svc", Namespace: "prod"},
		Spec: drv1.DRWorkflowSpec{Parameters: []drv1.Parameter{
			{Name: "serviceName", Required: true}, fixtures.Param("replicas", "int", "3")}},
		Status: drv1.DRWorkflowStatus{Phase: drv1.WorkflowReady}}
	broken := &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "broken", Namespace: "prod"},
		Status: drv1.DRWorkflowStatus{Phase: drv1.WorkflowInvalid, Message: "spec.actions[0]: bad"}}
	all := workflows{"prod/notify": notify, "prod/svc": svc, "prod/broken": broken}

	ref := func(name string, params ...drv1.ParamValue) drv1.StageWorkflow {
		return drv1.StageWorkflow{WorkflowRef: drv1.ObjectReference{Name: name}, Params: params}
	}
	pv := func(n, v string) drv1.ParamValue { return drv1.ParamValue{Name: n, Value: v} }

	tests := []struct {
		name       string
		spec       drv1.DRPlanSpec
		errs       []string
		unresolved []string
		missing    []string
	}{{
		name: "shorthand with global params",
		spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "notify"},
			GlobalParams: []drv1.ParamValue{pv("webhookURL", "https://x"), pv("message", "m"), pv("unused", "u")}},
	}, {
		name: "a required parameter without a value makes the plan Invalid (the guide's 问题 1)",
		spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "notify"}, GlobalParams: []drv1.ParamValue{pv("message", "m")}},
		errs: []string{
			`spec.globalParams: Required value: required parameter webhookURL (stage "default", DRWorkflow prod/notify) has no value: set it in spec.globalParams, or name it in spec.executionParams so that every execution gives it in spec.params`,
		},
		missing: []string{`webhookURL (stage "default", DRWorkflow prod/notify)`},
	}, {
		name: "a stage's workflow without its required parameter",
		spec: drv1.DRPlanSpec{Stages: []drv1.Stage{{Name: "apps", Workflows: []drv1.StageWorkflow{
			ref("svc", pv("serviceName", "order")), ref("svc")}}}},
		errs: []string{
			`spec.stages[0].workflows[1].params: Required value: required parameter serviceName (stage "apps", DRWorkflow prod/svc) has no value: set it here or in spec.globalParams, or name it in spec.executionParams so that every execution gives it in spec.params`,
		},
		missing: []string{`serviceName (stage "apps", DRWorkflow prod/svc)`},
	}, {
		name: "required parameters left to every execution by spec.executionParams",
		spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "notify"}, ExecutionParams: []string{"webhookURL", "message"}},
	}, {
		name: "executionParams may name an optional parameter or one with a value",
		spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "notify"}, ExecutionParams: []string{"webhookURL", "message", "event"},
			GlobalParams: []drv1.ParamValue{pv("message", "m")}},
	}, {
		name: "executionParams naming a parameter no workflow declares",
		spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "notify"}, ExecutionParams: []string{"webhookURL", "mesage"},
			GlobalParams: []drv1.ParamValue{pv("message", "m")}},
		errs: []string{`spec.executionParams[1]: Invalid value: "mesage": no workflow of the plan declares a parameter "mesage" (did you mean "message"?)`},
	}, {
		name:       "executionParams are not judged while a workflow is unresolved",
		spec:       drv1.DRPlanSpec{Stages: []drv1.Stage{{Name: "a", Workflows: []drv1.StageWorkflow{ref("notify"), ref("nope")}}}, ExecutionParams: []string{"webhookURL", "message", "other"}},
		unresolved: []string{"DRWorkflow prod/nope not found"},
	}, {
		name:       "missing and invalid workflows are unresolved, not errors",
		spec:       drv1.DRPlanSpec{Stages: []drv1.Stage{{Name: "a", Workflows: []drv1.StageWorkflow{ref("nope"), ref("broken")}}}},
		unresolved: []string{"DRWorkflow prod/nope not found", "DRWorkflow prod/broken is Invalid: spec.actions[0]: bad"},
	}, {
		name: "undeclared stage param and unconvertible values",
		spec: drv1.DRPlanSpec{GlobalParams: []drv1.ParamValue{pv("replicas", "many")},
			Stages: []drv1.Stage{{Name: "apps", Workflows: []drv1.StageWorkflow{
				ref("svc", pv("serviceName", "order"), pv("servicename", "x")),
				ref("svc", pv("serviceName", "pay"), pv("replicas", "five")),
				ref("svc", pv("serviceName", "user")),
			}}}},
		errs: []string{
			`spec.stages[0].workflows[0].params[1].name: Invalid value: "servicename": DRWorkflow prod/svc declares no parameter "servicename" (did you mean "serviceName"?)`,
			`spec.globalParams[0].value: Invalid value: "many": "many" is not an int (DRWorkflow prod/svc declares replicas as int)`,
			`spec.stages[0].workflows[1].params[1].value: Invalid value: "five": "five" is not an int (parameter replicas is declared int)`,
		},
	}, {
		name: "stage graph errors",
		spec: drv1.DRPlanSpec{Stages: []drv1.Stage{
			{Name: "infrastructure", Workflows: []drv1.StageWorkflow{ref("svc", pv("serviceName", "a"))}},
			{Name: "applications", DependsOn: []string{"infrastructur"}, Workflows: []drv1.StageWorkflow{ref("svc", pv("serviceName", "a"))}},
		}},
		errs: []string{`spec.stages[1].dependsOn[0]: Invalid value: "infrastructur": unknown stage "infrastructur" (did you mean "infrastructure"?)`},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"}, Spec: tc.spec}
			r := validation.ValidatePlan(env, plan, all)
			assert.Equal(t, tc.errs, errStrings(r.Errors))
			assert.Equal(t, tc.unresolved, r.Unresolved)
			var missing []string
			for _, m := range r.MissingParams {
				missing = append(missing, m.String())
			}
			assert.Equal(t, tc.missing, missing)
		})
	}
}

func TestMissingParams(t *testing.T) {
	wf := &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "wf", Namespace: "prod"},
		Spec: drv1.DRWorkflowSpec{Parameters: []drv1.Parameter{
			{Name: "region", Required: true}, {Name: "replicas", Required: true}, {Name: "optional"}, fixtures.Param("port", "int", "80")}},
		Status: drv1.DRWorkflowStatus{Phase: drv1.WorkflowReady}}
	all := workflows{"prod/wf": wf}
	pv := func(n, v string) drv1.ParamValue { return drv1.ParamValue{Name: n, Value: v} }
	tests := []struct {
		name    string
		spec    drv1.DRPlanSpec
		exec    []drv1.ParamValue
		missing []string
	}{{
		name:    "nothing set",
		spec:    drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}},
		missing: []string{`region (stage "default", DRWorkflow prod/wf)`, `replicas (stage "default", DRWorkflow prod/wf)`},
	}, {
		name:    "the plan's globalParams",
		spec:    drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}, GlobalParams: []drv1.ParamValue{pv("region", "dr")}},
		missing: []string{`replicas (stage "default", DRWorkflow prod/wf)`},
	}, {
		name: "a stage's params cover its entry only",
		spec: drv1.DRPlanSpec{GlobalParams: []drv1.ParamValue{pv("region", "dr")}, Stages: []drv1.Stage{
			{Name: "a", Workflows: []drv1.StageWorkflow{{WorkflowRef: drv1.ObjectReference{Name: "wf"}, Params: []drv1.ParamValue{pv("replicas", "2")}}}},
			{Name: "b", Workflows: []drv1.StageWorkflow{{WorkflowRef: drv1.ObjectReference{Name: "wf"}}}},
		}},
		missing: []string{`replicas (stage "b", DRWorkflow prod/wf)`},
	}, {
		name: "the execution's params cover every entry",
		spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}},
		exec: []drv1.ParamValue{pv("region", "dr"), pv("replicas", "2")},
	}, {
		name: "a missing workflow is unresolved, not missing parameters",
		spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "nope"}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"}, Spec: tc.spec}
			var missing []string
			for _, m := range validation.MissingParams(plan, all, tc.exec) {
				missing = append(missing, m.String())
			}
			assert.Equal(t, tc.missing, missing)
		})
	}
}

func TestValidatePlanBoundsItsActions(t *testing.T) {
	env := newEnv(t)
	wf := fixtures.Workflow("prod", "big", 200)
	wf.Status.Phase = drv1.WorkflowReady
	all := workflows{"prod/big": wf}
	plan := func(stages int) *drv1.DRPlan {
		p := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"}}
		for i := range stages {
			p.Spec.Stages = append(p.Spec.Stages, drv1.Stage{Name: fmt.Sprintf("s%d", i), Workflows: []drv1.StageWorkflow{{
				WorkflowRef: drv1.ObjectReference{Name: "big"}, Params: []drv1.ParamValue{{Name: "region", Value: "x"}}}}})
		}
		return p
	}
	for _, e := range validation.ValidatePlan(env, plan(10), all).Errors {
		assert.NotContains(t, e.Error(), "actions in all", "2,000 actions: the limit")
	}
	errs := validation.ValidatePlan(env, plan(11), all).Errors
	require.NotEmpty(t, errs)
	assert.Contains(t, errs.ToAggregate().Error(), "spec.stages: Forbidden: the plan runs 2200 actions in all (the sum over its stages' workflows), over the limit of 2000: split it into several plans")
}

func TestValidatePlanBoundsItsSnapshot(t *testing.T) {
	env := newEnv(t)
	all := workflows{}
	plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"}}
	// Ten distinct workflows of 60 actions, each with an HTTP body of 2 KB: 1.2 MB in all.
	for i := range 10 {
		wf := fixtures.Workflow("prod", fmt.Sprintf("w%d", i), 60)
		for j := range wf.Spec.Actions {
			if h := wf.Spec.Actions[j].HTTP; h != nil {
				h.Body = fmt.Sprintf(`{"note": %q}`, strings.Repeat("x", 6000))
			}
		}
		wf.Status.Phase = drv1.WorkflowReady
		all["prod/"+wf.Name] = wf
		plan.Spec.Stages = append(plan.Spec.Stages, drv1.Stage{Name: wf.Name, Workflows: []drv1.StageWorkflow{{
			WorkflowRef: drv1.ObjectReference{Name: wf.Name}, Params: []drv1.ParamValue{{Name: "region", Value: "x"}}}}})
	}
	errs := validation.ValidatePlan(env, plan, all).Errors
	require.NotEmpty(t, errs)
	assert.Contains(t, errs.ToAggregate().Error(), "spec.stages: Forbidden: the plan and its workflows (the run's snapshot) are at least")
	assert.Contains(t, errs.ToAggregate().Error(), "over the limit of 1024 KiB")
	plan.Spec.Stages = plan.Spec.Stages[:5]
	assert.Empty(t, validation.ValidatePlan(env, plan, all).Errors, "half of it fits")
}

// FuzzValidateWorkflow: any workflow a client could send (JSON decoded as the API server would)
// is validated without panicking, in bounded time.
func FuzzValidateWorkflow(f *testing.F) {
	seed, err := json.Marshal(fixtures.Workflow("prod", "w", 5))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"spec":{"actions":[{"name":"a","type":"HTTP","http":{"url":"{{ range 9 }}x{{ end }}"},"when":"params.x ="}]}}`))
	env, err := rules.NewEnv(rules.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var wf drv1.DRWorkflow
		if json.Unmarshal(raw, &wf) != nil {
			return
		}
		_ = validation.ValidateWorkflow(env, &wf)
	})
}

// FuzzValidatePlan: any plan a client could send (JSON decoded as the API server would), against
// the guide's workflows and one more workflow of any content, is validated without panicking, in
// bounded time. The seeds are the guide's plans (examples/), each with one of its workflows.
func FuzzValidatePlan(f *testing.F) {
	byKind := map[string][][]byte{}
	files, err := filepath.Glob("../examples/*/*.yaml")
	if err != nil || len(files) == 0 {
		f.Fatalf("the guide's examples: %v", err)
	}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		j, err := yaml.YAMLToJSON(raw)
		if err != nil {
			f.Fatal(err)
		}
		var meta struct{ Kind string }
		if err := json.Unmarshal(j, &meta); err != nil {
			f.Fatal(err)
		}
		byKind[meta.Kind] = append(byKind[meta.Kind], j)
	}
	plans, wfs := byKind["DRPlan"], byKind["DRWorkflow"]
	guide := workflows{}
	for _, raw := range wfs {
		var wf drv1.DRWorkflow
		if err := json.Unmarshal(raw, &wf); err != nil {
			f.Fatal(err)
		}
		wf.Status.Phase = drv1.WorkflowReady
		guide[drv1.RefKey(wf.Namespace, wf.Name)] = &wf
	}
	for i := range max(len(plans), len(wfs)) {
		f.Add(plans[i%len(plans)], wfs[i%len(wfs)])
	}
	f.Add([]byte(`{"spec":{"stages":[{"name":"a","dependsOn":["a","b"],"when":"params.x ==","workflows":[{"workflowRef":{"name":"w"},"params":[{"name":"n","value":"x"}]}]}]}}`),
		[]byte(`{"metadata":{"name":"w"},"spec":{"parameters":[{"name":"n","type":"int","required":true}]}}`))
	env, err := rules.NewEnv(rules.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, rawPlan, rawWorkflow []byte) {
		var plan drv1.DRPlan
		if json.Unmarshal(rawPlan, &plan) != nil {
			return
		}
		all := maps.Clone(guide)
		var wf drv1.DRWorkflow
		if json.Unmarshal(rawWorkflow, &wf) == nil {
			all[drv1.RefKey(wf.Namespace, wf.Name)] = &wf
		}
		_ = validation.ValidatePlan(env, &plan, all)
	})
}

func TestValidateWorkflowBoundsADefault(t *testing.T) {
	env := newEnv(t)
	for _, n := range []int{drv1.MaxParamValue, drv1.MaxParamValue + 1} {
		wf := &drv1.DRWorkflow{Spec: drv1.DRWorkflowSpec{
			Parameters: []drv1.Parameter{fixtures.Param("note", "string", `"`+strings.Repeat("x", n)+`"`)},
			Actions:    []drv1.Action{fixtures.HTTPAction("a", "https://x", "")}}}
		errs := validation.ValidateWorkflow(env, wf)
		if n == drv1.MaxParamValue {
			assert.Empty(t, errs)
			continue
		}
		require.Len(t, errs, 1)
		assert.Equal(t, "spec.parameters[0].default", errs[0].Field)
		assert.Contains(t, errs[0].Detail, "the default is 4097 characters, over the 4096 a parameter's value may have")
	}
}
