package admission

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// Serve runs the webhook's HTTPS server on ln until ctx ends: the webhook at Path and /healthz.
// getCert is asked at every handshake, so a rotated certificate is served at once.
func Serve(ctx context.Context, ln net.Listener, webhook http.Handler, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) error {
	mux := http.NewServeMux()
	mux.Handle(Path, webhook)
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
	klog.FromContext(ctx).Info("Serving the admission webhook", "address", ln.Addr().String(), "path", Path)
	err := srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return err
}

// WebhookName is the name of our webhook inside its ValidatingWebhookConfiguration.
const WebhookName = "validate." + drv1.GroupName

// SystemNamespaces are never sent to the webhook: a webhook that is down must not block them.
var SystemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// WebhookConfiguration is the registration of the webhook: CREATE and UPDATE of our three kinds,
// failurePolicy Fail (nothing invalid slips in while the webhook is down; the controller's own
// checks remain), no side effects (so --dry-run=server is answered), a short timeout, and the
// system namespaces left out. client says where the API server reaches it: a URL with the CA
// bundle in local mode, a Service in a cluster.
func WebhookConfiguration(name string, client admissionregistrationv1.WebhookClientConfig) *admissionregistrationv1.ValidatingWebhookConfiguration {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	scope := admissionregistrationv1.NamespacedScope
	timeout := int32(5)
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "drplan-controller"}},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         WebhookName,
			ClientConfig: client,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{drv1.GroupName},
					APIVersions: []string{drv1.SchemeGroupVersion.Version},
					Resources:   []string{"drworkflows", "drplans", "drplanexecutions"},
					Scope:       &scope,
				},
			}},
			FailurePolicy: &fail,
			MatchPolicy:   &equivalent,
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: SystemNamespaces,
			}}},
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
}

// Register creates the webhook configuration, or replaces an existing one of that name.
func Register(ctx context.Context, client kubernetes.Interface, cfg *admissionregistrationv1.ValidatingWebhookConfiguration) error {
	configs := client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	for {
		cur, err := configs.Get(ctx, cfg.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = configs.Create(ctx, cfg, metav1.CreateOptions{})
		case err == nil:
			next := cfg.DeepCopy()
			next.ResourceVersion = cur.ResourceVersion
			_, err = configs.Update(ctx, next, metav1.UpdateOptions{})
		}
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("register ValidatingWebhookConfiguration %s: %w", cfg.Name, err)
		}
		return nil
	}
}

// Unregister deletes the webhook configuration; one that is gone already is fine.
func Unregister(ctx context.Context, client kubernetes.Interface, name string) error {
	err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("unregister ValidatingWebhookConfiguration %s: %w", name, err)
	}
	return nil
}
