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
		name: "a Patch sets only what it names",
		in: drv1.LocalizationAction{Operation: "Patch", Name: "l", Namespace: "clusternet-x",
			Overrides: []drv1.Override{{Name: "down", Type: "JSONPatch", Value: `[{"op":"replace","path":"/spec/replicas","value":1}]`}}},
		want: `{"apiVersion":"apps.clusternet.io/v1alpha1","kind":"Localization","metadata":{"name":"l","namespace":"clusternet-x"},
			"spec":{"overrides":[{"name":"down","value":"[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":1}]","type":"JSONPatch"}]}}`,
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
