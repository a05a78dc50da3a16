package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/bkbcs/drplan-controller/controlplane"
	"github.com/bkbcs/drplan-controller/crds"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
)

// nodeImage is the controller image the node backend builds, imports and runs.
const nodeImage = "drplan-controller:e2e"

// nodeBackend is the backend closest to a user's cluster that runs on this machine: the local
// control plane in node mode (a kubelet and containerd on this host, so pods run), with the
// controller built into its image, imported into the node's containerd and installed by the
// chart: two replicas, leader election, the webhook behind its Service, the chart's RBAC. The
// suite's HTTP servers listen on the pod network's gateway, which pods reach.
type nodeBackend struct {
	cp *controlplane.ControlPlane
	inCluster
}

func (b *nodeBackend) Name() string { return "node" }

func (b *nodeBackend) Start(ctx context.Context, progress io.Writer) (_ *Env, err error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	if problem := controlplane.NodeHostProblem(); problem != "" {
		return nil, errors.New("E2E_BACKEND=node: " + problem)
	}
	// The image first: nothing to tear down if it does not build.
	fmt.Fprintf(progress, "node: building the controller image %s (make image)\n", nodeImage)
	imageTar := filepath.Join(root, "bin", "drplan-controller-image.tar")
	build := exec.CommandContext(ctx, "make", "-C", root, "image", "IMAGE="+nodeImage)
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("make image: %w\n%s", err, out)
	}
	b.cp, err = controlplane.Start(ctx, controlplane.Options{
		Node:     true,
		CRDs:     append(crds.YAML(), crds.ClusternetYAML()...),
		Progress: progress,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.Stop())
		}
	}()
	if err := controlplane.ImportImage(ctx, b.cp.Dir, imageTar); err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(b.cp.RESTConfig)
	cfg.QPS, cfg.Burst = 200, 400
	if b.dr, err = versioned.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if b.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	b.kubectl = func(ctx context.Context, stdin string, args ...string) (string, string, error) {
		return b.cp.KubectlInput(ctx, stdin, args...)
	}
	// No kube-proxy: the pods reach the API server at the gateway, where it listens, instead of
	// through the kubernetes Service.
	api, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, err
	}
	repo, tag, _ := strings.Cut(nodeImage, ":")
	b.values = map[string]any{
		"image": map[string]any{"repository": repo, "tag": tag, "pullPolicy": "Never"},
		"extraEnv": []any{
			map[string]any{"name": "KUBERNETES_SERVICE_HOST", "value": api.Hostname()},
			map[string]any{"name": "KUBERNETES_SERVICE_PORT", "value": api.Port()},
		},
	}
	// The suite's HTTP recorders listen where the pods can call them.
	os.Setenv(recorderHostEnv, controlplane.NodeGateway)
	fmt.Fprintf(progress, "node: installing the chart (%d replicas of %s)\n", chartReplicas, nodeImage)
	began := time.Now()
	if err := b.install(ctx, defaultGrace); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "node: the controller is running in-cluster after %s\n", time.Since(began).Round(time.Millisecond))
	e := b.env("node", cfg, root)
	e.ServerCPU, e.KillController = b.cp.CPUTime, b.kill
	return e, nil
}

// kill SIGKILLs the controller process of a pod, found on this host through the pod's cgroup:
// no SIGTERM, no grace, no lease release. The kubelet then restarts the container.
func (b *nodeBackend) kill(ctx context.Context, pod string) error {
	p, err := b.kube.CoreV1().Pods(chartNamespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if controlplane.KillPodProcesses(string(p.UID), "/drplan-controller") == 0 {
		return fmt.Errorf("no controller process of pod %s (uid %s) found under the kubepods cgroups", pod, p.UID)
	}
	return nil
}

// Stop saves the controller pods' logs beside the suite's, then stops the control plane and the
// node, which puts the host back as it was.
func (b *nodeBackend) Stop() error {
	if b.cp == nil {
		return nil
	}
	if b.kube != nil {
		b.saveLogs()
	}
	err := b.cp.Stop()
	b.cp = nil
	return err
}

func (b *nodeBackend) saveLogs() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pods, err := b.kube.CoreV1().Pods(chartNamespace).List(ctx, metav1.ListOptions{LabelSelector: chartSelector})
	if err != nil {
		return
	}
	f, err := os.CreateTemp("", "drplan-e2e-node-controller-*.log")
	if err != nil {
		return
	}
	defer f.Close()
	for _, p := range pods.Items {
		logs, err := b.kube.CoreV1().Pods(chartNamespace).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		fmt.Fprintf(f, "=== pod %s (err %v)\n%s\n", p.Name, err, logs)
	}
	fmt.Println("e2e: the controller pods' logs are in", f.Name())
}
