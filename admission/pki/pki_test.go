package pki

import (
	"crypto/tls"
	"crypto/x509"
	"slices"
	"testing"
	"time"
)

func TestServingCert(t *testing.T) {
	ca, err := NewAuthority("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	other, err := NewAuthority("other-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(other.Cert)

	tests := []struct {
		name      string
		hosts     []string
		wantIPs   []string
		wantDNS   []string
		verifyFor []string
	}{
		{"apiserver", []string{"127.0.0.1", "::1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, []string{"127.0.0.1", "::1", "10.0.0.1"},
			[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			[]string{"127.0.0.1", "localhost", "kubernetes.default.svc"}},
		{"webhook", []string{"127.0.0.1"}, []string{"127.0.0.1"}, nil, []string{"127.0.0.1"}},
		{"service name", []string{"drplan-webhook.drplan-system.svc"}, nil, []string{"drplan-webhook.drplan-system.svc"}, []string{"drplan-webhook.drplan-system.svc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.ServingCert(tt.hosts, 24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Fatalf("cert and key do not pair: %v", err)
			}
			c, err := ParseCert(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.wantIPs) {
				t.Errorf("IP SANs = %v, want %v", ips, tt.wantIPs)
			}
			if !slices.Equal(c.DNSNames, tt.wantDNS) {
				t.Errorf("DNS SANs = %v, want %v", c.DNSNames, tt.wantDNS)
			}
			for _, host := range tt.verifyFor {
				opts := x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
				if _, err := c.Verify(opts); err != nil {
					t.Errorf("verify for %s: %v", host, err)
				}
				opts.Roots = otherRoots
				if _, err := c.Verify(opts); err == nil {
					t.Errorf("verify for %s against another CA: want an error", host)
				}
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: "example.com"}); err == nil {
				t.Error("verify for a host not in the SANs: want an error")
			}
		})
	}
	if _, _, err := ca.ServingCert(nil, time.Hour); err == nil {
		t.Error("ServingCert(nil): want an error")
	}

	// A leaf never outlives its CA.
	leaf, _, err := ca.ServingCert([]string{"x"}, 1000*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := ParseCert(leaf); c.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("leaf expires %v, after its CA (%v)", c.NotAfter, ca.Cert.NotAfter)
	}
}
