// Package controlplane runs a real local Kubernetes control plane for `make run`, drplan-local and the
// e2e suite: etcd, kube-apiserver, kube-controller-manager, optionally a real node (containerd+kubelet).
//
// Its binaries are built from pinned sources (the tools modules under hack/tools); it needs no
// Docker and no downloads beyond the Go module proxy.
package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/bkbcs/drplan-controller/admission/pki"
)

const (
	etcdReadyTimeout      = 30 * time.Second
	apiServerReadyTimeout = 90 * time.Second
	componentReadyTimeout = 60 * time.Second
	crdReadyTimeout       = 30 * time.Second
	pollInterval          = 100 * time.Millisecond

	serviceClusterIPRange = "10.0.0.0/24"
	serviceAccountIssuer  = "https://kubernetes.default.svc.cluster.local"
)

// Options configures Start.
type Options struct {
	// Dir holds certificates, etcd data, logs, kubeconfig and pid files. A control plane still
	// running there is stopped and its files are removed (other files are left alone). Empty
	// means a temporary directory that Stop removes.
	Dir string
	// CRDs are multi-document YAML files of CustomResourceDefinitions to install.
	CRDs [][]byte
	// ControllerManager also runs kube-controller-manager (namespace deletion, garbage
	// collection, Jobs creating pods, default service accounts).
	ControllerManager bool
	// Node also runs a real node on this host (containerd, the CNI bridge plugin, kube-scheduler
	// and a kubelet; implies ControllerManager), so that pods run. It needs root and the packages
	// hack/node-deps.sh installs; Start says what is missing. kube-apiserver then listens on
	// NodeGateway, which pods reach. Stop puts the host back as it was.
	Node bool
	// Progress receives human-readable progress (builds, startup); nil discards it.
	Progress io.Writer
}

// ControlPlane is a running local control plane.
type ControlPlane struct {
	Dir            string
	KubeconfigPath string       // admin kubeconfig (system:masters, client-certificate auth)
	RESTConfig     *rest.Config // same credentials as KubeconfigPath
	Binaries       Binaries
	CACertPEM      []byte // CA that signed every certificate, trusted by kube-apiserver for clients

	ca          *pki.Authority
	ownsDir     bool
	releaseNode func() // set while this process holds the host's node
	// apiServerArgs and apiServerReady start kube-apiserver again (RestartAPIServer) as it was
	// started, and tell when it is ready.
	apiServerArgs  []string
	apiServerReady func(context.Context) error
}

// Start builds (or finds cached) binaries and starts a fresh, empty control plane, ready to use
// when it returns: kube-apiserver is ready, the CRDs are established and discoverable, and
// kube-controller-manager (if asked for) is healthy. On error nothing is left running.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	crds, err := decodeCRDs(opts.CRDs) // fail fast, before starting anything
	if err != nil {
		return nil, err
	}
	if opts.Node {
		if problem := NodeHostProblem(); problem != "" {
			return nil, errors.New(problem)
		}
		opts.ControllerManager = true
	}
	bins, images, err := ensureBuilt(ctx, progress, opts)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	cp, err := newControlPlane(opts.Dir, bins)
	if err != nil {
		return nil, err
	}
	defer cp.stopOnError(&err)

	files, err := cp.createPKI()
	if err != nil {
		return nil, err
	}
	ports, err := choosePorts()
	if err != nil {
		return nil, err
	}
	bind := "127.0.0.1"
	if opts.Node {
		if err := cp.claimNodeHost(ctx, progress, ports); err != nil {
			return nil, err
		}
		bind = NodeGateway
	}

	fmt.Fprintf(progress, "controlplane: starting etcd %s and kube-apiserver %s in %s\n", EtcdVersion, KubeVersion, cp.Dir)
	etcdURL, err := startEtcd(ctx, cp.Dir, bins.Etcd, ports)
	if err != nil {
		return nil, err
	}
	host, err := cp.startAPIServer(ctx, files, etcdURL, bind, ports.apiServer, opts.Node)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "controlplane: kube-apiserver ready at %s after %s\n", host, time.Since(began).Round(time.Millisecond))

	if err := installCRDs(ctx, cp.RESTConfig, crds); err != nil {
		return nil, err
	}
	if opts.ControllerManager {
		if err := cp.startControllerManager(ctx, files, host, ports.controllerManager); err != nil {
			return nil, err
		}
	}
	if opts.Node {
		if err := cp.startNode(ctx, progress, files, host, ports.node, images); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(progress, "controlplane: ready in %s; KUBECONFIG=%s\n", time.Since(began).Round(time.Millisecond), cp.KubeconfigPath)
	return cp, nil
}

