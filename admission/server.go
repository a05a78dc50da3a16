package admission

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// MaxConcurrentReviews bounds the reviews each webhook works on at once; the others wait for a
// turn while their caller does (the API server gives up after the webhook's timeout), so that a
// flood of reviews costs the process a bounded amount of memory and CPU.
const MaxConcurrentReviews = 32

// oneAtATime lets at most n requests into h at once; a request whose caller goes away while it
// waits is answered 503 without being read.
func oneAtATime(h http.Handler, n int) http.Handler {
	turns := make(chan struct{}, n)
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		select {
		case turns <- struct{}{}:
		case <-req.Context().Done():
			http.Error(rw, "the webhook is busy: retry", http.StatusServiceUnavailable)
			return
		}
		defer func() { <-turns }()
		h.ServeHTTP(rw, req)
	})
}

// Serve runs the webhook's HTTPS server on ln until ctx ends: the validating webhook at Path,
// the mutating one at MutatePath, and /healthz. getCert is asked at every handshake, so a
// rotated certificate is served at once.
func Serve(ctx context.Context, ln net.Listener, validate, mutate http.Handler, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) error {
	mux := http.NewServeMux()
	mux.Handle(Path, oneAtATime(validate, MaxConcurrentReviews))
	mux.Handle(MutatePath, oneAtATime(mutate, MaxConcurrentReviews))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCert},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil {
			klog.FromContext(ctx).Error(err, "Stopping the webhook server")
		}
	}()
	klog.FromContext(ctx).Info("Serving the admission webhooks", "address", ln.Addr().String(), "validate", Path, "mutate", MutatePath)
	err := srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return err
}

// Names of our webhooks inside their configurations.
const (
	WebhookName         = "validate." + drv1.GroupName
	StatusWebhookName   = "validate-status." + drv1.GroupName
	MutatingWebhookName = "mutate." + drv1.GroupName
)

// SystemNamespaces are never sent to the webhooks: a webhook that is down must not block them.
// (Executions there get no requester recorded, so they never run.)
var SystemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// shape is what both registrations share: failurePolicy Fail (nothing unchecked or unrecorded
// slips in while the webhook is down), no side effects (so --dry-run=server is answered), a
// short timeout, Equivalent matching, and the system namespaces left out.
type shape struct {
	fail       admissionregistrationv1.FailurePolicyType
	none       admissionregistrationv1.SideEffectClass
	equivalent admissionregistrationv1.MatchPolicyType
	scope      admissionregistrationv1.ScopeType
	timeout    int32
	namespaces *metav1.LabelSelector
}

func newShape() *shape {
	return &shape{fail: admissionregistrationv1.Fail, none: admissionregistrationv1.SideEffectClassNone,
		equivalent: admissionregistrationv1.Equivalent, scope: admissionregistrationv1.NamespacedScope, timeout: 5,
		namespaces: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: SystemNamespaces,
		}}}}
}

// rule matches CREATE and UPDATE of resources of our group.
func (s *shape) rule(resources ...string) []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{drv1.GroupName}, APIVersions: []string{drv1.SchemeGroupVersion.Version},
			Resources: resources, Scope: &s.scope},
	}}
}

// at is client calling path: appended to a URL, or the Service's path.
func at(client admissionregistrationv1.WebhookClientConfig, path string) admissionregistrationv1.WebhookClientConfig {
	client = *client.DeepCopy()
	switch {
	case client.URL != nil:
		u := strings.TrimSuffix(*client.URL, "/") + path
		client.URL = &u
	case client.Service != nil:
		client.Service.Path = &path
	}
	return client
}

// WebhookConfiguration is the registration of the validating webhook: CREATE and UPDATE of our
// three kinds and DELETE of executions, and (a second entry, StatusWebhookName) of their status, which only the
// controller writes; both in the shape both registrations share. client says where the API
// server reaches the controller (a URL with the CA bundle in local mode, a Service in a
// cluster), without the path: Path is added.
//
// controller is the controller's own user name. When it is set, the status entry has a
// matchCondition (ControllerMatchCondition) that leaves the controller's own status writes out:
// the API server does not call the webhook for them, so they pass while no webhook endpoint is
// reachable (every replica terminating in a scale-down or a rollout, in the shutdown grace that
// writes the results of the actions in flight). Everyone else's status writes still reach the
// webhook, which refuses them. API servers without matchConditions (before 1.28) drop the
// field: every status write reaches the webhook, as before.
func WebhookConfiguration(name string, client admissionregistrationv1.WebhookClientConfig, controller string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	s := newShape()
	hook := func(name string, resources ...string) admissionregistrationv1.ValidatingWebhook {
		return admissionregistrationv1.ValidatingWebhook{
			Name: name, ClientConfig: at(client, Path), Rules: s.rule(resources...),
			FailurePolicy: &s.fail, MatchPolicy: &s.equivalent, NamespaceSelector: s.namespaces, SideEffects: &s.none,
			TimeoutSeconds: &s.timeout, AdmissionReviewVersions: []string{"v1"},
		}
	}
	status := hook(StatusWebhookName, "drworkflows/status", "drplans/status", "drplanexecutions/status")
	if controller != "" {
		status.MatchConditions = []admissionregistrationv1.MatchCondition{ControllerMatchCondition(controller)}
	}
	main := hook(WebhookName, "drworkflows", "drplans", "drplanexecutions")
	// A deleted execution may be the record of a failover (docs/execution.md).
	del := s.rule("drplanexecutions")[0]
	del.Operations = []admissionregistrationv1.OperationType{admissionregistrationv1.Delete}
	main.Rules = append(main.Rules, del)
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "drplan-controller"}},
		Webhooks:   []admissionregistrationv1.ValidatingWebhook{main, status},
	}
}

