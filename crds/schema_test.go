package crds_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/bkbcs/drplan-controller/crds"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/templates"
)

// unbounded are the schema paths (and everything under them) that bound no size of their own, and
// what bounds them instead. Every other string has a maxLength (or an enum), every list a
// maxItems and every map a maxProperties.
var unbounded = map[string]string{
	"drworkflows .spec.actions[].job.template":                                        "a pod template (preserve-unknown-fields): the object's size bounds it; validation renders it and checks it is a pod template",
	"drworkflows .spec.actions[].rollback.job.template":                               "as spec.actions[].job.template",
	"drworkflows .spec.actions[].subscription.dividingScheduling":                     "Clusternet's own structure (preserve-unknown-fields): the object's size bounds it; Clusternet's schema checks it",
	"drworkflows .spec.actions[].rollback.subscription.dividingScheduling":            "as spec.actions[].subscription.dividingScheduling",
	"drworkflows .spec.parameters[].default":                                          "any scalar (preserve-unknown-fields, where the API server allows no CEL rule): validation checks it is a scalar of the declared type, at most drv1.MaxParamValue characters",
	"drworkflows .spec.actions[].subscription.subscribers[].clusterAffinity":          "metav1.LabelSelector's own schema, which has no bounds: subscribers' maxItems and the object's size bound it",
	"drworkflows .spec.actions[].rollback.subscription.subscribers[].clusterAffinity": "as spec.actions[].subscription.subscribers[].clusterAffinity",
	"drworkflows .spec.actions[].http.headers{}":                                      "controller-gen cannot bound a map's values: the map's CEL rule bounds them to 8192 characters",
	"drworkflows .spec.actions[].rollback.http.headers{}":                             "as spec.actions[].http.headers{}",
	"drplanexecutions .status.resolvedParams{}":                                       "controller-gen cannot bound a map's values: parameter values, which only the controller writes, from a plan's or an execution's value or a default, each at most drv1.MaxParamValue characters (a default by validation)",
	"drplanexecutions .status.stageStatuses[].workflowExecutions[].resolvedParams{}":  "as status.resolvedParams{}",
	"drworkflows .status.conditions[].lastTransitionTime":                             "metav1.Condition's own schema (a date-time): conditions' maxItems and the object's size bound it",
	"drplans .status.conditions[].lastTransitionTime":                                 "as in drworkflows",
	"drplanexecutions .status.conditions[].lastTransitionTime":                        "as in drworkflows",
}

// schemas returns the generated CRDs, decoded.
func schemas(t *testing.T) []apiextensionsv1.CustomResourceDefinition {
	var out []apiextensionsv1.CustomResourceDefinition
	for _, doc := range crds.YAML() {
		var crd apiextensionsv1.CustomResourceDefinition
		require.NoError(t, yaml.UnmarshalStrict(doc, &crd))
		out = append(out, crd)
	}
	require.Len(t, out, 3)
	return out
}

// TestSchemaBoundsEverySize: every string of the CRDs has a maxLength (or an enum), every list a
// maxItems and every map a maxProperties, except the paths of unbounded, which must exist.
func TestSchemaBoundsEverySize(t *testing.T) {
	used := map[string]bool{}
	for _, crd := range schemas(t) {
		for _, v := range crd.Spec.Versions {
			walkSchema(crd.Spec.Names.Plural+" ", v.Schema.OpenAPIV3Schema, func(path, problem string) {
				if p, ok := exempt(path); ok {
					used[p] = true
					return
				}
				t.Errorf("%s: %s", path, problem)
			})
		}
	}
	for p := range unbounded {
		assert.True(t, used[p], "unbounded lists %s, which is bounded or gone: drop it", p)
	}
}

// exempt returns the entry of unbounded that path is or is under. An object's own apiVersion and
// kind are exempt: the API server accepts only the CRD's.
func exempt(path string) (string, bool) {
	if strings.HasSuffix(path, " .apiVersion") || strings.HasSuffix(path, " .kind") {
		return "", true
	}
	for p := range unbounded {
		if path == p || strings.HasPrefix(path, p) && strings.ContainsRune(".[{", rune(path[len(p)])) {
			return p, true
		}
	}
	return "", false
}

