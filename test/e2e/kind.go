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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"

	"github.com/bkbcs/drplan-controller/controlplane"
	"github.com/bkbcs/drplan-controller/crds"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
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
	inCluster
}

// recorderHostEnv, when set, is the address pods reach this host at: the HTTP recorder listens on
// every address and gives URLs with it.
const recorderHostEnv = "E2E_RECORDER_HOST"

// kindImage is the image name the backend loads and the chart runs.
const kindImage = "drplan-controller:e2e"

func (b *kindBackend) Name() string { return "kind" }

// Start creates a kind cluster, loads the controller's image into its nodes, installs
// Clusternet's CRDs and the chart, and points the suite's recorders at the kind network's gateway.
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
	if err := b.createCluster(progress); err != nil {
		return nil, err
	}
	cfg, err := b.connect(ctx, progress)
	if err == nil {
		err = b.installAll(ctx)
	}
	if err != nil {
		return nil, errors.Join(err, b.Stop())
	}
	e := b.env("kind", cfg, root)
	e.MetricsURLs = func() []string { return nil } // pod IPs are inside Docker's network
	e.KillController = func(ctx context.Context, pod string) error {
		zero := int64(0) // the closest to a kill from outside Docker
		return b.kube.CoreV1().Pods(chartNamespace).Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	}
	return e, nil
}

// createCluster creates the cluster and loads the controller's image into every node.
func (b *kindBackend) createCluster(progress io.Writer) error {
	var err error
	if b.dir, err = os.MkdirTemp("", "drplan-kind-"); err != nil {
		return err
	}
	b.name, b.kubeconfig = "drplan-e2e", filepath.Join(b.dir, "kubeconfig")
	b.provider = cluster.NewProvider(cluster.ProviderWithDocker())
	fmt.Fprintf(progress, "kind: creating cluster %s (%s)\n", b.name, kindNodeImage)
	if err := b.provider.Create(b.name, cluster.CreateWithNodeImage(kindNodeImage), cluster.CreateWithWaitForReady(3*time.Minute),
		cluster.CreateWithKubeconfigPath(b.kubeconfig)); err != nil {
		return fmt.Errorf("create the kind cluster: %w", err)
	}
	nodes, err := b.provider.ListInternalNodes(b.name)
	if err != nil {
		return errors.Join(err, b.Stop())
	}
	for _, n := range nodes {
		f, err := os.Open(b.imageTar)
		if err != nil {
			return errors.Join(err, b.Stop())
		}
		err = nodeutils.LoadImageArchive(n, f)
		f.Close()
		if err != nil {
			return errors.Join(fmt.Errorf("load the image into %s: %w", n, err), b.Stop())
		}
	}
	return nil
}

// connect builds the suite's clients and kubectl for the cluster, and the chart's values.
func (b *kindBackend) connect(ctx context.Context, progress io.Writer) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", b.kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	if b.dr, err = versioned.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if b.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	repo, tag, _ := strings.Cut(kindImage, ":")
	b.values = map[string]any{"image": map[string]any{"repository": repo, "tag": tag, "pullPolicy": "Never"}}
	bins, err := controlplane.EnsureBinaries(ctx, progress)
	if err != nil {
		return nil, err
	}
	b.kubectl = func(ctx context.Context, stdin string, args ...string) (string, string, error) {
		return controlplane.RunKubectl(ctx, bins.Kubectl, b.kubeconfig, filepath.Join(b.dir, "kubectl-cache"), stdin, args...)
	}
	return cfg, nil
}

// installAll points the recorders at the kind network's gateway (the pods reach this host
// there), and installs Clusternet's CRDs and the chart.
func (b *kindBackend) installAll(ctx context.Context) error {
	gw, err := exec.CommandContext(ctx, "docker", "network", "inspect", "kind", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{end}}").Output()
	if err != nil {
		return fmt.Errorf("the kind network's gateway: %w", err)
	}
	for _, ip := range strings.Fields(string(gw)) {
		if !strings.Contains(ip, ":") {
			os.Setenv(recorderHostEnv, ip)
			break
		}
	}
	var clusternet strings.Builder
	for _, doc := range crds.ClusternetYAML() {
		clusternet.WriteString("---\n")
		clusternet.Write(doc)
	}
	if _, _, err := b.kubectl(ctx, clusternet.String(), "apply", "--server-side", "-f", "-"); err != nil {
		return err
	}
	return b.install(ctx, defaultGrace)
}

func (b *kindBackend) Stop() error {
	if b.provider == nil {
		return nil
	}
	err := b.provider.Delete(b.name, b.kubeconfig)
	_ = os.RemoveAll(b.dir)
	return err
}
