package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

const certValidity = 10 * 365 * 24 * time.Hour

// apiServerHosts are the names the kube-apiserver serving certificate is valid for.
var apiServerHosts = []string{
	"127.0.0.1", "::1", "localhost", "10.0.0.1",
	"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
}

// frontProxyUser is the only client-certificate name kube-apiserver accepts request headers
// (X-Remote-User...) from; it is what kube-apiserver presents to aggregated API servers.
const frontProxyUser = "front-proxy-client"

// authority is a certificate authority able to sign leaf certificates.
type authority struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// newAuthority creates a self-signed ECDSA P-256 CA.
func newAuthority(commonName string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	return authorityFromDER(der, key)
}

// parseAuthority loads a CA from PEM.
func parseAuthority(certPEM, keyPEM []byte) (*authority, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil {
		return nil, errors.New("parse CA certificate: no PEM block")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("parse CA key: no PEM block")
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA key: %w", err)
	}
	return authorityFromDER(cb.Bytes, key)
}

func authorityFromDER(der []byte, key *ecdsa.PrivateKey) (*authority, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key, certPEM: encodeCert(der), keyPEM: keyPEM}, nil
}

// servingCert issues a server certificate for hosts (IP addresses and DNS names).
func (ca *authority) servingCert(hosts []string) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("issue serving certificate: no hosts")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl)
}

// clientCert issues a client certificate; Kubernetes reads the user from CN and groups from O.
func (ca *authority) clientCert(user string, groups ...string) (certPEM, keyPEM []byte, err error) {
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (ca *authority) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key for %q: %w", tmpl.Subject.CommonName, err)
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(certValidity)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// serviceAccountKey returns a fresh signing key for service-account tokens and its public half.
func serviceAccountKey() (keyPEM, pubPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate service-account key: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("encode service-account public key: %w", err)
	}
	return keyPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return n, nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
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
	}
}

// writePKI generates every certificate and key of a fresh control plane into files.
func writePKI(files pkiFiles) (*authority, error) {
	ca, err := newAuthority("drplan-local-ca")
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
	add(files.caCert, files.caKey, ca.certPEM, ca.keyPEM, nil)
	c, k, err := ca.servingCert(apiServerHosts)
	add(files.apiServerCert, files.apiServerKey, c, k, err)
	c, k, err = ca.clientCert("drplan-admin", "system:masters")
	add(files.adminCert, files.adminKey, c, k, err)
	// With --use-service-account-credentials=false every controller runs as this identity, so it
	// needs the full rights the per-controller service accounts would have had.
	c, k, err = ca.clientCert("system:kube-controller-manager", "system:masters")
	add(files.controllerCert, files.controllerKey, c, k, err)
	c, k, err = ca.servingCert([]string{"127.0.0.1", "localhost"})
	add(files.controllerServing, files.controllerSKey, c, k, err)
	c, k, err = ca.clientCert(frontProxyUser)
	add(files.frontProxyCert, files.frontProxyKey, c, k, err)
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
