package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bkbcs/drplan-controller/admission/pki"
)

const certValidity = 10 * 365 * 24 * time.Hour

// apiServerHosts are the names the kube-apiserver serving certificate is valid for.
var apiServerHosts = []string{
	"127.0.0.1", "::1", "localhost", "10.0.0.1", NodeGateway,
	"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
}

// frontProxyUser is the only client-certificate name kube-apiserver accepts request headers
// (X-Remote-User...) from; it is what kube-apiserver presents to aggregated API servers.
const frontProxyUser = "front-proxy-client"

// serviceAccountKey returns a fresh signing key for service-account tokens and its public half.
func serviceAccountKey() (keyPEM, pubPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate service-account key: %w", err)
	}
	keyPEM, err = pki.EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("encode service-account public key: %w", err)
	}
	return keyPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// pkiFiles are the paths of the PEM files a control plane uses, all under one directory.
type pkiFiles struct {
	dir                                  string
	caCert, caKey                        string
	apiServerCert, apiServerKey          string
	adminCert, adminKey                  string
	controllerCert, controllerKey        string // kube-controller-manager's client identity
	controllerServing, controllerSKey    string // kube-controller-manager's serving certificate
	serviceAccountKey, serviceAccountPub string
	frontProxyCert, frontProxyKey        string // kube-apiserver's identity towards aggregated APIs
	// The node mode's identities.
	schedulerCert, schedulerKey               string // kube-scheduler's client identity
	kubeletClientCert, kubeletClientKey       string // the kubelet's client identity
	kubeletServingCert, kubeletServingKey     string // the kubelet's serving certificate
	apiServerKubeletCert, apiServerKubeletKey string // kube-apiserver's identity towards the kubelet
}

func newPKIFiles(dir string) pkiFiles {
	p := func(name string) string { return filepath.Join(dir, name) }
	return pkiFiles{
		dir:    dir,
		caCert: p("ca.crt"), caKey: p("ca.key"),
		apiServerCert: p("apiserver.crt"), apiServerKey: p("apiserver.key"),
		adminCert: p("admin.crt"), adminKey: p("admin.key"),
		controllerCert: p("controller-manager.crt"), controllerKey: p("controller-manager.key"),
		controllerServing: p("controller-manager-serving.crt"), controllerSKey: p("controller-manager-serving.key"),
		serviceAccountKey: p("sa.key"), serviceAccountPub: p("sa.pub"),
		frontProxyCert: p("front-proxy-client.crt"), frontProxyKey: p("front-proxy-client.key"),
		schedulerCert: p("scheduler.crt"), schedulerKey: p("scheduler.key"),
		kubeletClientCert: p("kubelet-client.crt"), kubeletClientKey: p("kubelet-client.key"),
		kubeletServingCert: p("kubelet-serving.crt"), kubeletServingKey: p("kubelet-serving.key"),
		apiServerKubeletCert: p("apiserver-kubelet-client.crt"), apiServerKubeletKey: p("apiserver-kubelet-client.key"),
	}
}

// writePKI generates every certificate and key of a fresh control plane into files.
func writePKI(files pkiFiles) (*pki.Authority, error) {
	ca, err := pki.NewAuthority("drplan-local-ca", certValidity)
	if err != nil {
		return nil, err
	}
	type pair struct {
		certPath, keyPath string
		cert, key         []byte
		err               error
	}
	var pairs []pair
	add := func(certPath, keyPath string, cert, key []byte, err error) {
		pairs = append(pairs, pair{certPath, keyPath, cert, key, err})
	}
	add(files.caCert, files.caKey, ca.CertPEM, ca.KeyPEM, nil)
	c, k, err := ca.ServingCert(apiServerHosts, certValidity)
	add(files.apiServerCert, files.apiServerKey, c, k, err)
	c, k, err = ca.ClientCert("drplan-admin", certValidity, "system:masters")
	add(files.adminCert, files.adminKey, c, k, err)
	// With --use-service-account-credentials=false every controller runs as this identity, so it
	// needs the full rights the per-controller service accounts would have had.
	c, k, err = ca.ClientCert("system:kube-controller-manager", certValidity, "system:masters")
	add(files.controllerCert, files.controllerKey, c, k, err)
	c, k, err = ca.ServingCert([]string{"127.0.0.1", "localhost"}, certValidity)
	add(files.controllerServing, files.controllerSKey, c, k, err)
	c, k, err = ca.ClientCert(frontProxyUser, certValidity)
	add(files.frontProxyCert, files.frontProxyKey, c, k, err)
	// The node mode's components. Like kube-controller-manager above, they are masters: this is
	// a single-user development cluster, and RBAC for them would only restate Kubernetes' own.
	c, k, err = ca.ClientCert("system:kube-scheduler", certValidity, "system:masters")
	add(files.schedulerCert, files.schedulerKey, c, k, err)
	c, k, err = ca.ClientCert("system:node:"+NodeName, certValidity, "system:nodes", "system:masters")
	add(files.kubeletClientCert, files.kubeletClientKey, c, k, err)
	c, k, err = ca.ServingCert([]string{NodeGateway, NodeName}, certValidity)
	add(files.kubeletServingCert, files.kubeletServingKey, c, k, err)
	c, k, err = ca.ClientCert("kube-apiserver-kubelet-client", certValidity, "system:masters")
	add(files.apiServerKubeletCert, files.apiServerKubeletKey, c, k, err)
	k, c, err = serviceAccountKey()
	add(files.serviceAccountPub, files.serviceAccountKey, c, k, err)

	if err := os.MkdirAll(files.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki dir: %w", err)
	}
	for _, p := range pairs {
		if p.err != nil {
			return nil, p.err
		}
		if err := os.WriteFile(p.certPath, p.cert, 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", p.certPath, err)
		}
		if err := os.WriteFile(p.keyPath, p.key, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", p.keyPath, err)
		}
	}
	return ca, nil
}
