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
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// DefaultWaitTimeout is how long a waitFor waits when it names no timeout.
const DefaultWaitTimeout = 5 * time.Minute

// WaitFor waits until cond, evaluated over the object ref names (and params), is true. It watches
// that one object through an informer, evaluating on every change: no polling. progress is told
// the latest value while it waits. It fails on timeout with the last value seen. An API server
// that cannot be reached meanwhile only delays it: the informer lists and watches again, and
// looking up the object's resource retries transient errors, within the timeout.
func (f *ClientFactory) WaitFor(ctx context.Context, serviceAccount string, ref drv1.ResourceReference,
	cond *rules.Program, params map[string]any, timeout time.Duration, progress func(string)) (*unstructured.Unstructured, error) {
	if timeout <= 0 {
		timeout = DefaultWaitTimeout
	}
	type found struct {
		client   dynamic.Interface
		resource schema.GroupVersionResource
	}
	got, err := callAPI(ctx, f.apiCalls(timeout), false, func(context.Context) (found, error) {
		client, resource, err := f.resourceOf(serviceAccount, ref)
		return found{client, resource}, err
	})
	if err != nil {
		return nil, err
	}
	client, resource := got.client, got.resource
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w := &waiter{cond: cond, params: params, progress: progress, last: "the object was not seen yet", done: make(chan struct{})}
	informer := dynamicinformer.NewFilteredDynamicInformer(client, resource, ref.Namespace, 0, cache.Indexers{},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ref.Name).String()
		}).Informer()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.evaluate(ctx, obj) },
		UpdateFunc: func(_, obj any) { w.evaluate(ctx, obj) },
	}); err != nil {
		return nil, err
	}
	go informer.RunWithContext(ctx)
	return w.result(ctx, timeout)
}

// resourceOf returns the client acting as serviceAccount and the resource of ref's kind.
func (f *ClientFactory) resourceOf(serviceAccount string, ref drv1.ResourceReference) (dynamic.Interface, schema.GroupVersionResource, error) {
	client, mapper, err := f.Clients(serviceAccount)
	if err != nil {
		return nil, schema.GroupVersionResource{}, err
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, schema.GroupVersionResource{}, fmt.Errorf("waitFor: %w", err)
	}
	mapping, err := mapper.RESTMapping(gv.WithKind(ref.Kind).GroupKind(), gv.Version)
	if err != nil {
		return nil, schema.GroupVersionResource{}, fmt.Errorf("waitFor: %w", err)
	}
	return client, mapping.Resource, nil
}

// waiter is one WaitFor's state: the last value seen, and the object once cond is true.
type waiter struct {
	cond     *rules.Program
	params   map[string]any
	progress func(string)

	mu    sync.Mutex
	last  string
	final *unstructured.Unstructured
	once  sync.Once
	done  chan struct{} // closed once cond is true
}

// evaluate judges one version of the object.
func (w *waiter) evaluate(ctx context.Context, obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	ok, err := w.cond.Eval(ctx, map[string]any{rules.VarObject: u.UnstructuredContent(), rules.VarParams: w.params})
	w.mu.Lock()
	if err != nil {
		w.last = "cannot be evaluated yet: " + err.Error()
	} else {
		w.last = fmt.Sprint(ok)
	}
	msg := w.last
	w.mu.Unlock()
	if ok && err == nil {
		w.once.Do(func() {
			w.mu.Lock()
			w.final = u
			w.mu.Unlock()
			close(w.done)
		})
		return
	}
	w.progress(fmt.Sprintf("Waiting for %q: %s", w.cond.Expression, msg))
}

// result waits until cond is true or ctx ends (timeout: a WaitTimeout with the last value seen).
func (w *waiter) result(ctx context.Context, timeout time.Duration) (*unstructured.Unstructured, error) {
	select {
	case <-w.done:
	case <-ctx.Done():
		select {
		case <-w.done: // true at the last moment
		default:
			w.mu.Lock()
			defer w.mu.Unlock()
			if ctx.Err() == context.DeadlineExceeded {
				return nil, &WaitTimeout{fmt.Sprintf("waitFor %q still not true after %s (last: %s)", w.cond.Expression, timeout, w.last)}
			}
			return nil, ctx.Err()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.final, nil
}

// WaitTimeout is WaitFor's error when the condition is still not true at the timeout.
type WaitTimeout struct{ Message string }

func (e *WaitTimeout) Error() string { return e.Message }
