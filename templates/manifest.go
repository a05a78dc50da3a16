package templates

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// DecodeDocuments reads the objects of a rendered YAML (or JSON) manifest, skipping empty
// documents. Errors name the document by number and never quote the manifest: it may hold a
// Secret's data.
func DecodeDocuments(manifest string) ([]map[string]any, error) {
	var objects []map[string]any
	// Manifests are small: a reader of their own size, not bufio's 4 KiB default.
	docs := utilyaml.NewYAMLReader(bufio.NewReaderSize(strings.NewReader(manifest), len(manifest)+16))
	for i := 1; ; i++ {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			return objects, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read document %d: %w", i, err)
		}
		data, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d is not valid YAML: %w", i, err)
		}
		var v any
		if err := utiljson.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if v == nil {
			continue // empty document, or comments only
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("document %d is not an object (a mapping with apiVersion, kind and metadata)", i)
		}
		objects = append(objects, obj)
	}
}

// manifestValue stands for the manifest in errors: it may hold a Secret's data.
const manifestValue = "<manifest>"

// CheckManifest reads the one object of a rendered manifest, for operation op, and refuses what
// the KubernetesResource and Job runners cannot use. The static checks (on a manifest rendered
// with placeholder values) and the runners (on the real one) both call it, so a manifest is judged
// the same way when it is applied and when it runs. It refuses, in this order:
//
//   - a manifest that does not decode (DecodeDocuments), or holds no object, or more than one;
//   - metadata that is not a mapping;
//   - an object without apiVersion, kind, or metadata.name (metadata.generateName will do);
//   - an apiVersion that is not group/version or version;
//   - a generateName without a name when op is not Create or Apply (it only names a new object).
//
// The error is at path (where the manifest is) and never quotes the manifest.
func CheckManifest(path *field.Path, manifest string, op drv1.ResourceOperation) (*unstructured.Unstructured, *field.Error) {
	docs, err := DecodeDocuments(manifest)
	if err != nil {
		return nil, field.Invalid(path, manifestValue, err.Error()+` (quote templates that stand for a whole YAML value: "{{ .params.x }}")`)
	}
	switch len(docs) {
	case 0:
		return nil, field.Required(path, "no object: want one object with apiVersion, kind and metadata.name")
	case 1:
	default:
		return nil, field.Invalid(path, manifestValue, fmt.Sprintf("holds %d objects: write one action per object", len(docs)))
	}
	obj := &unstructured.Unstructured{Object: docs[0]}
	if md, ok := obj.Object["metadata"]; ok {
		if _, ok := md.(map[string]any); !ok {
			return nil, field.Invalid(path, manifestValue, "metadata must be a mapping")
		}
	}
	var missing []string
	if obj.GetAPIVersion() == "" { // also when it is not a string
		missing = append(missing, "apiVersion")
	}
	if obj.GetKind() == "" {
		missing = append(missing, "kind")
	}
	if obj.GetName() == "" && obj.GetGenerateName() == "" {
		missing = append(missing, "metadata.name")
	}
	if len(missing) > 0 {
		return nil, field.Invalid(path, manifestValue, "the object has no "+strings.Join(missing, ", "))
	}
	if _, err := schema.ParseGroupVersion(obj.GetAPIVersion()); err != nil {
		return nil, field.Invalid(path, manifestValue, "apiVersion: "+err.Error())
	}
	if obj.GetName() == "" && op != drv1.OperationCreate && op != drv1.OperationApply {
		return nil, field.Invalid(path, manifestValue, fmt.Sprintf("%s needs metadata.name: generateName only names a new object", op))
	}
	// No object of any kind has a longer name or namespace; the reference to it the status
	// records must fit the status's schema.
	for _, f := range []struct {
		name, value string
		max         int
	}{{"metadata.name", obj.GetName(), 253}, {"metadata.generateName", obj.GetGenerateName(), 253}, {"metadata.namespace", obj.GetNamespace(), 63}} {
		if len(f.value) > f.max {
			return nil, field.Invalid(path, manifestValue, fmt.Sprintf("%s is %d characters, over %d", f.name, len(f.value), f.max))
		}
	}
	return obj, nil
}
