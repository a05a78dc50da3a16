package controlplane

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// TestNodeRunsPodsAndRestoresHost starts the node mode, runs a pod that calls a server of this
// host at the gateway address and a Job through the real job controller, reads the pod's log
// through the API server and the kubelet, then stops and checks the host is as it was: iptables,
// cgroups, sysctls, interfaces, mounts, host paths and ports. Changes another program makes
// meanwhile are neither reported nor undone; what a run leaves behind is reported.
func TestNodeRunsPodsAndRestoresHost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real node; skipped with -short")
	}
	if problem := NodeHostProblem(); problem != "" {
		t.Skipf("node mode not possible on this machine: %s", problem)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	began := time.Now()
	cp, err := Start(ctx, Options{Node: true, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node mode ready in %s", time.Since(began).Round(time.Millisecond))
	stopped := false
	defer func() {
		if !stopped {
			_ = cp.Stop()
		}
	}()
	var run nodeRun
	b, err := os.ReadFile(nodeRunFile(cp.Dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &run); err != nil {
		t.Fatal(err)
	}

	// A server on the gateway address, called from a pod.
	ln, err := net.Listen("tcp", NodeGateway+":0")
	if err != nil {
		t.Fatal(err)
	}
	called := make(chan string, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case called <- r.RemoteAddr:
		default:
		}
		fmt.Fprint(w, "hello from the host")
	})}
	go srv.Serve(ln)
	defer srv.Close()

	kube, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "caller", Namespace: "default"},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{
			Name: "wget", Image: BusyboxImage,
			Command: []string{"sh", "-c", "wget -q -O- http://" + ln.Addr().String() + "/"},
		}}},
	}
	if _, err := kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods("default").Get(ctx, "caller", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.Phase == corev1.PodFailed {
			return false, fmt.Errorf("pod failed: %+v", p.Status)
		}
		return p.Status.Phase == corev1.PodSucceeded, nil
	}); err != nil {
		t.Fatalf("the pod did not succeed: %v", err)
	}
	select {
	case from := <-called:
		if !strings.HasPrefix(from, "10.244.0.") {
			t.Errorf("the call came from %s, want a pod address", from)
		}
	default:
		t.Error("the pod succeeded but the host's server was not called")
	}
	logs, err := kube.CoreV1().Pods("default").GetLogs("caller", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil || string(logs) != "hello from the host" {
		t.Errorf("pod log = %q, %v; want the server's answer", logs, err)
	}

	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper", Namespace: "default"},
		Spec: batchv1.JobSpec{BackoffLimit: ptr.To[int32](0), Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "c", Image: BusyboxImage, Command: []string{"sh", "-c", "sleep 1; echo done"}}},
		}}},
	}
	if _, err := kube.BatchV1().Jobs("default").Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	jobStart := time.Now()
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		j, err := kube.BatchV1().Jobs("default").Get(ctx, "sleeper", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range j.Status.Conditions {
			if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
				if c.Type == batchv1.JobFailed {
					return false, fmt.Errorf("job failed: %s", c.Message)
				}
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("a Job of one 1 s pod completed in %s", time.Since(jobStart).Round(time.Millisecond))

	// Another program changes the host while the node runs; the check ignores it and the
	// tear-down leaves it alone.
	other := changeHostAsAnotherProgram(t)

	// While it runs the host is changed (else the check after Stop would prove nothing).
	during, err := readHostState(cp.Dir)
	if err != nil {
		t.Fatal(err)
	}
	changes := strings.Join(run.Before.diff(during), "\n")
	for _, want := range []string{"kubepods", fmt.Sprintf("network interface %q added", nodeBridge)} {
		if !strings.Contains(changes, want) {
			t.Errorf("while the node runs, the host changes should include %q; they are:\n%s", want, changes)
		}
	}
	t.Logf("the node run changed the host:\n%s", changes)

	stopped = true
	began = time.Now()
	if err := cp.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("stopped and restored in %s", time.Since(began).Round(time.Millisecond))
	after, err := readHostState(cp.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := run.Before.diff(after); len(d) > 0 {
		t.Errorf("after Stop the host differs from before the start:\n%s", strings.Join(d, "\n"))
	}
	if l := listeningPorts(run.Ports); len(l) > 0 {
		t.Errorf("ports still listened on after Stop: %v", l)
	}
	other.assertUntouched(t)

	// What a run leaves behind is reported: a kubepods cgroup and a veth on the pod bridge, made
	// here as a tear-down that failed would leave them. The tear-down removes them.
	leftCgroup := filepath.Join(memoryCgroups(), "kubepods", "besteffort", "podleftover")
	if err := os.MkdirAll(filepath.Join(cgroupRoot, leftCgroup), 0o755); err != nil {
		t.Fatal(err)
	}
	leftVeth := "drplanleft0"
	for _, args := range [][]string{
		{"link", "add", nodeBridge, "type", "bridge"},
		{"link", "add", leftVeth, "type", "veth", "peer", "name", "drplanleft1"},
		{"link", "set", leftVeth, "master", nodeBridge},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	left, err := readHostState(cp.Dir)
	if err != nil {
		t.Fatal(err)
	}
	reported := strings.Join(run.Before.diff(left), "\n")
	for _, want := range []string{
		fmt.Sprintf("cgroup %q added", leftCgroup),
		fmt.Sprintf("network interface %q added", nodeBridge),
		fmt.Sprintf("network interface %q added", leftVeth),
	} {
		if !strings.Contains(reported, want) {
			t.Errorf("the check should report %s; it reports:\n%s", want, reported)
		}
	}
	if strings.Contains(reported, "drplan-other") || strings.Contains(reported, "kernel.panic ") {
		t.Errorf("the check reports another program's changes:\n%s", reported)
	}
	if err := restoreHost(cp.Dir, run.Before); err != nil {
		t.Errorf("the tear-down did not remove the leftovers: %v", err)
	}
	other.assertUntouched(t)
}

// otherChanges are changes to the host that another program made while a node ran.
type otherChanges struct {
	cgroup, chain, panicWas string
}

// changeHostAsAnotherProgram makes, from another process, a cgroup of its own, an iptables chain
// with a rule, and sets kernel.panic (which the kubelet sets to 10) to a value the node does not
// set; the test's clean-up undoes them.
func changeHostAsAnotherProgram(t *testing.T) otherChanges {
	t.Helper()
	panicWas, err := os.ReadFile(sysctlPath("kernel.panic"))
	if err != nil {
		t.Fatal(err)
	}
	o := otherChanges{
		cgroup:   filepath.Join(memoryCgroups(), fmt.Sprintf("drplan-other-%d", os.Getpid())),
		chain:    fmt.Sprintf("DRPLAN-OTHER-%d", os.Getpid()),
		panicWas: strings.TrimSpace(string(panicWas)),
	}
	t.Cleanup(func() {
		_ = os.Remove(filepath.Join(cgroupRoot, o.cgroup))
		_ = exec.Command("iptables", "-F", o.chain).Run()
		_ = exec.Command("iptables", "-X", o.chain).Run()
		_ = os.WriteFile(sysctlPath("kernel.panic"), []byte(o.panicWas+"\n"), 0o644)
	})
	script := fmt.Sprintf("mkdir %s && iptables -N %s && iptables -A %s -j RETURN && echo 7 > /proc/sys/kernel/panic",
		filepath.Join(cgroupRoot, o.cgroup), o.chain, o.chain)
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("another program's changes: %v: %s", err, out)
	}
	return o
}

// assertUntouched checks that the other program's changes are still there.
func (o otherChanges) assertUntouched(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(cgroupRoot, o.cgroup)); err != nil {
		t.Errorf("another program's cgroup was touched: %v", err)
	}
	if err := exec.Command("iptables", "-C", o.chain, "-j", "RETURN").Run(); err != nil {
		t.Errorf("another program's iptables chain %s was touched: %v", o.chain, err)
	}
	if v, _ := os.ReadFile(sysctlPath("kernel.panic")); strings.TrimSpace(string(v)) != "7" {
		t.Errorf("kernel.panic is %q, want the other program's 7", strings.TrimSpace(string(v)))
	}
}

// TestOrphanedNodeIsTornDown kills (SIGKILL) a process that started a node run, as a test
// binary's timeout or a panic would: the run's daemons and pods stay, and CleanupOrphanedNode
// (make test calls it, and the next node start does the same) stops them and restores the host.
func TestOrphanedNodeIsTornDown(t *testing.T) {
	if dir := os.Getenv("DRPLAN_NODE_HELPER_DIR"); dir != "" {
		// The child: start a node run and wait to be killed.
		if _, err := Start(context.Background(), Options{Dir: dir, Node: true}); err != nil {
			fmt.Println("start failed:", err)
			os.Exit(1)
		}
		fmt.Println("node ready")
		time.Sleep(10 * time.Minute)
		return
	}
	if testing.Short() {
		t.Skip("starts a real node; skipped with -short")
	}
	if problem := NodeHostProblem(); problem != "" {
		t.Skipf("node mode not possible on this machine: %s", problem)
	}
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^TestOrphanedNodeIsTornDown$", "-test.v")
	child.Env = append(os.Environ(), "DRPLAN_NODE_HELPER_DIR="+dir)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Log("child:", sc.Text())
			if sc.Text() == "node ready" {
				ready <- true
			}
		}
		ready <- false
	}()
	if !<-ready {
		t.Fatal("the child did not start a node run")
	}
	var run nodeRun
	b, err := os.ReadFile(nodeRunFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &run); err != nil {
		t.Fatal(err)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	if !nodeRunning(dir) {
		t.Fatal("the node's daemons died with the process that started them; nothing to clean up")
	}

	cleaned, err := CleanupOrphanedNode()
	if err != nil {
		t.Fatal(err)
	}
	if cleaned != dir {
		t.Errorf("cleaned %q, want the orphaned run %q", cleaned, dir)
	}
	if nodeRunning(dir) {
		t.Error("the node's daemons still run")
	}
	after, err := readHostState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := run.Before.diff(after); len(d) > 0 {
		t.Errorf("after the clean-up the host differs from before the start:\n%s", strings.Join(d, "\n"))
	}
	if l := listeningPorts(run.Ports); len(l) > 0 {
		t.Errorf("ports still listened on: %v", l)
	}
}

