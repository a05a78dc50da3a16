package actions

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager names the controller in managedFields, in every write it makes: its own objects'
// statuses and annotations, and the objects actions create, apply (server-side apply's field
// manager, docs/execution.md) or patch.
const FieldManager = "drplan-controller"

// ClientFactory hands out the API clients actions use: one dynamic client per identity an action
// runs as, and one discovery-backed RESTMapper shared by all of them. It is safe for concurrent
// use.
type ClientFactory struct {
	config *rest.Config
	mapper *rediscoveringMapper
	// readyz asks the API server's /readyz (apiServerReady); nil never asks.
	readyz rest.Interface

	// retryTimeout bounds the retries of transient errors by the API calls of an action without
	// a timeout of its own (SetAPIRetryTimeout).
	retryTimeout time.Duration
	// jobTimeout bounds a Job action without a timeout of its own (SetJobTimeout).
	jobTimeout time.Duration

	mu      sync.Mutex
	clients map[string]dynamic.Interface    // by ServiceAccount ("" = the controller itself)
	typed   map[string]kubernetes.Interface // likewise
}

// SetAPIRetryTimeout sets how long the API calls of an action without a timeout of its own retry
// transient errors (--api-retry-timeout); not positive means DefaultAPIRetryTimeout. Call it
// before the factory is used.
func (f *ClientFactory) SetAPIRetryTimeout(d time.Duration) {
	f.retryTimeout = d
}

// SetJobTimeout sets how long a Job action without a timeout of its own may run
// (--default-job-timeout); not positive means DefaultJobTimeout. Call it before the factory is
// used.
func (f *ClientFactory) SetJobTimeout(d time.Duration) {
	f.jobTimeout = d
}

// JobTimeout is how long a Job action without a timeout of its own may run: DefaultJobTimeout
// unless set, and for a nil factory.
func (f *ClientFactory) JobTimeout() time.Duration {
	if f == nil || f.jobTimeout <= 0 {
		return DefaultJobTimeout
	}
	return f.jobTimeout
}

// APIRetryTimeout is how long the API calls of an action without a timeout of its own retry
// transient errors: DefaultAPIRetryTimeout unless set, and for a nil factory.
func (f *ClientFactory) APIRetryTimeout() time.Duration {
	if f == nil || f.retryTimeout <= 0 {
		return DefaultAPIRetryTimeout
	}
	return f.retryTimeout
}

// NewClientFactory returns a factory whose clients talk to the API server of config as the
// controller's own identity, or impersonate a ServiceAccount. No request is made until a client
// is used.
func NewClientFactory(config *rest.Config) (*ClientFactory, error) {
	config = rest.CopyConfig(config)
	disc, err := discovery.NewDiscoveryClientForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	return &ClientFactory{
		config:  config,
		mapper:  &rediscoveringMapper{DeferredDiscoveryRESTMapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))},
		readyz:  disc.RESTClient(),
		clients: map[string]dynamic.Interface{},
		typed:   map[string]kubernetes.Interface{},
	}, nil
}

// Clients returns the dynamic client acting as serviceAccount ("namespace/name"; "" is the
// controller's own identity) and the shared RESTMapper.
func (f *ClientFactory) Clients(serviceAccount string) (dynamic.Interface, meta.RESTMapper, error) {
	client, err := f.Dynamic(serviceAccount)
	if err != nil {
		return nil, nil, err
	}
	return client, f.mapper, nil
}

// Dynamic returns the dynamic client acting as serviceAccount ("namespace/name"; "" is the
// controller's own identity). Clients are made once per identity and reused.
func (f *ClientFactory) Dynamic(serviceAccount string) (dynamic.Interface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clients[serviceAccount]; ok {
		return c, nil
	}
	config, err := f.configFor(serviceAccount)
	if err != nil {
		return nil, err
	}
	c, err := dynamic.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("dynamic client for %s: %w", actingAs(serviceAccount), err)
	}
	f.clients[serviceAccount] = c
	return c, nil
}

// Kubernetes returns the typed client acting as serviceAccount ("namespace/name"; "" is the
// controller's own identity), made once per identity: the engine reads Secret-sourced
// parameters with it.
func (f *ClientFactory) Kubernetes(serviceAccount string) (kubernetes.Interface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.typed[serviceAccount]; ok {
		return c, nil
	}
	config, err := f.configFor(serviceAccount)
	if err != nil {
		return nil, err
	}
	c, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", actingAs(serviceAccount), err)
	}
	f.typed[serviceAccount] = c
	return c, nil
}

