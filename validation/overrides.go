package validation

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// validateOverrides checks a Localization action's overrides (at path): each is a patch with its
// type (or the path shorthand); in a Patch, which changes overrides by name, each has a name of
// its own, and one may instead remove the override of its name (remove: true, nothing else).
func validateOverrides(path *field.Path, l *drv1.LocalizationAction) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for j, o := range l.Overrides {
		op := path.Index(j)
		if l.Operation == "Patch" {
			switch {
			case o.Name == "":
				errs = append(errs, field.Required(op.Child("name"), "a Patch adds, replaces or removes the Localization's overrides by name"))
			case seen[o.Name]:
				errs = append(errs, field.Duplicate(op.Child("name"), o.Name))
			}
			seen[o.Name] = true
		}
		switch {
		case o.Remove && l.Operation != "Patch":
			errs = append(errs, field.Invalid(op.Child("remove"), true, "remove is for a Patch, which changes a Localization's overrides; a "+string(l.Operation)+" does not"))
		case o.Remove && (o.Type != "" || o.Value != "" || o.Path != ""):
			errs = append(errs, field.Invalid(op.Child("remove"), true, "an override removed is named only: drop its type, value and path"))
		case o.Remove:
		case o.Path != "" && o.Type != "":
			errs = append(errs, field.Invalid(op.Child("path"), o.Path, "path is the shorthand for a JSONPatch replace: drop it and write the patch in value, or drop type"))
		case o.Path == "" && o.Type == "":
			errs = append(errs, field.Required(op.Child("type"), "JSONPatch, MergePatch or Helm"))
		}
	}
	return errs
}
