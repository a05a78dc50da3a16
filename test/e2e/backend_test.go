package e2e

import (
	"context"
	"io"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSelectBackend(t *testing.T) {
	tests := []struct {
		name, want, err string
	}{
		{name: "", want: "local"},
		{name: "local", want: "local"},
		{name: "kind", want: "kind"},
		{name: "node", want: "node"},
		{name: "minikube", err: `unknown E2E_BACKEND "minikube"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := SelectBackend(tc.name)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, b.Name())
		})
	}
}

// TestKindBackendWithoutDocker: on a machine without Docker (like this project's) the kind
// backend says so at once, instead of failing somewhere in cluster creation.
func TestKindBackendWithoutDocker(t *testing.T) {
	if _, err := exec.LookPath("docker"); err == nil {
		t.Skip("this machine has Docker: E2E_BACKEND=kind can run here")
	}
	_, err := (&kindBackend{}).Start(context.Background(), io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "E2E_BACKEND=kind needs Docker")
}