// ensureBuilt builds (or finds cached) the binaries opts needs and, for a node, the image
// tarballs the node imports into containerd.
func ensureBuilt(ctx context.Context, progress io.Writer, opts Options) (Binaries, []string, error) {
	bins, err := ensureBinaries(ctx, progress, opts.ControllerManager, opts.Node)
	if err != nil || !opts.Node {
		return bins, nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return bins, nil, err
	}
	cache, err := CacheDir()
	if err != nil {
		return bins, nil, err
	}
	images, err := nodeImages(ctx, progress, root, cache)
	return bins, images, err
}

// newControlPlane prepares the run directory (see Options.Dir) for a control plane of bins.
func newControlPlane(dir string, bins Binaries) (*ControlPlane, error) {
	dir, owns, err := prepareDir(dir)
	if err != nil {
		return nil, err
	}
	return &ControlPlane{
		Dir:            dir,
		KubeconfigPath: filepath.Join(dir, "kubeconfig"),
		Binaries:       bins,
		ownsDir:        owns,
	}, nil
}

// stopOnError stops cp after a failed Start (*err set), adding a failure to stop to *err.
func (cp *ControlPlane) stopOnError(err *error) {
	if *err == nil {
		return
	}
	if stopErr := cp.Stop(); stopErr != nil {
		*err = errors.Join(*err, fmt.Errorf("clean up after failed start: %w", stopErr))
	}
}

// createPKI writes the CA and every certificate and key under <Dir>/pki and returns their paths.
func (cp *ControlPlane) createPKI() (pkiFiles, error) {
	files := newPKIFiles(filepath.Join(cp.Dir, "pki"))
	ca, err := writePKI(files)
	if err != nil {
		return pkiFiles{}, err
	}
	cp.ca, cp.CACertPEM = ca, ca.CertPEM
	return files, nil
}

// controlPlanePorts are the ports the control plane's daemons listen on, chosen free at start.
type controlPlanePorts struct {
	etcd, etcdPeer, apiServer, controllerManager int
	node                                         nodePorts
}

// choosePorts picks the control plane's ports, all free at once on loopback (freePorts).
func choosePorts() (controlPlanePorts, error) {
	ports, err := freePorts(8)
	if err != nil {
		return controlPlanePorts{}, err
	}
	return controlPlanePorts{
		etcd: ports[0], etcdPeer: ports[1], apiServer: ports[2], controllerManager: ports[3],
		node: nodePorts{kubelet: ports[4], kubeletHealthz: ports[5], scheduler: ports[6], stream: ports[7]},
	}, nil
}

// claimNodeHost makes this run the host's node run (claimNode), records the host and creates
// the pod bridge (prepareHost) that kube-apiserver then listens on.
func (cp *ControlPlane) claimNodeHost(ctx context.Context, progress io.Writer, ports controlPlanePorts) error {
	var err error
	if cp.releaseNode, err = claimNode(ctx, cp.Dir, progress); err != nil {
		return err
	}
	return prepareHost(cp.Dir, append(ports.node.list(), ports.etcd, ports.etcdPeer, ports.apiServer, ports.controllerManager))
}

// startEtcd starts etcd on loopback and waits until it is healthy; it returns its client URL.
func startEtcd(ctx context.Context, dir, bin string, ports controlPlanePorts) (string, error) {
	url := "http://127.0.0.1:" + strconv.Itoa(ports.etcd)
	etcd, err := startProcess(dir, procEtcd, bin, etcdArgs(dir, url, ports.etcdPeer))
	if err != nil {
		return "", err
	}
	if err := waitReady(ctx, etcd, etcdReadyTimeout, httpCheck(http.DefaultClient, url+"/health")); err != nil {
		return "", err
	}
	return url, nil
}

