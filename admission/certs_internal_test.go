package admission

import (
	"bytes"
	"testing"
	"time"

	"github.com/bkbcs/drplan-controller/admission/pki"
)

func TestMergeBundles(t *testing.T) {
	ca := func(validity time.Duration) []byte {
		a, err := pki.NewAuthority("ca", validity)
		if err != nil {
			t.Fatal(err)
		}
		return a.CertPEM
	}
	oldCA, newCA, expired := ca(time.Hour), ca(time.Hour), ca(-time.Minute)
	tests := []struct {
		name       string
		have, want []byte
		out        []byte
	}{
		{"first publication", nil, newCA, newCA},
		{"a rotation keeps the CA still valid", oldCA, newCA, append(bytes.Clone(newCA), oldCA...)},
		{"a stale replica never drops the newer CA", append(bytes.Clone(newCA), oldCA...), oldCA, append(bytes.Clone(oldCA), newCA...)},
		{"expired CAs go", append(bytes.Clone(expired), oldCA...), oldCA, oldCA},
		{"nothing new", newCA, newCA, newCA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mergeBundles(tc.have, tc.want); !bytes.Equal(got, tc.out) {
				t.Errorf("mergeBundles = %d bytes, want %d", len(got), len(tc.out))
			}
		})
	}
}
