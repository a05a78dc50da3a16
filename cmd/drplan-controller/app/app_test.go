package app

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
)

// TestRunReturnsStartErrors: a start that fails after the metrics server is up (here the
// webhook's, with no API server to ask who the controller is) returns its error and stops that
// server, rather than hanging the process on it.
func TestRunReturnsStartErrors(t *testing.T) {
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		return l
	}
	dead := listen()
	apiServer := "http://" + dead.Addr().String()
	require.NoError(t, dead.Close())
	metrics := listen()
	done := make(chan error, 1)
	go func() {
		done <- RunWithConfig(context.Background(), &rest.Config{Host: apiServer, Timeout: 5 * time.Second}, Options{
			MetricsListener: metrics,
			Webhook:         &WebhookOptions{Listener: listen(), Namespace: "drplan-system", SecretName: "tls", ServiceName: "svc", ConfigName: "cfg"},
		})
	}()
	select {
	case err := <-done:
		require.ErrorContains(t, err, "asking the API server who this controller is")
	case <-time.After(30 * time.Second):
		t.Fatal("RunWithConfig did not return after its start failed")
	}
	_, err := net.Dial("tcp", metrics.Addr().String())
	require.Error(t, err, "the metrics server is stopped")
}