// startAPIServer starts kube-apiserver on bind:port (with the node flags if node), waits until
// it is ready and writes the admin kubeconfig (KubeconfigPath, RESTConfig); it returns its URL.
func (cp *ControlPlane) startAPIServer(ctx context.Context, files pkiFiles, etcdURL, bind string, port int, node bool) (string, error) {
	args := apiServerArgs(files, etcdURL, bind, port)
	if node {
		args = append(args, nodeAPIServerArgs(files)...)
	}
	apiServer, err := startProcess(cp.Dir, procAPIServer, cp.Binaries.KubeAPIServer, args)
	if err != nil {
		return "", err
	}
	host := "https://" + net.JoinHostPort(bind, strconv.Itoa(port))
	admin, err := tlsClient(files.caCert, files.adminCert, files.adminKey)
	if err != nil {
		return "", err
	}
	cp.apiServerArgs, cp.apiServerReady = args, httpCheck(admin, host+"/readyz")
	if err := waitReady(ctx, apiServer, apiServerReadyTimeout, cp.apiServerReady); err != nil {
		return "", err
	}
	if cp.RESTConfig, err = writeKubeconfig(cp.KubeconfigPath, host, files, files.adminCert, files.adminKey); err != nil {
		return "", err
	}
	return host, nil
}

// startControllerManager starts kube-controller-manager with its own kubeconfig and waits until
// it is healthy.
func (cp *ControlPlane) startControllerManager(ctx context.Context, files pkiFiles, host string, port int) error {
	kubeconfig := filepath.Join(cp.Dir, "controller-manager.kubeconfig")
	return cp.startClient(ctx, files, host, port, clientComponent{procControllerManager, cp.Binaries.KubeControllerManager,
		kubeconfig, files.controllerCert, files.controllerKey, controllerManagerArgs(files, kubeconfig, port)})
}

// clientComponent is a component that reaches kube-apiserver through a kubeconfig of its own
// (a client certificate) and serves /healthz over TLS: kube-controller-manager, kube-scheduler.
type clientComponent struct {
	proc, binary, kubeconfig, cert, key string
	args                                []string
}

// startClient writes c's kubeconfig, starts c and waits until its /healthz on port answers.
func (cp *ControlPlane) startClient(ctx context.Context, files pkiFiles, host string, port int, c clientComponent) error {
	if _, err := writeKubeconfig(c.kubeconfig, host, files, c.cert, c.key); err != nil {
		return err
	}
	p, err := startProcess(cp.Dir, c.proc, c.binary, c.args)
	if err != nil {
		return err
	}
	caOnly, err := tlsClient(files.caCert, "", "")
	if err != nil {
		return err
	}
	return waitReady(ctx, p, componentReadyTimeout, httpCheck(caOnly, "https://127.0.0.1:"+strconv.Itoa(port)+"/healthz"))
}

// Stop stops kube-controller-manager, kube-apiserver and etcd (in that order) and removes Dir
// if Start created it. It is safe to call more than once.
func (cp *ControlPlane) Stop() error {
	err := StopDir(cp.Dir)
	if cp.releaseNode != nil {
		cp.releaseNode()
		cp.releaseNode = nil
	}
	if err != nil {
		return err
	}
	if cp.ownsDir {
		if err := os.RemoveAll(cp.Dir); err != nil {
			return fmt.Errorf("remove control-plane dir: %w", err)
		}
	}
	return nil
}

// CA returns the PEM certificate and key of the control plane's CA, e.g. to sign a webhook
// serving certificate that kube-apiserver will trust given CACertPEM as caBundle.
func (cp *ControlPlane) CA() (certPEM, keyPEM []byte) {
	return cp.ca.CertPEM, cp.ca.KeyPEM
}

// SignServingCert issues a serving certificate signed by the control plane's CA for hosts (IP
// addresses and DNS names).
func (cp *ControlPlane) SignServingCert(hosts []string) (certPEM, keyPEM []byte, err error) {
	return cp.ca.ServingCert(hosts, certValidity)
}

