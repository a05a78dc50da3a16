package controller

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

func TestNewer(t *testing.T) {
	at := func(s int) *metav1.Time {
		v := metav1.NewTime(time.Date(2026, 1, 30, 10, 0, s, 0, time.UTC))
		return &v
	}
	tests := []struct {
		name                           string
		start, end, lastStart, lastEnd *metav1.Time
		want                           bool
	}{
		{"ended later", at(1), at(5), at(0), at(2), true},
		{"ended earlier (an old run's sync after a restart)", at(0), at(2), at(1), at(5), false},
		{"same second: started later", at(2), at(2), at(0), at(2), true},
		{"same second: started earlier", at(0), at(2), at(2), at(2), false},
		{"same seconds, started and ended: neither (the lock's holder decides)", at(2), at(2), at(2), at(2), false},
		{"nothing recorded before", at(0), at(1), nil, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &drv1.DRPlanExecutionStatus{StartTime: tc.start, CompletionTime: tc.end}
			last := &drv1.ExecutionReference{StartTime: tc.lastStart, CompletionTime: tc.lastEnd}
			assert.Equal(t, tc.want, newer(st, last))
		})
	}
}
