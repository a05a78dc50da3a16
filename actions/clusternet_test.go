package actions_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bkbcs/drplan-controller/actions"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

func TestLocalizationObject(t *testing.T) {
	prio := int32(600)
	tests := []struct {
		name string
		in   drv1.LocalizationAction
		want string // JSON
		err  string
	}{{
		name: "a Create with the guide's YAML overrides, passed on as JSON",
		in: drv1.LocalizationAction{Operation: "Create", Name: "l", Namespace: "clusternet-dr", Priority: &prio,
			Feed: &drv1.Feed{APIVersion: "apps/v1", Kind: "Deployment", Name: "my-app", Namespace: "production"},
			Overrides: []drv1.Override{
				{Name: "scale", Type: "JSONPatch", Value: "- op: replace\n  path: /spec/replicas\n  value: 3\n"},
				{Name: "label", Type: "MergePatch", Value: "metadata:\n  labels:\n    dr-mode: \"active\"\n"},
			}},
		want: `{"apiVersion":"apps.clusternet.io/v1alpha1","kind":"Localization","metadata":{"name":"l","namespace":"clusternet-dr"},
			"spec":{"priority":600,"overrides":[{"name":"scale","value":"[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":3}]","type":"JSONPatch"},
			{"name":"label","value":"{\"metadata\":{\"labels\":{\"dr-mode\":\"active\"}}}","type":"MergePatch"}],
			"feed":{"kind":"Deployment","apiVersion":"apps/v1","namespace":"production","name":"my-app"}}}`,
	}, {
		name: "the guide's shorthand: clusterNamespace, and path + value as a JSONPatch replace",
		in: drv1.LocalizationAction{Operation: "Create", Name: "scaled-app", ClusterNamespace: "clusternet-x",
			Feed:      &drv1.Feed{APIVersion: "apps/v1", Kind: "Deployment", Name: "d"},
			Overrides: []drv1.Override{{Path: "/spec/replicas", Value: "5"}}},
		want: `{"apiVersion":"apps.clusternet.io/v1alpha1","kind":"Localization","metadata":{"name":"scaled-app","namespace":"clusternet-x"},
			"spec":{"overrides":[{"name":"override-0","value":"[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":5}]","type":"JSONPatch"}],
			"feed":{"kind":"Deployment","apiVersion":"apps/v1","name":"d"}}}`,
	}, {
		name: "a Patch sets only what it names; its overrides are merged by name (MergeOverrides)",
		in: drv1.LocalizationAction{Operation: "Patch", Name: "l", Namespace: "clusternet-x", Priority: &prio,
			Overrides: []drv1.Override{{Name: "down", Type: "JSONPatch", Value: `[{"op":"replace","path":"/spec/replicas","value":1}]`}}},
		want: `{"apiVersion":"apps.clusternet.io/v1alpha1","kind":"Localization","metadata":{"name":"l","namespace":"clusternet-x"},
			"spec":{"priority":600}}`,
	}, {
		name: "a Delete names the object only",
		in:   drv1.LocalizationAction{Operation: "Delete", Name: "l", Namespace: "clusternet-x"},
		want: `{"apiVersion":"apps.clusternet.io/v1alpha1","kind":"Localization","metadata":{"name":"l","namespace":"clusternet-x"}}`,
	}, {
		name: "a value that is not YAML",
		in:   drv1.LocalizationAction{Operation: "Patch", Name: "l", Namespace: "x", Overrides: []drv1.Override{{Name: "bad", Type: "MergePatch", Value: "a: [b"}}},
		err:  "overrides[0] (bad): value is not valid YAML or JSON",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := actions.LocalizationObject(&tc.in)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			got, err := json.Marshal(obj)
			require.NoError(t, err)
			var gotMap, wantMap map[string]any
			require.NoError(t, json.Unmarshal(got, &gotMap))
			require.NoError(t, json.Unmarshal([]byte(tc.want), &wantMap))
			if md, ok := gotMap["metadata"].(map[string]any); ok {
				delete(md, "creationTimestamp") // typed objects carry a null one
			}
			delete(gotMap, "status")
			assert.Equal(t, wantMap, gotMap)
		})
	}
}

func TestSubscriptionObject(t *testing.T) {
	sub := drv1.SubscriptionAction{Operation: "Create", Name: "s", Namespace: "default", SchedulingStrategy: "Replication",
		Feeds:       []drv1.Feed{{APIVersion: "v1", Kind: "ConfigMap", Name: "c", Namespace: "production"}},
		Subscribers: []drv1.Subscriber{{ClusterAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"region": "dr"}}}}}
	obj, err := actions.SubscriptionObject(&sub)
	require.NoError(t, err)
	got, err := json.Marshal(obj)
	require.NoError(t, err)
	assert.Contains(t, string(got), `"spec":{"schedulingStrategy":"Replication","subscribers":[{"clusterAffinity":{"matchLabels":{"region":"dr"}}}],"feeds":[{"kind":"ConfigMap","apiVersion":"v1","namespace":"production","name":"c"}]}`)

	patch := drv1.SubscriptionAction{Operation: "Patch", Name: "s", Namespace: "default", SchedulingStrategy: "Dividing"}
	obj, err = actions.SubscriptionObject(&patch)
	require.NoError(t, err)
	got, err = json.Marshal(obj)
	require.NoError(t, err)
	assert.JSONEq(t, `{"apiVersion":"apps.clusternet.io/v1alpha1","kind":"Subscription","metadata":{"name":"s","namespace":"default"},"spec":{"schedulingStrategy":"Dividing"}}`, string(got))
}

