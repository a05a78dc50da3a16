package access

import (
	"context"
	"fmt"
	"slices"
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
// each yes for at most TTL: a right revoked is noticed within TTL, one granted at once. Safe for
// concurrent use.
type Reviewer struct {
	sar SubjectAccessReviews
	ttl time.Duration
	now func() time.Time
	// Observe, when set, is told of every review asked: allowed, or the error.
	Observe func(allowed bool, err error)

	kept *kept // shared by the Reviewers of With
}

// kept are the yeses a Reviewer keeps.
type kept struct {
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
	return &Reviewer{sar: sar, ttl: ttl, now: time.Now, kept: &kept{cache: map[reviewKey]answer{}}}
}

// With returns a Reviewer that asks through sar (a client with a rate limit of its own) and keeps
// its answers with r's: a yes either found serves both. Observe is r's.
func (r *Reviewer) With(sar SubjectAccessReviews) *Reviewer {
	return &Reviewer{sar: sar, ttl: r.ttl, now: r.now, Observe: r.Observe, kept: r.kept}
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

// MaxReviews bounds the SubjectAccessReviews one Check makes (answers kept from earlier checks
// are free): a run whose rights take more distinct questions is refused, so no request can make
// the webhook or the controller ask the API server without bound.
const MaxReviews = 256

// Check returns a *DeniedError for the first need, in order, that user does not have, nil when
// they have all, a *RefusedError when that takes more than MaxReviews reviews, or the error of a
// review that could not be made. Needs are asked in order, a few at once, and the first denial
// ends the check. A named need is first asked for every object of its resource (one answer covers
// many names), then for the name.
func (r *Reviewer) Check(ctx context.Context, user drv1.Requester, needs []Need) error {
	who := user.Encode()
	broad := func(n Need) reviewKey {
		return reviewKey{user: who, verb: n.Verb, group: n.Group, resource: n.Resource, sub: n.Subresource, namespace: n.Namespace}
	}
	got := map[reviewKey]answer{}
	asked := 0
	for start := 0; start < len(needs); {
		// The next needs whose broad questions are at most maxParallel new ones.
		var batch []reviewKey
		end := start
		for ; end < len(needs); end++ {
			k := broad(needs[end])
			if _, ok := got[k]; ok || slices.Contains(batch, k) {
				continue
			}
			if len(batch) == maxParallel {
				break
			}
			batch = append(batch, k)
		}
		var named []reviewKey
		n, err := r.answers(ctx, user, batch, got)
		if err != nil {
			return err
		}
		asked += n
		for _, need := range needs[start:end] {
			if !got[broad(need)].allowed && need.named() {
				k := broad(need)
				k.name = need.Name
				named = append(named, k)
			}
		}
		if n, err = r.answers(ctx, user, named, got); err != nil {
			return err
		}
		if asked += n; asked > MaxReviews {
			return &RefusedError{Msg: fmt.Sprintf("checking the rights of user %q takes more than %d SubjectAccessReviews: the run needs too many distinct rights (split it, or give the plan a serviceAccountName)",
				user.Username, MaxReviews)}
		}
		for _, need := range needs[start:end] {
			a := got[broad(need)]
			if !a.allowed && need.named() {
				k := broad(need)
				k.name = need.Name
				a = got[k]
			}
			if !a.allowed {
				return &DeniedError{User: user.Username, Need: need, Reason: a.reason}
			}
		}
		start = end
	}
	return nil
}

// answers adds to got an answer for every key: a cached one younger than the TTL, or a fresh one,
// asking at most maxParallel at once. It returns how many it asked.
func (r *Reviewer) answers(ctx context.Context, user drv1.Requester, keys []reviewKey, got map[reviewKey]answer) (int, error) {
	now := r.now()
	var todo []reviewKey
	r.kept.mu.Lock()
	for _, k := range keys {
		if _, done := got[k]; done {
			continue
		}
		if a, ok := r.kept.cache[k]; ok && now.Sub(a.at) < r.ttl {
			got[k] = a
			continue
		}
		got[k] = answer{} // asked below
		todo = append(todo, k)
	}
	r.kept.mu.Unlock()
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
			return 0, errs[i]
		}
		got[k] = fresh[i]
	}
	return len(todo), nil
}

func (r *Reviewer) observe(allowed bool, err error) {
	if r.Observe != nil {
		r.Observe(allowed, err)
	}
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
		r.observe(false, err)
		return answer{}, fmt.Errorf("checking the rights of user %q: %w", user.Username, err)
	}
	a := answer{allowed: got.Status.Allowed && !got.Status.Denied, reason: got.Status.Reason, at: r.now()}
	r.observe(a.allowed, nil)
	if !a.allowed {
		return a, nil // a denial is not kept: a right granted since is seen at once
	}
	r.kept.mu.Lock()
	defer r.kept.mu.Unlock()
	if len(r.kept.cache) >= maxCached {
		// The expired answers go; if too few have, arbitrary ones until a quarter is free.
		for key, old := range r.kept.cache {
			if a.at.Sub(old.at) >= r.ttl {
				delete(r.kept.cache, key)
			}
		}
		for key := range r.kept.cache {
			if len(r.kept.cache) < maxCached*3/4 {
				break
			}
			delete(r.kept.cache, key)
		}
	}
	r.kept.cache[k] = a
	return a, nil
}
