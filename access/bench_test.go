package access

import (
	"context"
	"fmt"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/runplan"
)

// BenchmarkActionCheck is the check before each action of a run, its answers kept: what the
// rights checks add to every action.
func BenchmarkActionCheck(b *testing.B) {
	var acts []runplan.Action
	for i := range 3 {
		acts = append(acts, resource(drv1.OperationCreate, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d}\n", i)))
	}
	prep := prepared(acts...)
	az := &Authorizer{Reviewer: NewReviewer(&fakeSAR{allow: func(string, authorizationv1.ResourceAttributes) bool { return true }}, time.Hour), Mapper: testMapper()}
	user := drv1.Requester{Username: "alice", Groups: []string{"tenants", "system:authenticated"}}
	spec := &drv1.DRPlanSpec{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := az.Action(ctx, user, "tenant-a", spec, prep, 1, nil); err != nil {
			b.Fatal(err)
		}
	}
}
