package v1alpha1

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestLabelValue(t *testing.T) {
	long := strings.Repeat("ecommerce-dr-exec-", 10)
	tests := []struct {
		name, want string
	}{
		{"app-dr-plan", "app-dr-plan"},
		{strings.Repeat("a", 63), strings.Repeat("a", 63)},
		{long, LabelValue(long)},
	}
	for _, tc := range tests {
		got := LabelValue(tc.name)
		if got != tc.want {
			t.Errorf("LabelValue(%q) = %q, want %q", tc.name, got, tc.want)
		}
		if errs := validation.IsValidLabelValue(got); len(errs) > 0 {
			t.Errorf("LabelValue(%q) = %q is not a valid label value: %v", tc.name, got, errs)
		}
	}
	if LabelValue(long) == LabelValue(long+"x") {
		t.Error("two long names share a label value")
	}
	if len(LabelValue(long)) > 63 {
		t.Errorf("too long: %q", LabelValue(long))
	}
}

func TestMadeBy(t *testing.T) {
	mine := map[string]string{LabelExecution: "failover", LabelPlan: "p", LabelExecutionUID: "uid-1"}
	old := map[string]string{LabelExecution: "failover", LabelPlan: "p"} // made before the UID label
	for _, tc := range []struct {
		labels          map[string]string
		name, uid, plan string
		want            bool
	}{
		{mine, "failover", "uid-1", "p", true},
		{mine, "failover", "uid-2", "p", false}, // a namesake execution of a namesake plan elsewhere
		{mine, "other", "uid-1", "p", false},
		{mine, "failover", "uid-1", "q", false},
		{old, "failover", "uid-2", "p", true},
		{nil, "failover", "uid-1", "p", false},
	} {
		if got := MadeBy(tc.labels, tc.name, tc.uid, tc.plan); got != tc.want {
			t.Errorf("MadeBy(%v, %s, %s, %s) = %v, want %v", tc.labels, tc.name, tc.uid, tc.plan, got, tc.want)
		}
	}
}
