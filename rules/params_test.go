package rules_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

func TestResolveParams(t *testing.T) {
	def := func(raw string) *apiextensionsv1.JSON { return &apiextensionsv1.JSON{Raw: []byte(raw)} }
	decls := []drv1.Parameter{
		{Name: "replicas", Type: "int", Default: def("3")},
		{Name: "port", Type: "string", Default: def(`"3306"`)},
		{Name: "enabled", Type: "bool"},
		{Name: "token", Required: true},
		{Name: "event"},
	}
	secretRef := func(name, key string) []drv1.ParamValue {
		return []drv1.ParamValue{{Name: "token", ValueFrom: &drv1.ParamValueSource{SecretKeyRef: &drv1.SecretKeySelector{Name: name, Key: key}}}}
	}
	read := func(name, key string) (string, error) {
		if name == "creds" && key == "token" {
			return "s3cr3t", nil
		}
		if name == "unread" {
			return "", fmt.Errorf("at admission: %w", rules.ErrNotRead)
		}
		return "", errors.New(`secrets "` + name + `" not found`)
	}
	global := []drv1.ParamValue{{Name: "replicas", Value: "5"}, {Name: "token", Value: "plain"}, {Name: "undeclared", Value: "x"}}
	tests := []struct {
		name    string
		layers  [][]drv1.ParamValue
		values  map[string]any
		display map[string]string
		secrets []string
		err     string
	}{{
		name:    "defaults, then global, typed; optional unset is its zero value",
		layers:  [][]drv1.ParamValue{global},
		values:  map[string]any{"replicas": int64(5), "port": "3306", "enabled": false, "token": "plain", "event": ""},
		display: map[string]string{"replicas": "5", "port": "3306", "token": "plain"},
	}, {
		name:    "later layers win: stage params, then execution params",
		layers:  [][]drv1.ParamValue{global, {{Name: "replicas", Value: "2"}}, {{Name: "replicas", Value: "7"}, {Name: "enabled", Value: "true"}}},
		values:  map[string]any{"replicas": int64(7), "port": "3306", "enabled": true, "token": "plain", "event": ""},
		display: map[string]string{"replicas": "7", "port": "3306", "enabled": "true", "token": "plain"},
	}, {
		name:    "a Secret-sourced value is redacted in display and listed as a secret",
		layers:  [][]drv1.ParamValue{global, secretRef("creds", "token")},
		values:  map[string]any{"replicas": int64(5), "port": "3306", "enabled": false, "token": "s3cr3t", "event": ""},
		display: map[string]string{"replicas": "5", "port": "3306", "token": "(redacted)"},
		secrets: []string{"s3cr3t"},
	}, {
		name:   "required without a value",
		layers: nil,
		err:    "required parameter token has no value: set it in the plan's globalParams, the stage's params or the execution's spec.params",
	}, {
		name:   "a value that does not convert",
		layers: [][]drv1.ParamValue{global, {{Name: "replicas", Value: "five"}}},
		err:    `parameter replicas: "five" is not an int`,
	}, {
		name:    "a Secret overridden by a higher layer is not read",
		layers:  [][]drv1.ParamValue{secretRef("missing", "token"), nil, {{Name: "token", Value: "given"}}},
		values:  map[string]any{"replicas": int64(3), "port": "3306", "enabled": false, "token": "given", "event": ""},
		display: map[string]string{"replicas": "3", "port": "3306", "token": "given"},
	}, {
		name:    "a Secret not read here (admission) is the zero value, redacted, and no secret",
		layers:  [][]drv1.ParamValue{global, secretRef("unread", "token"), {{Name: "replicas", ValueFrom: &drv1.ParamValueSource{SecretKeyRef: &drv1.SecretKeySelector{Name: "unread", Key: "n"}}}}},
		values:  map[string]any{"replicas": int64(0), "port": "3306", "enabled": false, "token": "", "event": ""},
		display: map[string]string{"replicas": "(redacted)", "port": "3306", "token": "(redacted)"},
	}, {
		name:   "an unreadable Secret",
		layers: [][]drv1.ParamValue{secretRef("missing", "token")},
		err:    `parameter token: reading Secret missing key token: secrets "missing" not found`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var src rules.ParamSources // the layers in order: global, stage, execution
			copy(src[:], tc.layers)
			r, err := rules.ResolveParams(decls, read, src)
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.values, r.Values)
			assert.Equal(t, tc.display, r.Display)
			assert.Equal(t, tc.secrets, r.Secrets)
		})
	}
}

func TestParamSourcesLookup(t *testing.T) {
	plan := &drv1.DRPlanSpec{GlobalParams: []drv1.ParamValue{{Name: "a", Value: "g"}, {Name: "b", Value: "g"}, {Name: "c", Value: "g"}}}
	entry := drv1.StageWorkflow{Params: []drv1.ParamValue{{Name: "b", Value: "s"}, {Name: "c", Value: "s"}}}
	exec := []drv1.ParamValue{{Name: "c", Value: "e"}}
	src := rules.SourcesOf(plan, entry, exec)
	tests := []struct {
		name  string
		value string
		from  rules.ParamSource
		set   bool
	}{
		{"a", "g", rules.ParamSource{Layer: rules.LayerGlobal, Index: 0}, true},
		{"b", "s", rules.ParamSource{Layer: rules.LayerStage, Index: 0}, true},
		{"c", "e", rules.ParamSource{Layer: rules.LayerExecution, Index: 0}, true},
		{"d", "", rules.ParamSource{}, false},
	}
	for _, tc := range tests {
		v, from, set := src.Lookup(tc.name)
		assert.Equal(t, tc.value, v.Value, tc.name)
		assert.Equal(t, tc.from, from, tc.name)
		assert.Equal(t, tc.set, set, tc.name)
	}
	withoutExec := rules.SourcesOf(plan, entry, nil)
	v, from, _ := withoutExec.Lookup("c")
	assert.Equal(t, "s", v.Value, "before there is an execution, the stage's value wins")
	assert.Equal(t, rules.LayerStage, from.Layer)
}

func TestTypeName(t *testing.T) {
	assert.Equal(t, "string", rules.TypeName(""), "a declaration without a type is a string")
	assert.Equal(t, "int", rules.TypeName(drv1.ParameterTypeInt))
	assert.Equal(t, "bool", rules.TypeName(drv1.ParameterTypeBool))
}
