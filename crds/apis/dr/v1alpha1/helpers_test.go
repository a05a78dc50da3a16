package v1alpha1_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

func TestTruncateText(t *testing.T) {
	for _, tc := range []struct {
		s     string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{strings.Repeat("a", 30), 20, "aaaaa... (truncated)"},
		{strings.Repeat("a", 30), 15, "... (truncated)"},
		{strings.Repeat("a", 30), 4, "... "},
		{strings.Repeat("a", 30), 0, ""},
		{"容灾容灾容灾容灾", 20, "容... (truncated)"},
	} {
		got := drv1.TruncateText(tc.s, tc.limit)
		assert.Equal(t, tc.want, got, "%q to %d", tc.s, tc.limit)
		assert.LessOrEqual(t, len(got), max(tc.limit, 0))
	}
}
