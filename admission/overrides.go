package admission

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// overridesLeft warns of the overrides a Localization Patch (action a, at where) sets that its
// rollback leaves in place: the rollback neither deletes that Localization nor names them in a
// Patch of it (to set a replaced one back, or to remove one the Patch added), so a Revert keeps
// them.
func overridesLeft(where string, a drv1.Action) []string {
	l, rb := a.Localization, a.Rollback.Localization
	if a.Type != drv1.ActionTypeLocalization || l == nil || l.Operation != "Patch" {
		return nil
	}
	same := a.Rollback.Type == drv1.ActionTypeLocalization && rb != nil && rb.Name == l.Name && namespaceOf(rb) == namespaceOf(l)
	if same && rb.Operation == "Delete" {
		return nil
	}
	var handled []string
	if same && rb.Operation == "Patch" {
		for _, o := range rb.Overrides {
			handled = append(handled, o.Name)
		}
	}
	var left []string
	for _, o := range l.Overrides {
		if !o.Remove && !slices.Contains(handled, o.Name) {
			left = append(left, strconv.Quote(o.Name))
		}
	}
	if len(left) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s: its rollback leaves in place the overrides this Patch sets (%s), so a Revert keeps them; "+
		"name each in the rollback's overrides: remove: true takes away one the Patch added, a value sets back one it replaced",
		where, strings.Join(left, ", "))}
}

func namespaceOf(l *drv1.LocalizationAction) string {
	if l.Namespace != "" {
		return l.Namespace
	}
	return l.ClusterNamespace
}
