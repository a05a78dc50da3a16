package templates_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/templates"
)

// Before CheckManifest, the static checks (admission) and the runner (actions) each had their own
// manifest checker. was says how the two judged each input: "" both as now; "runner only" the
// runner refused it and the static checks admitted it (so the workflow was Ready and failed at
// run time); it is now refused by both.
func TestCheckManifest(t *testing.T) {
	const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dr-config}\n"
	tests := []struct {
		name, manifest string
		op             drv1.ResourceOperation
		want           string // the error, "" when admitted
		was            string
	}{
		{name: "one object", manifest: cm, op: drv1.OperationCreate},
		{name: "as JSON", manifest: `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}`, op: drv1.OperationApply},
		{name: "empty documents and comments are skipped", manifest: "---\n# nothing\n---\n" + cm + "---\n", op: drv1.OperationPatch},
		{name: "group/version", manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n", op: drv1.OperationDelete},
		{name: "generateName for Create", manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: dr-}\n", op: drv1.OperationCreate},
		{name: "generateName for Apply", manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: dr-}\n", op: drv1.OperationApply},

		{name: "not YAML", manifest: "kind: [ConfigMap\n", op: drv1.OperationCreate,
			want: `m: Invalid value: "<manifest>": document 1 is not valid YAML: `},
		{name: "no object", manifest: "# nothing\n", op: drv1.OperationCreate,
			want: `m: Required value: no object: want one object with apiVersion, kind and metadata.name`},
		{name: "two objects", manifest: cm + "---\n" + cm, op: drv1.OperationCreate,
			want: `m: Invalid value: "<manifest>": holds 2 objects: write one action per object`},
		{name: "a list", manifest: "- a\n- b\n", op: drv1.OperationCreate,
			want: `m: Invalid value: "<manifest>": document 1 is not an object (a mapping with apiVersion, kind and metadata) (quote templates`},
		{name: "a scalar", manifest: "placeholder\n", op: drv1.OperationCreate,
			want: `m: Invalid value: "<manifest>": document 1 is not an object`},
		{name: "no apiVersion, kind or name", manifest: "data: {a: b}\n", op: drv1.OperationCreate,
			want: `m: Invalid value: "<manifest>": the object has no apiVersion, kind, metadata.name`},
		{name: "apiVersion and kind not strings", manifest: "apiVersion: 1\nkind: true\nmetadata: {name: x}\n", op: drv1.OperationCreate,
			want: `m: Invalid value: "<manifest>": the object has no apiVersion, kind`},
		{name: "name not a string", manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 5}\n", op: drv1.OperationCreate,
			want: `m: Invalid value: "<manifest>": the object has no metadata.name`},
		// Refused by both before, the static checks saying "the object has no metadata.name".
		{name: "metadata a string", manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: dr-config\n", op: drv1.OperationCreate,
			want: `m: Invalid value: "<manifest>": metadata must be a mapping`},
		{name: "metadata null", manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n", op: drv1.OperationCreate,
			want: `m: Invalid value: "<manifest>": metadata must be a mapping`},

		{name: "apiVersion with two slashes", manifest: "apiVersion: apps/v1/beta\nkind: Deployment\nmetadata: {name: app}\n", op: drv1.OperationApply,
			want: `m: Invalid value: "<manifest>": apiVersion: unexpected GroupVersion string: apps/v1/beta`, was: "runner only"},
		{name: "a name no object has", manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + strings.Repeat("n", 254) + "}\n", op: drv1.OperationDelete,
			want: `m: Invalid value: "<manifest>": metadata.name is 254 characters, over 253`, was: "runner only"},
		{name: "a namespace no object has", manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: " + strings.Repeat("n", 64) + "}\n", op: drv1.OperationDelete,
			want: `m: Invalid value: "<manifest>": metadata.namespace is 64 characters, over 63`, was: "runner only"},
		{name: "generateName for Patch", manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: dr-}\n", op: drv1.OperationPatch,
			want: `m: Invalid value: "<manifest>": Patch needs metadata.name: generateName only names a new object`, was: "runner only"},
		{name: "generateName for Delete", manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: dr-}\n", op: drv1.OperationDelete,
			want: `m: Invalid value: "<manifest>": Delete needs metadata.name: generateName only names a new object`, was: "runner only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := templates.CheckManifest(field.NewPath("m"), tc.manifest, tc.op)
			if tc.want == "" {
				require.Nil(t, err)
				require.NotNil(t, obj)
				assert.NotEmpty(t, obj.GetKind())
				return
			}
			require.NotNil(t, err)
			assert.Nil(t, obj)
			assert.True(t, strings.HasPrefix(err.Error(), tc.want), "got %q", err.Error())
		})
	}
}

func TestDecodeDocuments(t *testing.T) {
	docs, err := templates.DecodeDocuments("a: 1\n---\n\n---\n# c\n---\nb: [x]\n")
	require.NoError(t, err)
	assert.Equal(t, []map[string]any{{"a": int64(1)}, {"b": []any{"x"}}}, docs)

	_, err = templates.DecodeDocuments("a: 1\n---\npassword: s3cr3t\n  x: [\n")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "document 2 is not valid YAML")
	assert.NotContains(t, err.Error(), "s3cr3t", "the manifest is never quoted")
}

// FuzzCheckManifest feeds the manifest checker (and so the YAML decoder) arbitrary text: it must
// never panic, an object it admits must be one the runners can use, and an error must be at the
// path given.
func FuzzCheckManifest(f *testing.F) {
	for _, seed := range []string{
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dr-config}\ndata: {a: b}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  generateName: app-\nspec: {replicas: 3}\n",
		`{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}`,
		"---\n# only a comment\n---\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
		"- a\n- b\n",
		"apiVersion: a/b/c\nkind: X\nmetadata: {name: x}\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: [x]\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: &a x\n  labels: *a\n",
		"a: [b\n",
		"\ufeffapiVersion: v1\r\nkind: ConfigMap\r\nmetadata: {name: x}\r\n",
		// What a structured text with templates may not hold (structured_test.go): here without
		// templates, as the decoder meets them.
		aliasBomb("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"),
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  <<: {a: b}\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nkind: Secret\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nbinaryData: {a: !!binary aGk=}\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: " + strings.Repeat("[", 10001) + "\n",
		`{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": ` + strings.Repeat("[", 10001) + "}",
	} {
		for _, op := range []drv1.ResourceOperation{drv1.OperationCreate, drv1.OperationPatch} {
			f.Add(seed, string(op))
		}
	}
	path := field.NewPath("spec", "actions").Index(0).Child("resource", "manifest")
	f.Fuzz(func(t *testing.T, manifest, op string) {
		obj, err := templates.CheckManifest(path, manifest, drv1.ResourceOperation(op))
		if err != nil {
			if obj != nil {
				t.Fatalf("an object and an error: %v", err)
			}
			if err.Field != path.String() {
				t.Fatalf("error at %q, want %q", err.Field, path)
			}
			return
		}
		if obj.GetAPIVersion() == "" || obj.GetKind() == "" {
			t.Fatalf("admitted without apiVersion or kind: %v", obj.Object)
		}
		if obj.GetName() == "" && (obj.GetGenerateName() == "" || op != string(drv1.OperationCreate) && op != string(drv1.OperationApply)) {
			t.Fatalf("admitted without a usable name for %q: %v", op, obj.Object)
		}
		if md, ok := obj.Object["metadata"].(map[string]any); !ok || md == nil {
			t.Fatalf("admitted with metadata %T", obj.Object["metadata"])
		}
	})
}
