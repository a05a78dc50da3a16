package access

import (
	"context"
	"fmt"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// SubjectAccessReviews creates SubjectAccessReviews: client-go's
// AuthorizationV1().SubjectAccessReviews().
type SubjectAccessReviews interface {
	Create(ctx context.Context, sar *authorizationv1.SubjectAccessReview, opts metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error)
}

// Reviewer asks the API server whether a user has rights, with SubjectAccessReview, and keeps
// each answer for at most TTL: a right revoked is noticed within TTL. Safe for concurrent use.
type Reviewer struct {
	sar SubjectAccessReviews
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	cache map[reviewKey]answer
}

// DefaultTTL is how long an answer is kept: the bound on noticing a revoked right.
const DefaultTTL = 10 * time.Second

// maxCached bounds the answers kept; past it the expired ones go, and if none has, all do.
const maxCached = 8192

// maxParallel bounds the reviews one Check has in flight.
const maxParallel = 8

// NewReviewer returns a Reviewer that keeps answers for ttl.
func NewReviewer(sar SubjectAccessReviews, ttl time.Duration) *Reviewer {
	return &Reviewer{sar: sar, ttl: ttl, now: time.Now, cache: map[reviewKey]answer{}}
}

type reviewKey struct {
	user                                        string // the requester's JSON
	verb, group, resource, sub, namespace, name string
}

type answer struct {
	allowed bool
	reason  string
	at      time.Time
}

// DeniedError says which right a user lacks, and what needed it.
type DeniedError struct {
	User   string
	Need   Need
	Reason string // the authorizer's, if it gave one
}

func (e *DeniedError) Error() string {
	msg := fmt.Sprintf("user %q may not %s (%s)", e.User, e.Need, e.Need.For)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Check returns a *DeniedError for the first need, in order, that user does not have, nil when
// they have all, or the error of a review that could not be made. A named need is first checked
// for every object of its resource (one review covers many names), then for the name.
func (r *Reviewer) Check(ctx context.Context, user drv1.Requester, needs []Need) error {
	who := user.Encode()
	keys := make([]reviewKey, len(needs))
	broad := make([]reviewKey, len(needs))
	for i, n := range needs {
		broad[i] = reviewKey{user: who, verb: n.Verb, group: n.Group, resource: n.Resource, sub: n.Subresource, namespace: n.Namespace}
		keys[i] = broad[i]
		if n.named() {
			keys[i].name = n.Name
		}
	}
	// Every distinct broad question at once, then the named ones the broad answer did not cover.
	answers, err := r.answers(ctx, user, broad, nil)
	if err != nil {
		return err
	}
	var named []reviewKey
	for i, k := range keys {
		if k.name != "" && !answers[broad[i]].allowed {
			named = append(named, k)
		}
	}
	if answers, err = r.answers(ctx, user, named, answers); err != nil {
		return err
	}
	for i, k := range keys {
		a := answers[broad[i]]
		if !a.allowed && k.name != "" {
			a = answers[k]
		}
		if !a.allowed {
			return &DeniedError{User: user.Username, Need: needs[i], Reason: a.reason}
		}
	}
	return nil
}

// answers adds to got (made if nil) an answer for every key: a cached one younger than the TTL,
// or a fresh one, asking at most maxParallel at once.
func (r *Reviewer) answers(ctx context.Context, user drv1.Requester, keys []reviewKey, got map[reviewKey]answer) (map[reviewKey]answer, error) {
	if got == nil {
		got = map[reviewKey]answer{}
	}
	now := r.now()
	var todo []reviewKey
	r.mu.Lock()
	for _, k := range keys {
		if _, done := got[k]; done {
			continue
		}
		if a, ok := r.cache[k]; ok && now.Sub(a.at) < r.ttl {
			got[k] = a
			continue
		}
		got[k] = answer{} // asked below
		todo = append(todo, k)
	}
	r.mu.Unlock()
	fresh := make([]answer, len(todo))
	errs := make([]error, len(todo))
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i, k := range todo {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fresh[i], errs[i] = r.ask(ctx, user, k)
		})
	}
	wg.Wait()
	for i, k := range todo {
		if errs[i] != nil {
			return nil, errs[i]
		}
		got[k] = fresh[i]
	}
	return got, nil
}

// ask makes one SubjectAccessReview and keeps its answer.
func (r *Reviewer) ask(ctx context.Context, user drv1.Requester, k reviewKey) (answer, error) {
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: k.verb, Group: k.group, Resource: k.resource,
			Subresource: k.sub, Namespace: k.namespace, Name: k.name},
	}}
	if len(user.Extra) > 0 {
		sar.Spec.Extra = map[string]authorizationv1.ExtraValue{}
		for key, v := range user.Extra {
			sar.Spec.Extra[key] = authorizationv1.ExtraValue(v)
		}
	}
	got, err := r.sar.Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return answer{}, fmt.Errorf("checking the rights of user %q: %w", user.Username, err)
	}
	a := answer{allowed: got.Status.Allowed && !got.Status.Denied, reason: got.Status.Reason, at: r.now()}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= maxCached {
		for key, old := range r.cache {
			if a.at.Sub(old.at) >= r.ttl {
				delete(r.cache, key)
			}
		}
		if len(r.cache) >= maxCached {
			clear(r.cache)
		}
	}
	r.cache[k] = a
	return a, nil
}