// ControllerMatchCondition is the status entry's matchCondition: true (call the webhook) unless
// the request is the controller's. A ServiceAccount's requests always carry its UID, so for a
// ServiceAccount name the condition also wants a UID: impersonating the name alone (without
// Impersonate-Uid) still reaches the webhook, which compares the UID with the one the controller
// learned at start. (The registration cannot know that UID in advance: the chart renders it
// before the ServiceAccount exists.) Other users (make run's certificate user) have no UID:
// the name decides, as in the webhook.
func ControllerMatchCondition(controller string) admissionregistrationv1.MatchCondition {
	expr := fmt.Sprintf("request.userInfo.username == %q", controller)
	if strings.HasPrefix(controller, "system:serviceaccount:") {
		expr += " && request.userInfo.uid != ''"
	}
	return admissionregistrationv1.MatchCondition{Name: "not-the-controller", Expression: "!(" + expr + ")"}
}

// MutatingWebhookConfiguration is the registration of the mutating webhook, which records who
// asks: CREATE and UPDATE of DRPlanExecutions and DRPlans, in the shape both registrations
// share, never reinvoked (nothing another webhook changes alters who asked). client is as for
// WebhookConfiguration; MutatePath is added.
//
// controller, when set, leaves the controller's own writes out, as for the validating status
// entry: the webhook records nothing for them (the controller writes its own records), so the API
// server need not call it.
func MutatingWebhookConfiguration(name string, client admissionregistrationv1.WebhookClientConfig, controller string) *admissionregistrationv1.MutatingWebhookConfiguration {
	s := newShape()
	never := admissionregistrationv1.NeverReinvocationPolicy
	hook := admissionregistrationv1.MutatingWebhook{
		Name: MutatingWebhookName, ClientConfig: at(client, MutatePath),
		Rules:         s.rule("drplans", "drplanexecutions"),
		FailurePolicy: &s.fail, MatchPolicy: &s.equivalent, NamespaceSelector: s.namespaces, SideEffects: &s.none,
		TimeoutSeconds: &s.timeout, AdmissionReviewVersions: []string{"v1"}, ReinvocationPolicy: &never,
	}
	if controller != "" {
		hook.MatchConditions = []admissionregistrationv1.MatchCondition{ControllerMatchCondition(controller)}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "drplan-controller"}},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{hook},
	}
}

// Register creates the webhook configurations, or replaces existing ones of their names; either
// may be nil. The mutating one goes first, so that no create meets the validating webhook
// without its records.
func Register(ctx context.Context, client kubernetes.Interface, v *admissionregistrationv1.ValidatingWebhookConfiguration,
	m *admissionregistrationv1.MutatingWebhookConfiguration) error {
	if m != nil {
		if err := register(ctx, client.AdmissionregistrationV1().MutatingWebhookConfigurations(), m); err != nil {
			return fmt.Errorf("register MutatingWebhookConfiguration %s: %w", m.Name, err)
		}
	}
	if v != nil {
		if err := register(ctx, client.AdmissionregistrationV1().ValidatingWebhookConfigurations(), v); err != nil {
			return fmt.Errorf("register ValidatingWebhookConfiguration %s: %w", v.Name, err)
		}
	}
	return nil
}

// configClient is the typed client of one kind of webhook configuration.
type configClient[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

func register[T interface {
	metav1.Object
	DeepCopy() T
}](ctx context.Context, configs configClient[T], cfg T) error {
	for {
		cur, err := configs.Get(ctx, cfg.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = configs.Create(ctx, cfg, metav1.CreateOptions{})
		case err == nil:
			next := cfg.DeepCopy()
			next.SetResourceVersion(cur.GetResourceVersion())
			_, err = configs.Update(ctx, next, metav1.UpdateOptions{})
		}
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			continue
		}
		return err
	}
}

// Unregister deletes the validating and the mutating configuration of that name; one that is
// gone already is fine.
func Unregister(ctx context.Context, client kubernetes.Interface, name string) error {
	if err := UnregisterValidating(ctx, client, name); err != nil {
		return err
	}
	return UnregisterMutating(ctx, client, name)
}

// UnregisterValidating deletes only the validating configuration of that name.
func UnregisterValidating(ctx context.Context, client kubernetes.Interface, name string) error {
	if err := unregister(ctx, client.AdmissionregistrationV1().ValidatingWebhookConfigurations(), name); err != nil {
		return fmt.Errorf("unregister ValidatingWebhookConfiguration %s: %w", name, err)
	}
	return nil
}

// UnregisterMutating deletes only the mutating configuration of that name.
func UnregisterMutating(ctx context.Context, client kubernetes.Interface, name string) error {
	if err := unregister(ctx, client.AdmissionregistrationV1().MutatingWebhookConfigurations(), name); err != nil {
		return fmt.Errorf("unregister MutatingWebhookConfiguration %s: %w", name, err)
	}
	return nil
}

func unregister[T any](ctx context.Context, configs configClient[T], name string) error {
	if err := configs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}