// TestNodeHostProblem: on a host that lacks what the node mode needs, the start fails at once
// saying what is missing. The check runs in a child process made to lack it: not root, without
// capabilities, with the cgroups read-only.
func TestNodeHostProblem(t *testing.T) {
	if os.Getenv("DRPLAN_NODE_CHECK_HELPER") != "" {
		fmt.Println("problem:", NodeHostProblem())
		return
	}
	if testing.Short() {
		t.Skip("runs child processes with fewer rights; skipped with -short")
	}
	if problem := NodeHostProblem(); problem != "" {
		t.Skipf("this host cannot run the node mode anyway: %s", problem)
	}
	for _, tool := range []string{"setpriv", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (util-linux)", tool)
		}
	}
	// A copy of the test binary that any user may run.
	dir, err := os.MkdirTemp("", "drplan-nodecheck-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "check")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run := []string{bin, "-test.run=^TestNodeHostProblem$"}
	tests := []struct {
		name string
		cmd  []string
		want string
	}{
		{"fine as it is", run, "problem: \n"},
		{"not root", append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, run...), "needs root (euid is 65534)"},
		{"no CAP_SYS_ADMIN or CAP_NET_ADMIN", append([]string{"setpriv", "--bounding-set=-sys_admin,-net_admin", "--inh-caps=-sys_admin,-net_admin"}, run...),
			"needs the capabilities CAP_NET_ADMIN, CAP_SYS_ADMIN, which this process lacks"},
		{"read-only cgroups", []string{"unshare", "--mount", "--propagation=private", "sh", "-c",
			`mount -o remount,bind,ro /sys/fs/cgroup/memory 2>/dev/null || mount -o remount,bind,ro /sys/fs/cgroup; exec "$@"`, "sh", bin, "-test.run=^TestNodeHostProblem$"},
			"needs writable cgroups: mkdir /sys/fs/cgroup/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(tc.cmd[0], tc.cmd[1:]...)
			cmd.Env = append(os.Environ(), "DRPLAN_NODE_CHECK_HELPER=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v\n%s", tc.cmd, err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("the check said:\n%s\nwant it to contain %q", out, tc.want)
			}
		})
	}
}
