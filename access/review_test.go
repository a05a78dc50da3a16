package access

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// fakeSAR allows what allow says, counting the reviews asked.
type fakeSAR struct {
	mu    sync.Mutex
	asked []authorizationv1.ResourceAttributes
	allow func(user string, a authorizationv1.ResourceAttributes) bool
	err   error
}

func (f *fakeSAR) Create(_ context.Context, sar *authorizationv1.SubjectAccessReview, _ metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	f.asked = append(f.asked, *sar.Spec.ResourceAttributes)
	out := sar.DeepCopy()
	out.Status.Allowed = f.allow(sar.Spec.User, *sar.Spec.ResourceAttributes)
	return out, nil
}

func (f *fakeSAR) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.asked)
}

func TestReviewerCheck(t *testing.T) {
	alice := drv1.Requester{Username: "alice", Groups: []string{"tenants"}}
	// alice may do anything in tenant-a, and get the one Secret "shared" in tenant-b.
	sar := &fakeSAR{allow: func(user string, a authorizationv1.ResourceAttributes) bool {
		return user == "alice" && (a.Namespace == "tenant-a" || a.Namespace == "tenant-b" && a.Resource == "secrets" && a.Verb == "get" && a.Name == "shared")
	}}
	now := time.Unix(1000, 0)
	r := NewReviewer(sar, 10*time.Second)
	r.now = func() time.Time { return now }
	ctx := context.Background()
	own := []Need{
		{Verb: "create", Resource: "configmaps", Namespace: "tenant-a", Name: "a", For: "one"},
		{Verb: "get", Resource: "configmaps", Namespace: "tenant-a", Name: "a", For: "one"},
		{Verb: "get", Resource: "configmaps", Namespace: "tenant-a", Name: "b", For: "two"},
	}
	require.NoError(t, r.Check(ctx, alice, own))
	assert.Equal(t, 2, sar.count(), "one broad question per verb and resource: names are covered by it")

	err := r.Check(ctx, alice, []Need{{Verb: "get", Resource: "secrets", Namespace: "tenant-b", Name: "shared", For: "parameter p"}})
	require.NoError(t, err, "a named right where the broad one is missing")

	err = r.Check(ctx, alice, append(own, Need{Verb: "create", Resource: "configmaps", Namespace: "kube-system", Name: "x",
		For: `stage "s", workflow tenant-a/esc, action "plant"`}))
	var denied *DeniedError
	require.ErrorAs(t, err, &denied)
	assert.EqualError(t, err, `user "alice" may not create configmaps in namespace "kube-system" (stage "s", workflow tenant-a/esc, action "plant")`)

	asked := sar.count()
	require.NoError(t, r.Check(ctx, alice, own))
	assert.Equal(t, asked, sar.count(), "a yes is kept")
	require.Error(t, r.Check(ctx, alice, []Need{{Verb: "create", Resource: "configmaps", Namespace: "kube-system", For: "x"}}))
	assert.Equal(t, asked+1, sar.count(), "a no is asked again: a right granted since counts at once")
	now = now.Add(10 * time.Second)
	require.NoError(t, r.Check(ctx, alice, own[:1]))
	assert.Equal(t, asked+2, sar.count(), "and a yes asked again after the TTL")

	bob := drv1.Requester{Username: "bob"}
	require.Error(t, r.Check(ctx, bob, own[:1]), "answers are per user")

	sar.err = errors.New("connection refused")
	now = now.Add(time.Minute)
	err = r.Check(ctx, alice, own[:1])
	require.ErrorContains(t, err, `checking the rights of user "alice": connection refused`)
	assert.False(t, errors.As(err, &denied), "a failed review is not a denial")
}

func TestReviewerCacheBounded(t *testing.T) {
	sar := &fakeSAR{allow: func(string, authorizationv1.ResourceAttributes) bool { return true }}
	r := NewReviewer(sar, time.Hour)
	for i := range maxCached + 10 {
		require.NoError(t, r.Check(context.Background(), drv1.Requester{Username: "u" + string(rune('a'+i%26)) + string(rune(i))},
			[]Need{{Verb: "get", Resource: "configmaps", Namespace: "a"}}))
	}
	assert.LessOrEqual(t, len(r.kept.cache), maxCached)
}

func TestReviewerStopsAtTheFirstDenialAndIsBounded(t *testing.T) {
	sar := &fakeSAR{allow: func(_ string, a authorizationv1.ResourceAttributes) bool { return a.Namespace != "denied" }}
	r := NewReviewer(sar, time.Minute)
	ctx := context.Background()
	bob := drv1.Requester{Username: "bob"}
	var many []Need
	for i := range 1000 {
		many = append(many, Need{Verb: "create", Resource: "configmaps", Namespace: fmt.Sprintf("ns-%d", i), For: "x"})
	}
	err := r.Check(ctx, bob, append([]Need{{Verb: "create", Resource: "configmaps", Namespace: "denied", For: "first"}}, many...))
	var denied *DeniedError
	require.ErrorAs(t, err, &denied)
	assert.Equal(t, "first", denied.Need.For)
	assert.LessOrEqual(t, sar.count(), maxParallel, "no more than one batch is asked once the first need is denied")

	err = r.Check(ctx, bob, many)
	var refused *RefusedError
	require.ErrorAs(t, err, &refused)
	assert.Contains(t, err.Error(), fmt.Sprintf("takes more than %d SubjectAccessReviews", MaxReviews))
	assert.LessOrEqual(t, sar.count(), maxParallel+MaxReviews+2*maxParallel, "bounded")
}

func TestReviewerWithSharesTheAnswers(t *testing.T) {
	yes := func(string, authorizationv1.ResourceAttributes) bool { return true }
	controller, webhook := &fakeSAR{allow: yes}, &fakeSAR{allow: yes}
	r := NewReviewer(controller, time.Minute)
	w := r.With(webhook)
	ctx := context.Background()
	alice := drv1.Requester{Username: "alice"}
	need := []Need{{Verb: "create", Resource: "configmaps", Namespace: "a", For: "x"}}
	require.NoError(t, w.Check(ctx, alice, need))
	assert.Equal(t, 1, webhook.count(), "asked through its own client")
	require.NoError(t, r.Check(ctx, alice, need))
	assert.Zero(t, controller.count(), "the yes the other found serves")
	require.NoError(t, r.Check(ctx, alice, []Need{{Verb: "delete", Resource: "configmaps", Namespace: "a", For: "x"}}))
	assert.Equal(t, 1, controller.count())
	assert.Equal(t, 1, webhook.count())
}
