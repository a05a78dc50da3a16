package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"

	"github.com/bkbcs/drplan-controller/admission"
	"github.com/bkbcs/drplan-controller/crds"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
	"github.com/bkbcs/drplan-controller/deploy"
	"github.com/bkbcs/drplan-controller/test/controlplane"
)

// kindNodeImage is the node image the kind backend pins (kind v0.33.0's, Kubernetes v1.37.0).
const kindNodeImage = "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5"

// kindBackend runs the suite against the controller installed by the chart in a kind cluster:
// it creates the cluster with the kind library, loads the image that `make image` built, installs
// Clusternet's CRDs and the chart, and waits for the Deployment. It needs Docker and the node
// image (a registry): machines without them, like this project's, cannot run it.
type kindBackend struct {
	name, dir, kubeconfig, imageTar string
	provider                        *cluster.Provider
	kube                            kubernetes.Interface
	chart                           string
	kubectl                         func(ctx context.Context, stdin string, args ...string) (string, string, error)
}

// recorderHostEnv, when set, is the address pods reach this host at: the HTTP recorder listens on
// every address and gives URLs with it.
const recorderHostEnv = "E2E_RECORDER_HOST"

// kindImage is the image name the backend loads and the chart runs.
const kindImage = "drplan-controller:e2e"

func (b *kindBackend) Name() string { return "kind" }

func (b *kindBackend) Start(ctx context.Context, progress io.Writer) (*Env, error) {
	if _, err := exec.LookPath("docker"); err != nil {
		return nil, errors.New("E2E_BACKEND=kind needs Docker (and a registry serving " + kindNodeImage + "); this machine has none: use E2E_BACKEND=local")
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	b.imageTar = filepath.Join(root, "bin", "drplan-controller-image.tar")
	if _, err := os.Stat(b.imageTar); err != nil {
		return nil, fmt.Errorf("E2E_BACKEND=kind loads %s: build it first with `make image IMAGE=%s`", b.imageTar, kindImage)
	}
	if b.dir, err = os.MkdirTemp("", "drplan-kind-"); err != nil {
		return nil, err
	}
	b.name, b.kubeconfig = "drplan-e2e", filepath.Join(b.dir, "kubeconfig")
	b.provider = cluster.NewProvider(cluster.ProviderWithDocker())
	fmt.Fprintf(progress, "kind: creating cluster %s (%s)\n", b.name, kindNodeImage)
	if err := b.provider.Create(b.name, cluster.CreateWithNodeImage(kindNodeImage), cluster.CreateWithWaitForReady(3*time.Minute),
		cluster.CreateWithKubeconfigPath(b.kubeconfig)); err != nil {
		return nil, fmt.Errorf("create the kind cluster: %w", err)
	}
	nodes, err := b.provider.ListInternalNodes(b.name)
	if err != nil {
		return nil, errors.Join(err, b.Stop())
	}
	for _, n := range nodes {
		f, err := os.Open(b.imageTar)
		if err != nil {
			return nil, errors.Join(err, b.Stop())
		}
		err = nodeutils.LoadImageArchive(n, f)
		f.Close()
		if err != nil {
			return nil, errors.Join(fmt.Errorf("load the image into %s: %w", n, err), b.Stop())
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", b.kubeconfig)
	if err != nil {
		return nil, errors.Join(err, b.Stop())
	}
	cfg.QPS, cfg.Burst = 200, 400
	dr, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, errors.Join(err, b.Stop())
	}
	if b.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, errors.Join(err, b.Stop())
	}
	repo, tag, _ := strings.Cut(kindImage, ":")
	if b.chart, err = deploy.Render(map[string]any{"image": map[string]any{"repository": repo, "tag": tag, "pullPolicy": "Never"}}); err != nil {
		return nil, errors.Join(err, b.Stop())
	}
	bins, err := controlplane.EnsureBinaries(ctx, progress)
	if err != nil {
		return nil, errors.Join(err, b.Stop())
	}
	kubectl := func(ctx context.Context, stdin string, args ...string) (string, string, error) {
		return controlplane.RunKubectl(ctx, bins.Kubectl, b.kubeconfig, filepath.Join(b.dir, "kubectl-cache"), stdin, args...)
	}
	var clusternet strings.Builder
	for _, doc := range crds.ClusternetYAML() {
		clusternet.WriteString("---\n")
		clusternet.Write(doc)
	}
	b.kubectl = kubectl
	// The suite's HTTP recorder must be reachable from the pods: it listens on every address and
	// is called through the kind network's gateway, which is this host.
	gw, err := exec.CommandContext(ctx, "docker", "network", "inspect", "kind", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}").Output()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("the kind network's gateway: %w", err), b.Stop())
	}
	for _, ip := range strings.Fields(string(gw)) {
		if !strings.Contains(ip, ":") {
			os.Setenv(recorderHostEnv, ip)
			break
		}
	}
	for _, manifest := range []string{clusternet.String(), b.chart} {
		if _, _, err := kubectl(ctx, manifest, "apply", "--server-side", "-f", "-"); err != nil {
			return nil, errors.Join(err, b.Stop())
		}
	}
	if err := b.waitReplicas(ctx, 2); err != nil {
		return nil, errors.Join(err, b.Stop())
	}
	return &Env{
		Config: cfg, DR: dr, Kube: b.kube, Root: root, Kubectl: kubectl,
		StopController: func() error { return b.scale(context.Background(), 0) },
		StartController: func(time.Duration) {
			if err := b.scale(context.Background(), 2); err != nil {
				fmt.Fprintln(os.Stderr, "kind: starting the controller:", err)
			}
		},
		ControllerWrites: func() (int64, int64) { return 0, 0 }, // not observable from outside the pods
		ServerCPU:        func() time.Duration { return 0 },
		SetWebhook:       b.setWebhook,
		MetricsURL:       func() string { return "" },
	}, nil
}

// scale sets the Deployment's replicas and waits until that many are ready.
func (b *kindBackend) scale(ctx context.Context, replicas int32) error {
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	if _, err := b.kube.AppsV1().Deployments("drplan-system").Patch(ctx, "drplan-controller", "application/merge-patch+json",
		[]byte(patch), metav1.PatchOptions{}); err != nil {
		return err
	}
	return b.waitReplicas(ctx, replicas)
}

func (b *kindBackend) waitReplicas(ctx context.Context, replicas int32) error {
	return wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := b.kube.AppsV1().Deployments("drplan-system").Get(ctx, "drplan-controller", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return deploymentSettled(d, replicas), nil
	})
}

func deploymentSettled(d *appsv1.Deployment, replicas int32) bool {
	return d.Status.ObservedGeneration >= d.Generation && d.Status.ReadyReplicas == replicas && d.Status.Replicas == replicas
}

// setWebhook re-applies or deletes the chart's webhook configuration.
func (b *kindBackend) setWebhook(on bool) error {
	ctx := context.Background()
	if !on {
		return admission.Unregister(ctx, b.kube, "drplan-controller")
	}
	for _, doc := range strings.Split(b.chart, "\n---\n") {
		if strings.Contains(doc, "kind: ValidatingWebhookConfiguration") {
			_, _, err := b.kubectl(ctx, doc, "apply", "--server-side", "-f", "-")
			return err
		}
	}
	return errors.New("the chart has no ValidatingWebhookConfiguration")
}

func (b *kindBackend) Stop() error {
	if b.provider == nil {
		return nil
	}
	err := b.provider.Delete(b.name, b.kubeconfig)
	_ = os.RemoveAll(b.dir)
	return err
}
