package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The node mode adds a real node to the control plane, on this host: containerd (Debian's, with
// a private root, state and socket), the CNI bridge plugin, kube-scheduler and a kubelet, so that
// pods run. Everything it needs is built (kubelet, kube-scheduler, the images) or installed by
// the project (hack/node-deps.sh); what it changes on the host is recorded before it starts and
// put back when it stops.
const (
	// NodeName is the node's name.
	NodeName = "drplan-node"
	// NodeGateway is this host's address on the pod network (the bridge's): pods reach the API
	// server and servers the tests run at this address, and the node mode's kube-apiserver
	// listens on it.
	NodeGateway = "10.244.0.1"
	nodeBridge  = "drplan0"
	podSubnet   = "10.244.0.0/24"

	containerdReadyTimeout = 30 * time.Second
	kubeletReadyTimeout    = 60 * time.Second
	nodeReadyTimeout       = 90 * time.Second
)

// nodeRun is what a node run records in <Dir>/node/host.json for the tear-down: the host as it was,
// and the ports the run's daemons listen on.
type nodeRun struct {
	Before hostState `json:"before"`
	Ports  []int     `json:"ports"`
}

func nodeDir(dir string) string     { return filepath.Join(dir, "node") }
func nodeRunFile(dir string) string { return filepath.Join(nodeDir(dir), "host.json") }
func containerdSock(dir string) string {
	return filepath.Join(nodeDir(dir), "containerd", "containerd.sock")
}

// claimNode makes this run the host's one node run: the bridge, the pod subnet and the kubelet's
// host paths can be had once. It waits while another process of this machine is starting one,
// fails while another process runs one (`make up`, a test), and first tears down a run whose
// process died without doing so (a test binary killed by its timeout or a panic).
func claimNode(ctx context.Context, dir string, progress io.Writer) (release func(), err error) {
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, "node.lock"), progress)
	if err != nil {
		return nil, err
	}
	if other, pid, ok := nodeOwner(cache); ok && other != dir {
		if alive(pid) && nodeRunning(other) {
			unlock()
			return nil, fmt.Errorf("a node-mode control plane is already running in %s, started by pid %d (one node per host): stop it first (`make down` there)", other, pid)
		}
		fmt.Fprintf(progress, "controlplane: tearing down what the node run in %s left (its process %d is gone)\n", other, pid)
		if err := StopDir(other); err != nil {
			unlock()
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(cache, "node.owner"), []byte(fmt.Sprintf("%s\n%d\n", dir, os.Getpid())), 0o644); err != nil {
		unlock()
		return nil, fmt.Errorf("claim the node: %w", err)
	}
	return unlock, nil
}

// nodeOwner reads which run directory holds the host's node, and the process that started it.
func nodeOwner(cache string) (dir string, pid int, ok bool) {
	b, err := os.ReadFile(filepath.Join(cache, "node.owner"))
	if err != nil {
		return "", 0, false
	}
	lines := strings.Fields(string(b))
	if len(lines) != 2 {
		return "", 0, false
	}
	pid, err = strconv.Atoi(lines[1])
	return lines[0], pid, err == nil
}

// CleanupOrphanedNode tears down a node run whose starting process died without stopping it
// (a test binary killed by its timeout or a panic), putting the host back as it was. It leaves a
// run whose process is alive alone, and returns the run directory it cleaned ("" if none).
func CleanupOrphanedNode() (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir, pid, ok := nodeOwner(cache)
	if !ok || alive(pid) {
		return "", nil
	}
	if err := StopDir(dir); err != nil {
		return dir, err
	}
	releaseNodeOwner(dir) // also when the run left no record of the host (it died early)
	return dir, nil
}

// nodeRunning reports whether the kubelet or containerd of the run in dir is alive.
func nodeRunning(dir string) bool {
	for _, name := range []string{procKubelet, procContainerd} {
		b, err := os.ReadFile(pidPath(dir, name))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && isOurs(pid, name, dir) {
			return true
		}
	}
	return false
}

// releaseNodeOwner forgets dir as the node's owner.
func releaseNodeOwner(dir string) {
	cache, err := CacheDir()
	if err != nil {
		return
	}
	if owner, _, ok := nodeOwner(cache); ok && owner == dir {
		os.Remove(filepath.Join(cache, "node.owner"))
	}
}