// TestMergeOverrides: a Localization Patch changes only the overrides it names.
func TestMergeOverrides(t *testing.T) {
	existing := func() []any { // as the API server returns them
		return []any{
			map[string]any{"name": "scale-replicas", "type": "JSONPatch", "value": `[{"op":"replace","path":"/spec/replicas","value":3}]`},
			map[string]any{"name": "add-dr-label", "type": "MergePatch", "value": `{"metadata":{"labels":{"dr-mode":"active"}}}`, "overrideChart": false},
		}
	}
	scaleUp := drv1.Override{Name: "scale-up", Type: "JSONPatch", Value: "- op: replace\n  path: /spec/replicas\n  value: 5\n"}
	scaleDown := drv1.Override{Name: "scale-down", Type: "JSONPatch", Value: "- op: replace\n  path: /spec/replicas\n  value: 1\n"}
	tests := []struct {
		name     string
		existing []any
		patch    []drv1.Override
		want     string // JSON
		err      string
	}{{
		name:     "the guide's 示例 4: scale-up is added at the end, the others kept",
		existing: existing(), patch: []drv1.Override{scaleUp},
		want: `[{"name":"scale-replicas","type":"JSONPatch","value":"[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":3}]"},
			{"name":"add-dr-label","type":"MergePatch","value":"{\"metadata\":{\"labels\":{\"dr-mode\":\"active\"}}}","overrideChart":false},
			{"name":"scale-up","type":"JSONPatch","value":"[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":5}]"}]`,
	}, {
		name:     "its rollback as the guide writes it adds scale-down and leaves scale-up",
		existing: append(existing(), map[string]any{"name": "scale-up", "type": "JSONPatch", "value": `[{"op":"replace","path":"/spec/replicas","value":5}]`}),
		patch:    []drv1.Override{scaleDown},
		want: `[{"name":"scale-replicas","type":"JSONPatch","value":"[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":3}]"},
			{"name":"add-dr-label","type":"MergePatch","value":"{\"metadata\":{\"labels\":{\"dr-mode\":\"active\"}}}","overrideChart":false},
			{"name":"scale-up","type":"JSONPatch","value":"[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":5}]"},
			{"name":"scale-down","type":"JSONPatch","value":"[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":1}]"}]`,
	}, {
		name:     "a rollback removing scale-up restores the list",
		existing: append(existing(), map[string]any{"name": "scale-up", "type": "JSONPatch", "value": `[{"op":"replace","path":"/spec/replicas","value":5}]`}),
		patch:    []drv1.Override{{Name: "scale-up", Remove: true}},
		want: `[{"name":"scale-replicas","type":"JSONPatch","value":"[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":3}]"},
			{"name":"add-dr-label","type":"MergePatch","value":"{\"metadata\":{\"labels\":{\"dr-mode\":\"active\"}}}","overrideChart":false}]`,
	}, {
		name:     "an override of a name the Localization has replaces it in its place",
		existing: existing(), patch: []drv1.Override{{Name: "scale-replicas", Type: "JSONPatch", Value: `[{"op":"replace","path":"/spec/replicas","value":7}]`}},
		want: `[{"name":"scale-replicas","type":"JSONPatch","value":"[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":7}]"},
			{"name":"add-dr-label","type":"MergePatch","value":"{\"metadata\":{\"labels\":{\"dr-mode\":\"active\"}}}","overrideChart":false}]`,
	}, {
		name: "a replaced name's later namesakes go; a removal takes every one",
		existing: []any{map[string]any{"name": "a", "type": "MergePatch", "value": "{}"}, map[string]any{"name": "b", "type": "MergePatch", "value": "{}"},
			map[string]any{"name": "a", "type": "MergePatch", "value": "{}"}, map[string]any{"name": "b", "type": "MergePatch", "value": "{}"}},
		patch: []drv1.Override{{Name: "a", Type: "MergePatch", Value: "x: 1"}, {Name: "b", Remove: true}},
		want:  `[{"name":"a","type":"MergePatch","value":"{\"x\":1}"}]`,
	}, {
		name:     "removing a name the Localization does not have changes nothing",
		existing: existing()[:1], patch: []drv1.Override{{Name: "gone", Remove: true}},
		want: `[{"name":"scale-replicas","type":"JSONPatch","value":"[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":3}]"}]`,
	}, {
		name:  "a Localization without overrides",
		patch: []drv1.Override{{Name: "a", Type: "MergePatch", Value: "x: 1"}, {Name: "b", Remove: true}},
		want:  `[{"name":"a","type":"MergePatch","value":"{\"x\":1}"}]`,
	}, {
		name:  "an override without a name",
		patch: []drv1.Override{{Type: "MergePatch", Value: "x: 1"}},
		err:   "overrides[0]: a Patch changes overrides by name: name it",
	}, {
		name:  "a value that is not YAML",
		patch: []drv1.Override{{Name: "bad", Type: "MergePatch", Value: "a: [b"}},
		err:   "overrides[0] (bad): value is not valid YAML or JSON",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := actions.MergeOverrides(tc.existing, tc.patch)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			raw, err := json.Marshal(got)
			require.NoError(t, err)
			assert.JSONEq(t, tc.want, string(raw))
		})
	}
}
