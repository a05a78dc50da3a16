package actions

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// DefaultWaitTimeout is how long a waitFor waits when it names no timeout.
const DefaultWaitTimeout = 5 * time.Minute

// WaitFor waits until cond, evaluated over the object ref names (and params), is true. It watches
// that one object through an informer, evaluating on every change: no polling. progress is told
// the latest value while it waits. It fails on timeout with the last value seen.
func (f *ClientFactory) WaitFor(ctx context.Context, serviceAccount string, ref drv1.ResourceReference,
	cond *rules.Program, params map[string]any, timeout time.Duration, progress func(string)) (*unstructured.Unstructured, error) {
	if timeout <= 0 {
		timeout = DefaultWaitTimeout
	}
	client, mapper, err := f.Clients(serviceAccount)
	if err != nil {
		return nil, err
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("waitFor: %w", err)
	}
	mapping, err := mapper.RESTMapping(gv.WithKind(ref.Kind).GroupKind(), gv.Version)
	if err != nil {
		return nil, fmt.Errorf("waitFor: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var (
		mu    sync.Mutex
		last  = "the object was not seen yet"
		final *unstructured.Unstructured
	)
	done := make(chan struct{})
	var once sync.Once
	evaluate := func(obj any) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		ok, err := cond.Eval(ctx, map[string]any{rules.VarObject: u.UnstructuredContent(), rules.VarParams: params})
		mu.Lock()
		switch {
		case err != nil:
			last = "cannot be evaluated yet: " + err.Error()
		default:
			last = fmt.Sprint(ok)
		}
		msg := last
		mu.Unlock()
		if ok && err == nil {
			once.Do(func() {
				mu.Lock()
				final = u
				mu.Unlock()
				close(done)
			})
			return
		}
		progress(fmt.Sprintf("Waiting for %q: %s", cond.Expression, msg))
	}
	informer := dynamicinformer.NewFilteredDynamicInformer(client, mapping.Resource, ref.Namespace, 0, cache.Indexers{},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ref.Name).String()
		}).Informer()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    evaluate,
		UpdateFunc: func(_, obj any) { evaluate(obj) },
	}); err != nil {
		return nil, err
	}
	go informer.RunWithContext(ctx)
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done: // true at the last moment
		default:
			mu.Lock()
			defer mu.Unlock()
			if ctx.Err() == context.DeadlineExceeded {
				return nil, &WaitTimeout{fmt.Sprintf("waitFor %q still not true after %s (last: %s)", cond.Expression, timeout, last)}
			}
			return nil, ctx.Err()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return final, nil
}

// WaitTimeout is WaitFor's error when the condition is still not true at the timeout.
type WaitTimeout struct{ Message string }

func (e *WaitTimeout) Error() string { return e.Message }