// prepareHost records the host and creates the pod bridge with the gateway address, so that
// kube-apiserver can listen on it before the first pod exists.
func prepareHost(dir string, ports []int) error {
	if err := os.MkdirAll(nodeDir(dir), 0o755); err != nil {
		return fmt.Errorf("create node dir: %w", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", nodeBridge)); err == nil {
		return fmt.Errorf("network interface %s already exists: a node run did not tear down (remove it with `ip link delete %s`)", nodeBridge, nodeBridge)
	}
	before, err := readHostState(dir)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(nodeRun{Before: before, Ports: ports}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(nodeRunFile(dir), b, 0o644); err != nil {
		return fmt.Errorf("record the host: %w", err)
	}
	for _, args := range [][]string{
		{"link", "add", nodeBridge, "type", "bridge"},
		{"addr", "add", NodeGateway + "/24", "dev", nodeBridge},
		{"link", "set", nodeBridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// restoreNode puts the host back as the node run in dir found it, once its daemons have
// stopped, and checks that none of its ports is still listened on. Without a record (no node
// run, or already restored) it does nothing.
func restoreNode(dir string) error {
	b, err := os.ReadFile(nodeRunFile(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var run nodeRun
	if err := json.Unmarshal(b, &run); err != nil {
		return fmt.Errorf("read %s: %w", nodeRunFile(dir), err)
	}
	err = restoreHost(dir, run.Before.inDomain())
	if listening := listeningPorts(run.Ports); len(listening) > 0 {
		err = errors.Join(err, fmt.Errorf("ports of the node run still listened on: %v", listening))
	}
	if err != nil {
		return fmt.Errorf("restore the host after the node run in %s: %w", dir, err)
	}
	releaseNodeOwner(dir)
	return os.Remove(nodeRunFile(dir))
}

// listeningPorts returns those of ports that a TCP socket of this machine listens on.
func listeningPorts(ports []int) []int {
	want := map[int]bool{}
	for _, p := range ports {
		want[p] = true
	}
	var out []int
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for i, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if i == 0 || len(fields) < 4 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, port, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseInt(port, 16, 32); err == nil && want[int(p)] {
				out = append(out, int(p))
			}
		}
	}
	return out
}

// nodePorts are the ports the node's daemons listen on, chosen free at start.
type nodePorts struct {
	kubelet, kubeletHealthz, scheduler, stream int
}

func (p nodePorts) list() []int { return []int{p.kubelet, p.kubeletHealthz, p.scheduler, p.stream} }

// startNode starts containerd, imports the images, and starts kube-scheduler and the kubelet;
// it returns when the node is Ready and the default ServiceAccount exists.
func (cp *ControlPlane) startNode(ctx context.Context, progress io.Writer, files pkiFiles, host string, ports nodePorts, images []string) error {
	if err := writeNodeConfigs(cp.Dir, files, ports); err != nil {
		return err
	}
	fmt.Fprintf(progress, "controlplane: starting containerd, kube-scheduler and the kubelet (node %s)\n", NodeName)
	if err := startContainerd(ctx, cp.Dir); err != nil {
		return err
	}
	for _, img := range images {
		if err := ImportImage(ctx, cp.Dir, img); err != nil {
			return err
		}
	}
	if err := cp.startScheduler(ctx, files, host, ports.scheduler); err != nil {
		return err
	}
	kubelet, err := cp.startKubelet(ctx, files, host, ports.kubeletHealthz)
	if err != nil {
		return err
	}
	return cp.waitNodeReady(ctx, kubelet)
}

// writeNodeConfigs creates the node's directories under <dir>/node and writes the configuration
// of containerd, the CNI bridge and the kubelet, and the pods' resolv.conf.
func writeNodeConfigs(dir string, files pkiFiles, ports nodePorts) error {
	nd := nodeDir(dir)
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(nd, d), 0o755); err != nil {
			return fmt.Errorf("create node dir: %w", err)
		}
	}
	configs := map[string]string{
		"containerd.toml":              containerdConfig(dir, ports.stream),
		"cni/net.d/10-drplan.conflist": cniConfig(dir),
		"kubelet.yaml":                 kubeletConfig(dir, files, ports),
		"resolv.conf":                  "# drplan node mode: no cluster DNS\nnameserver 127.0.0.1\n",
	}
	for name, content := range configs {
		if err := os.WriteFile(filepath.Join(nd, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// startContainerd starts the node's containerd and waits until ctr reaches it.
func startContainerd(ctx context.Context, dir string) error {
	containerd, err := startProcess(dir, procContainerd, "containerd", []string{"--config", filepath.Join(nodeDir(dir), "containerd.toml")})
	if err != nil {
		return err
	}
	return waitReady(ctx, containerd, containerdReadyTimeout, func(ctx context.Context) error { return ctr(ctx, dir, "version") })
}

// startScheduler starts kube-scheduler with its own kubeconfig and waits until it is healthy.
func (cp *ControlPlane) startScheduler(ctx context.Context, files pkiFiles, host string, port int) error {
	kubeconfig := filepath.Join(nodeDir(cp.Dir), "scheduler.kubeconfig")
	return cp.startClient(ctx, files, host, port, clientComponent{procScheduler, cp.Binaries.KubeScheduler,
		kubeconfig, files.schedulerCert, files.schedulerKey, schedulerArgs(files, kubeconfig, port)})
}

func schedulerArgs(files pkiFiles, kubeconfig string, port int) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + files.dir,
		"--tls-cert-file=" + files.controllerServing,
		"--tls-private-key-file=" + files.controllerSKey,
	}
}

// startKubelet starts the kubelet with its own kubeconfig and waits until its healthz answers;
// the node it registers may not be Ready yet.
func (cp *ControlPlane) startKubelet(ctx context.Context, files pkiFiles, host string, healthzPort int) (*process, error) {
	kubeconfig := filepath.Join(nodeDir(cp.Dir), "kubelet.kubeconfig")
	if _, err := writeKubeconfig(kubeconfig, host, files, files.kubeletClientCert, files.kubeletClientKey); err != nil {
		return nil, err
	}
	kubelet, err := startProcess(cp.Dir, procKubelet, cp.Binaries.Kubelet, kubeletArgs(cp.Dir, kubeconfig))
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, kubelet, kubeletReadyTimeout, httpCheck(http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(healthzPort)+"/healthz")); err != nil {
		return nil, err
	}
	return kubelet, nil
}

func kubeletArgs(dir, kubeconfig string) []string {
	nd := nodeDir(dir)
	return []string{
		"--config=" + filepath.Join(nd, "kubelet.yaml"),
		"--kubeconfig=" + kubeconfig,
		"--root-dir=" + filepath.Join(nd, "kubelet"),
		"--cert-dir=" + filepath.Join(nd, "kubelet", "pki"),
		"--hostname-override=" + NodeName,
		"--node-ip=" + NodeGateway,
		"--v=1",
	}
}

// waitNodeReady waits (failing early if the kubelet exits) until the node has a Ready condition
// that is true and kube-controller-manager has created the default ServiceAccount.
func (cp *ControlPlane) waitNodeReady(ctx context.Context, kubelet *process) error {
	kube, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		return err
	}
	return waitReady(ctx, kubelet, nodeReadyTimeout, func(ctx context.Context) error {
		node, err := kube.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		i := slices.IndexFunc(node.Status.Conditions, func(c corev1.NodeCondition) bool { return c.Type == corev1.NodeReady })
		if i < 0 {
			return fmt.Errorf("node %s has no Ready condition yet", NodeName)
		}
		if c := node.Status.Conditions[i]; c.Status != corev1.ConditionTrue {
			return fmt.Errorf("node %s not Ready: %s", NodeName, c.Message)
		}
		if _, err := kube.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("no default ServiceAccount yet: %w", err)
		}
		return nil
	})
}

// ImportImage loads an image tarball (docker or OCI) into the containerd of the node run in dir,
// where the kubelet finds it: a pod naming it (with a tag other than latest) never pulls.
func ImportImage(ctx context.Context, dir, tarball string) error {
	return ctr(ctx, dir, "images", "import", tarball)
}

// ctr runs ctr against the containerd of the node run in dir, in the kubelet's namespace.
func ctr(ctx context.Context, dir string, args ...string) error {
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", containerdSock(dir), "--namespace", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// KillPodProcesses SIGKILLs the processes of a pod of this node whose executable is exe (a kill
// from outside: no signal the process can handle, no grace). It returns how many it killed.
func KillPodProcesses(podUID, exe string) int {
	killed := 0
	for _, root := range []string{filepath.Join(cgroupRoot, "pids", "kubepods"), filepath.Join(cgroupRoot, "kubepods")} { // cgroup v1, v2
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() || d.Name() != "pod"+podUID {
				return nil
			}
			for _, pid := range cgroupProcs(path) {
				if args := procArgs(pid); len(args) > 0 && args[0] == exe && syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed++
				}
			}
			return filepath.SkipDir
		})
	}
	return killed
}