// walkSchema reports, at its path, each string, list or map of s that bounds no size.
func walkSchema(path string, s *apiextensionsv1.JSONSchemaProps, report func(path, problem string)) {
	switch {
	case s.XPreserveUnknownFields != nil && *s.XPreserveUnknownFields:
		report(path, "x-kubernetes-preserve-unknown-fields: list it in unbounded with what bounds it")
	case s.Type == "string" && s.MaxLength == nil && len(s.Enum) == 0:
		report(path, "a string without maxLength")
	case s.Type == "array" && s.MaxItems == nil:
		report(path, "a list without maxItems")
	case s.Type == "object" && s.AdditionalProperties != nil && s.MaxProperties == nil:
		report(path, "a map without maxProperties")
	}
	if s.Items != nil && s.Items.Schema != nil {
		walkSchema(path+"[]", s.Items.Schema, report)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		walkSchema(path+"{}", s.AdditionalProperties.Schema, report)
	}
	for name, p := range s.Properties {
		walkSchema(path+"."+name, &p, report)
	}
}

// schemaAt returns the schema at a path of walkSchema's form, "" for the root.
func schemaAt(t *testing.T, plural, path string) *apiextensionsv1.JSONSchemaProps {
	for _, crd := range schemas(t) {
		if crd.Spec.Names.Plural != plural {
			continue
		}
		s := crd.Spec.Versions[0].Schema.OpenAPIV3Schema
		for _, seg := range strings.Split(strings.TrimPrefix(path, "."), ".") {
			name, lists := strings.CutSuffix(seg, "[]")
			p, ok := s.Properties[name]
			require.True(t, ok, "%s %s: no %s", plural, path, name)
			s = &p
			if lists {
				s = s.Items.Schema
			}
		}
		return s
	}
	t.Fatalf("no CRD %s", plural)
	return nil
}

// TestSchemaBoundsMatchTheCode: where the code bounds what a field holds, the schema says the
// same, so that neither refuses what the other accepts.
func TestSchemaBoundsMatchTheCode(t *testing.T) {
	for _, path := range []string{".status.actionStatuses", ".status.outputs", ".status.snapshot.workflows"} {
		assert.EqualValues(t, drv1.MaxPlanActions, *schemaAt(t, "drplanexecutions", path).MaxItems,
			"%s holds one entry per action at most: drv1.MaxPlanActions", path)
	}
	for _, at := range []struct{ kind, path string }{{"drplans", ".spec.globalParams[].value"}, {"drplans", ".spec.stages[].workflows[].params[].value"},
		{"drplanexecutions", ".spec.params[].value"}} {
		assert.EqualValues(t, drv1.MaxParamValue, *schemaAt(t, at.kind, at.path).MaxLength, "%s %s is a parameter's value: drv1.MaxParamValue", at.kind, at.path)
	}
	for _, path := range []string{".spec.actions[].resource.manifest", ".spec.actions[].http.body", ".spec.actions[].localization.overrides[].value"} {
		assert.EqualValues(t, templates.MaxRenderedBytes, *schemaAt(t, "drworkflows", path).MaxLength,
			"%s is a template: its text may be as long as what it renders to, templates.MaxRenderedBytes", path)
	}
	rules := schemaAt(t, "drworkflows", ".spec.actions[].http.timeout").XValidations
	i := slices.IndexFunc(rules, func(r apiextensionsv1.ValidationRule) bool { return strings.Contains(r.Rule, "duration(self) <=") })
	require.GreaterOrEqual(t, i, 0, "the Duration type bounds durations: %v", rules)
	m := regexp.MustCompile(`duration\(self\) <= duration\('([^']+)'\)`).FindStringSubmatch(rules[i].Rule)
	require.NotNil(t, m, rules[i].Rule)
	d, err := time.ParseDuration(m[1])
	require.NoError(t, err)
	assert.Equal(t, drv1.MaxActionDuration, d, "the schema's bound of a Duration is drv1.MaxActionDuration")
	assert.Equal(t, "must be at most "+m[1], rules[i].Message)
}
