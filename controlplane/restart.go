package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// KillAPIServer kills kube-apiserver at once (SIGKILL, as a crash or an OOM kill would), leaving
// etcd and every other component running: a test plays an API server outage with it, and ends
// it with RestartAPIServer.
func (cp *ControlPlane) KillAPIServer() error {
	b, err := os.ReadFile(pidPath(cp.Dir, procAPIServer))
	if err != nil {
		return fmt.Errorf("kill kube-apiserver: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !isOurs(pid, procAPIServer, cp.Dir) {
		return fmt.Errorf("kill kube-apiserver: pid file %q names no kube-apiserver of %s", b, cp.Dir)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill kube-apiserver (pid %d): %w", pid, err)
	}
	if !waitGone(pid, killTimeout) {
		return fmt.Errorf("kill kube-apiserver: pid %d still running after SIGKILL", pid)
	}
	return nil
}

// RestartAPIServer starts kube-apiserver again, with the flags it was first started with (same
// address, certificates and etcd), and returns once its /readyz answers OK.
func (cp *ControlPlane) RestartAPIServer(ctx context.Context) error {
	if cp.apiServerArgs == nil {
		return errors.New("restart kube-apiserver: it was never started by this control plane")
	}
	p, err := startProcess(cp.Dir, procAPIServer, cp.Binaries.KubeAPIServer, cp.apiServerArgs)
	if err != nil {
		return err
	}
	return waitReady(ctx, p, apiServerReadyTimeout, cp.apiServerReady)
}