// ClientConfig is a client configuration of this control plane authenticated as user, in groups,
// by a client certificate its CA signs: another identity than the admin's, e.g. for the
// controller, whose writes the admission webhook tells from the users'.
func (cp *ControlPlane) ClientConfig(user string, groups ...string) (*rest.Config, error) {
	cert, key, err := cp.ca.ClientCert(user, certValidity, groups...)
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(cp.RESTConfig)
	cfg.TLSClientConfig = rest.TLSClientConfig{CAData: cp.RESTConfig.TLSClientConfig.CAData, CertData: cert, KeyData: key}
	return cfg, nil
}

// Kubectl runs the built kubectl against this control plane.
func (cp *ControlPlane) Kubectl(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	return cp.KubectlInput(ctx, "", args...)
}

// KubectlInput is Kubectl with stdin, e.g. KubectlInput(ctx, manifest, "apply", "-f", "-").
func (cp *ControlPlane) KubectlInput(ctx context.Context, stdin string, args ...string) (stdout, stderr string, err error) {
	return RunKubectl(ctx, cp.Binaries.Kubectl, cp.KubeconfigPath, filepath.Join(cp.Dir, "kubectl-cache"), stdin, args...)
}

// RunKubectl runs the kubectl binary against the cluster of kubeconfig with stdin, keeping its
// discovery cache in cacheDir; an error carries kubectl's own message.
func RunKubectl(ctx context.Context, kubectl, kubeconfig, cacheDir, stdin string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "KUBECACHEDIR="+cacheDir)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), errOut.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), errOut.String(), nil
}

// prepareDir returns the canonical run directory, emptied of any previous control plane.
func prepareDir(dir string) (string, bool, error) {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "drplan-cp-")
		if err != nil {
			return "", false, fmt.Errorf("create control-plane dir: %w", err)
		}
		tmp, err = canonicalDir(tmp)
		return tmp, true, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("create control-plane dir: %w", err)
	}
	dir, err := canonicalDir(dir)
	if err != nil {
		return "", false, fmt.Errorf("control-plane dir: %w", err)
	}
	if err := StopDir(dir); err != nil {
		return "", false, fmt.Errorf("stop previous control plane in %s: %w", dir, err)
	}
	for _, name := range []string{"etcd", "pki", "logs", "pids", "kubeconfig", "controller-manager.kubeconfig", "kubectl-cache", "webhook", "node"} {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return "", false, fmt.Errorf("clean control-plane dir: %w", err)
		}
	}
	return dir, false, nil
}

func etcdArgs(dir, clientURL string, peerPort int) []string {
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	return []string{
		"--name=drplan",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=drplan=" + peerURL,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync",
	}
}

func apiServerArgs(pki pkiFiles, etcdURL, bind string, port int) []string {
	return []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + bind,
		"--advertise-address=" + bind,
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + pki.dir,
		"--tls-cert-file=" + pki.apiServerCert,
		"--tls-private-key-file=" + pki.apiServerKey,
		"--client-ca-file=" + pki.caCert,
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + serviceAccountIssuer,
		"--service-account-key-file=" + pki.serviceAccountPub,
		"--service-account-signing-key-file=" + pki.serviceAccountKey,
		"--service-cluster-ip-range=" + serviceClusterIPRange,
		// Request-header (front-proxy) settings: needed by the aggregation layer, and published in
		// kube-system/extension-apiserver-authentication, which kube-controller-manager's
		// delegated authentication reads (it logs errors every few seconds without them).
		"--requestheader-client-ca-file=" + pki.caCert,
		"--requestheader-allowed-names=" + frontProxyUser,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + pki.frontProxyCert,
		"--proxy-client-key-file=" + pki.frontProxyKey,
		// The default reconciler publishes the advertise address as the kubernetes Service's
		// endpoint, which is refused for loopback.
		"--endpoint-reconciler-type=none",
	}
}

