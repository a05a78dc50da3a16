// Package e2e is the end-to-end suite. It runs unchanged on every backend; E2E_BACKEND picks one:
// local (default: a real etcd + kube-apiserver started on this machine, with the controller
// running in this test process), node (the local control plane with a real node on this host,
// and the controller installed by its chart and running as pods there: Jobs run real pods) or
// kind (the same in a kind cluster, on a machine with Docker and a registry).
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"

	"k8s.io/klog/v2"
)

// env is the running backend, set by TestMain.
var env *Env

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		os.Exit(0)
	}
	ctx := context.Background()
	// The controller's logs go to a file, so the test and benchmark output stays readable.
	logFile, err := os.CreateTemp("", "drplan-e2e-controller-*.log")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("logtostderr", "false")
	klog.SetOutput(logFile)
	fmt.Println("e2e: controller logs in", logFile.Name())
	backend, err := SelectBackend(os.Getenv("E2E_BACKEND"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	env, err = backend.Start(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: starting the %s backend: %v\n", backend.Name(), err)
		os.Exit(1)
	}
	code := m.Run()
	if err := backend.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: stopping the %s backend: %v\n", backend.Name(), err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