// configFor is the factory's config, impersonating serviceAccount unless it is "".
func (f *ClientFactory) configFor(serviceAccount string) (*rest.Config, error) {
	config := rest.CopyConfig(f.config)
	if serviceAccount != "" {
		user, err := serviceAccountUser(serviceAccount)
		if err != nil {
			return nil, err
		}
		// Only the user name: the API server adds the ServiceAccount's groups itself, and
		// impersonating groups explicitly would need a broader impersonate permission.
		config.Impersonate = rest.ImpersonationConfig{UserName: user}
	}
	return config, nil
}

// apiServerReady reports whether the API server's /readyz answers OK (it is public to every
// client). A server that cannot be asked is not ready.
func (f *ClientFactory) apiServerReady(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return f.readyz.Get().AbsPath("/readyz").Do(ctx).Error() == nil
}

// RESTMapper returns the shared, discovery-backed RESTMapper. A kind it does not know makes it
// rediscover once, so kinds whose CRD was installed after start-up are found.
func (f *ClientFactory) RESTMapper() meta.RESTMapper {
	return f.mapper
}

// serviceAccountUser turns "namespace/name" into the ServiceAccount's user name.
func serviceAccountUser(serviceAccount string) (string, error) {
	ns, name, ok := strings.Cut(serviceAccount, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("serviceAccount %q: want namespace/name", serviceAccount)
	}
	return "system:serviceaccount:" + ns + ":" + name, nil
}

// actingAs names who an API call is made as, for error messages.
func actingAs(serviceAccount string) string {
	if serviceAccount == "" {
		return "the controller's own identity"
	}
	return "ServiceAccount " + serviceAccount
}

// rediscoveringMapper is a DeferredDiscoveryRESTMapper that, when a kind or resource is not
// found, drops its cached discovery and looks once more. The deferred mapper only does that while
// its cache is not yet filled, so on its own it would never see a CRD installed after its first
// use.
type rediscoveringMapper struct {
	*restmapper.DeferredDiscoveryRESTMapper
}

var _ meta.ResettableRESTMapper = (*rediscoveringMapper)(nil)

// againIfNoMatch calls lookup, and once more after a reset of the discovery cache if the answer
// was "no match".
func againIfNoMatch[T any](m *rediscoveringMapper, lookup func() (T, error)) (T, error) {
	v, err := lookup()
	if err != nil && meta.IsNoMatchError(err) {
		m.Reset()
		v, err = lookup()
	}
	return v, err
}

func (m *rediscoveringMapper) KindFor(resource schema.GroupVersionResource) (schema.GroupVersionKind, error) {
	return againIfNoMatch(m, func() (schema.GroupVersionKind, error) {
		return m.DeferredDiscoveryRESTMapper.KindFor(resource)
	})
}

func (m *rediscoveringMapper) KindsFor(resource schema.GroupVersionResource) ([]schema.GroupVersionKind, error) {
	return againIfNoMatch(m, func() ([]schema.GroupVersionKind, error) {
		return m.DeferredDiscoveryRESTMapper.KindsFor(resource)
	})
}

func (m *rediscoveringMapper) ResourceFor(input schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	return againIfNoMatch(m, func() (schema.GroupVersionResource, error) {
		return m.DeferredDiscoveryRESTMapper.ResourceFor(input)
	})
}

func (m *rediscoveringMapper) ResourcesFor(input schema.GroupVersionResource) ([]schema.GroupVersionResource, error) {
	return againIfNoMatch(m, func() ([]schema.GroupVersionResource, error) {
		return m.DeferredDiscoveryRESTMapper.ResourcesFor(input)
	})
}

func (m *rediscoveringMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	return againIfNoMatch(m, func() (*meta.RESTMapping, error) {
		return m.DeferredDiscoveryRESTMapper.RESTMapping(gk, versions...)
	})
}

func (m *rediscoveringMapper) RESTMappings(gk schema.GroupKind, versions ...string) ([]*meta.RESTMapping, error) {
	return againIfNoMatch(m, func() ([]*meta.RESTMapping, error) {
		return m.DeferredDiscoveryRESTMapper.RESTMappings(gk, versions...)
	})
}