// nodeAPIServerArgs are kube-apiserver's flags for a cluster with a node: how it reaches the
// kubelet (logs, exec) and webhooks served by pods behind a Service, with no kube-proxy.
func nodeAPIServerArgs(pki pkiFiles) []string {
	return []string{
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--kubelet-client-certificate=" + pki.apiServerKubeletCert,
		"--kubelet-client-key=" + pki.apiServerKubeletKey,
		// Call a Service's endpoint (the pod) directly: no kube-proxy makes ClusterIPs work.
		"--enable-aggregator-routing=true",
	}
}

func controllerManagerArgs(pki pkiFiles, kubeconfig string, port int) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--controllers=*",
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + pki.serviceAccountKey,
		"--root-ca-file=" + pki.caCert,
		"--cluster-signing-cert-file=" + pki.caCert,
		"--cluster-signing-key-file=" + pki.caKey,
		"--service-cluster-ip-range=" + serviceClusterIPRange,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + pki.dir,
		"--tls-cert-file=" + pki.controllerServing,
		"--tls-private-key-file=" + pki.controllerSKey,
	}
}

// freePorts returns n distinct free loopback ports, holding them all open while choosing so
// they differ from each other.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitReady polls check until it succeeds, failing early if the process exits. Errors include
// the last check failure and the tail of the process log.
func waitReady(ctx context.Context, p *process, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := errors.New("not checked yet")
	for {
		if err := p.exitError(); err != nil {
			return fmt.Errorf("%w before becoming ready (last check: %v)\n%s", err, last, p.logTail())
		}
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %w (last check: %v)\n%s", p.name, timeout, ctx.Err(), last, p.logTail())
		case <-time.After(pollInterval):
		}
	}
}

// httpCheck succeeds when GET url answers 200.
func httpCheck(client *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
		}
		return nil
	}
}

// tlsClient trusts caFile and, if certFile is set, presents that client certificate.
func tlsClient(caFile, certFile, keyFile string) (*http.Client, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}

// writeKubeconfig writes a self-contained kubeconfig (CA and client key pair embedded) and
// returns the equivalent rest.Config.
func writeKubeconfig(path, host string, pki pkiFiles, certFile, keyFile string) (*rest.Config, error) {
	var data [3][]byte
	for i, f := range []string{pki.caCert, certFile, keyFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("write kubeconfig: %w", err)
		}
		data[i] = b
	}
	const name = "drplan-local"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: data[0]}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: data[1], ClientKeyData: data[2]}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return nil, fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return &rest.Config{
		Host:            host,
		TLSClientConfig: rest.TLSClientConfig{CAData: data[0], CertData: data[1], KeyData: data[2]},
		QPS:             50,
		Burst:           100,
	}, nil
}

// installCRDs creates or updates crds and waits until each is Established, has its names
// accepted and is served by discovery.
func installCRDs(ctx context.Context, cfg *rest.Config, crds []*apiextensionsv1.CustomResourceDefinition) error {
	if len(crds) == 0 {
		return nil
	}
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("install CRDs: %w", err)
	}
	api := client.ApiextensionsV1().CustomResourceDefinitions()
	for _, crd := range crds {
		_, err := api.Create(ctx, crd, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			var cur *apiextensionsv1.CustomResourceDefinition
			if cur, err = api.Get(ctx, crd.Name, metav1.GetOptions{}); err == nil {
				crd.ResourceVersion = cur.ResourceVersion
				_, err = api.Update(ctx, crd, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("install CRD %s: %w", crd.Name, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, crdReadyTimeout)
	defer cancel()
	for _, crd := range crds {
		if err := waitCRD(ctx, api, client.Discovery(), crd); err != nil {
			return err
		}
	}
	return nil
}

// decodeCRDs reads every YAML (or JSON) document of files, skipping empty ones.
func decodeCRDs(files [][]byte) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var crds []*apiextensionsv1.CustomResourceDefinition
	for i, f := range files {
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(f), 4096)
		for doc := 1; ; doc++ {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			err := dec.Decode(crd)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("decode CRD file %d, document %d: %w", i+1, doc, err)
			}
			if crd.Kind == "" && crd.Name == "" {
				continue // empty document
			}
			if crd.Kind != "CustomResourceDefinition" || crd.Name == "" {
				return nil, fmt.Errorf("CRD file %d, document %d: want a named CustomResourceDefinition, got kind %q name %q", i+1, doc, crd.Kind, crd.Name)
			}
			crds = append(crds, crd)
		}
	}
	return crds, nil
}