func containerdConfig(dir string, streamPort int) string {
	nd := nodeDir(dir)
	return fmt.Sprintf(`# containerd for the drplan node mode: private root, state and socket.
version = 2
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  # Without CAP_SYS_RESOURCE a negative oom_score_adj is refused and every sandbox would fail.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "%[6]d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[7]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[8]q
    conf_dir = %[9]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[10]q
`, filepath.Join(nd, "containerd", "root"), filepath.Join(nd, "containerd", "state"), containerdSock(dir),
		containerdSock(dir)+".ttrpc", PauseImage, streamPort, filepath.Join(nd, "containerd", "runc"),
		cniBinDir, filepath.Join(nd, "cni", "net.d"), filepath.Join(nd, "containerd", "opt"))
}

func cniConfig(dir string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "drplan",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": %q, "gateway": %q}]],
      "dataDir": %q
    }
  }]
}
`, nodeBridge, podSubnet, NodeGateway, filepath.Join(nodeDir(dir), "cni", "ipam"))
}

func kubeletConfig(dir string, files pkiFiles, ports nodePorts) string {
	nd := nodeDir(dir)
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[3]d
tlsCertFile: %[4]s
tlsPrivateKeyFile: %[5]s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[6]s}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://%[7]s
imageServiceEndpoint: unix://%[7]s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
podLogsDir: %[8]s
resolvConf: %[9]s
serializeImagePulls: false
# The images are imported, not pulled: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%%, imagefs.available: 1%%, nodefs.inodesFree: 1%%}
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
`, NodeGateway, ports.kubelet, ports.kubeletHealthz, files.kubeletServingCert, files.kubeletServingKey, files.caCert,
		containerdSock(dir), filepath.Join(nd, "pod-logs"), filepath.Join(nd, "resolv.conf"))
}