func waitCRD(ctx context.Context, api interface {
	Get(context.Context, string, metav1.GetOptions) (*apiextensionsv1.CustomResourceDefinition, error)
}, disc discovery.DiscoveryInterface, crd *apiextensionsv1.CustomResourceDefinition) error {
	last := "not checked yet"
	for {
		cur, err := api.Get(ctx, crd.Name, metav1.GetOptions{})
		switch {
		case err != nil:
			last = err.Error()
		case !crdCondition(cur, apiextensionsv1.NamesAccepted):
			last = "names not accepted: " + crdConditionMessage(cur, apiextensionsv1.NamesAccepted)
		case !crdCondition(cur, apiextensionsv1.Established):
			last = "not established: " + crdConditionMessage(cur, apiextensionsv1.Established)
		default:
			if last = discovered(ctx, disc, cur); last == "" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRD %s not ready: %w (last: %s)", crd.Name, ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

// discovered returns "" once every served version of crd is listed by discovery and in the
// OpenAPI v3 document.
func discovered(ctx context.Context, disc discovery.DiscoveryInterface, crd *apiextensionsv1.CustomResourceDefinition) string {
	for _, v := range crd.Spec.Versions {
		if !v.Served {
			continue
		}
		gv := crd.Spec.Group + "/" + v.Name
		list, err := disc.ServerResourcesForGroupVersion(gv)
		if err != nil {
			return fmt.Sprintf("discovery of %s: %v", gv, err)
		}
		if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == crd.Spec.Names.Plural }) {
			return fmt.Sprintf("%s not yet in discovery of %s", crd.Spec.Names.Plural, gv)
		}
		// kubectl explain and client-side tools read the OpenAPI v3 document, which the API
		// server publishes a moment after discovery.
		doc, err := disc.RESTClient().Get().AbsPath("/openapi/v3/apis/" + gv).DoRaw(ctx)
		if err != nil {
			return fmt.Sprintf("OpenAPI v3 of %s: %v", gv, err)
		}
		if !bytes.Contains(doc, []byte(`"kind":"`+crd.Spec.Names.Kind+`"`)) {
			return fmt.Sprintf("%s not yet in the OpenAPI v3 document of %s", crd.Spec.Names.Kind, gv)
		}
	}
	return ""
}

func crdCondition(crd *apiextensionsv1.CustomResourceDefinition, t apiextensionsv1.CustomResourceDefinitionConditionType) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == t {
			return c.Status == apiextensionsv1.ConditionTrue
		}
	}
	return false
}

func crdConditionMessage(crd *apiextensionsv1.CustomResourceDefinition, t apiextensionsv1.CustomResourceDefinitionConditionType) string {
	for _, c := range crd.Status.Conditions {
		if c.Type == t {
			return fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
		}
	}
	return "no condition yet"
}

// WebhookServing prepares a webhook served from this machine for this control plane: a loopback
// listener, a serving certificate signed by the control plane's CA written to
// <Dir>/webhook/tls.{crt,key}, and the URL to register (with CACertPEM as the CA bundle).
func (cp *ControlPlane) WebhookServing(path string) (ln net.Listener, certDir, url string, err error) {
	certDir = filepath.Join(cp.Dir, "webhook")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, "", "", fmt.Errorf("webhook cert dir: %w", err)
	}
	cert, key, err := cp.SignServingCert([]string{"127.0.0.1"})
	if err != nil {
		return nil, "", "", err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.crt"), cert, 0o644); err != nil {
		return nil, "", "", err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.key"), key, 0o600); err != nil {
		return nil, "", "", err
	}
	if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, "", "", fmt.Errorf("webhook listener: %w", err)
	}
	return ln, certDir, "https://" + ln.Addr().String() + path, nil
}
