package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process names, in start order; they are stopped in reverse order (etcd last).
const (
	procEtcd              = "etcd"
	procAPIServer         = "kube-apiserver"
	procControllerManager = "kube-controller-manager"
	procScheduler         = "kube-scheduler"
	procContainerd        = "containerd"
	procKubelet           = "kubelet"
)

// stopOrder: the node's daemons first (the kubelet before containerd), etcd last.
var stopOrder = []string{procKubelet, procScheduler, procContainerd, procControllerManager, procAPIServer, procEtcd}

const (
	stopGrace   = 10 * time.Second // SIGTERM to SIGKILL
	killTimeout = 5 * time.Second  // SIGKILL to giving up
)

// process is a daemon started by this package.
type process struct {
	name    string
	pid     int
	logPath string
	exited  chan struct{} // closed once the process has exited and been reaped
	waitErr error         // valid after exited is closed
}

func pidPath(dir, name string) string { return filepath.Join(dir, "pids", name+".pid") }
func logPath(dir, name string) string { return filepath.Join(dir, "logs", name+".log") }

// startProcess runs bin in its own session (so terminal signals and process-group kills do not
// reach it), with stdout and stderr appended to dir/logs/<name>.log, and records its PID in
// dir/pids/<name>.pid.
func startProcess(dir, name, bin string, args []string) (*process, error) {
	for _, d := range []string{filepath.Join(dir, "logs"), filepath.Join(dir, "pids")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
	}
	p := &process{name: name, logPath: logPath(dir, name), exited: make(chan struct{})}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", name, err)
	}
	defer logFile.Close() // the child keeps its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p.pid = cmd.Process.Pid
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	if err := os.WriteFile(pidPath(dir, name), []byte(strconv.Itoa(p.pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("start %s: write pid file: %w", name, err)
	}
	return p, nil
}

// exitError reports, without blocking, whether the process has exited.
func (p *process) exitError() error {
	select {
	case <-p.exited:
		if p.waitErr == nil {
			return fmt.Errorf("%s exited", p.name)
		}
		return fmt.Errorf("%s exited: %w", p.name, p.waitErr)
	default:
		return nil
	}
}

// logTail returns the last lines of the process log, for error messages.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.logPath, err)
	}
	return fmt.Sprintf("--- last lines of %s ---\n%s", p.logPath, tail(b, 30))
}

// StopDir stops the control plane whose run directory is dir, using its pid files: the node's
// kubelet, kube-scheduler and containerd, then kube-controller-manager, kube-apiserver and etcd.
// Each gets SIGTERM, then SIGKILL after about 10s. A PID that no longer belongs to the process
// started in dir is left alone. After a node run it then kills what is left of the pods and puts
// the host back as it was (restoreNode), failing if it could not. Stopping an already stopped
// control plane is a no-op.
func StopDir(dir string) error {
	abs, err := canonicalDir(dir)
	if err != nil {
		return fmt.Errorf("stop control plane in %s: %w", dir, err)
	}
	var errs []error
	for _, name := range stopOrder {
		if err := stopByPIDFile(abs, name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		errs = append(errs, restoreNode(abs))
	}
	return errors.Join(errs...)
}

// canonicalDir makes dir absolute and resolves symlinks, so that the paths written into the
// daemons' arguments and the ones StopDir looks for agree.
func canonicalDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	return abs, nil
}

func stopByPIDFile(dir, name string) error {
	path := pidPath(dir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		os.Remove(path)
		return fmt.Errorf("stop %s: bad pid file %s: %q", name, path, b)
	}
	if isOurs(pid, name, dir) {
		if err := terminate(pid, name); err != nil {
			return err
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	return nil
}

// isOurs reports whether pid is alive and is the named binary started for run directory dir:
// its argv[0] ends in /<name> and one of its arguments points into dir. This keeps a stale pid
// file whose PID was reused by an unrelated process from getting that process killed.
func isOurs(pid int, name, dir string) bool {
	if !alive(pid) {
		return false
	}
	args := procArgs(pid)
	if len(args) == 0 || filepath.Base(args[0]) != name {
		return false
	}
	for _, a := range args[1:] {
		if strings.Contains(a, dir+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// procArgs is the command line of pid (nil if it cannot be read).
func procArgs(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// terminate sends SIGTERM to pid (never to a group), waits, then SIGKILLs it.
func terminate(pid int, name string) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s (pid %d): %w", name, pid, err)
	}
	if waitGone(pid, stopGrace) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", name, pid, err)
	}
	if waitGone(pid, killTimeout) {
		return nil
	}
	return fmt.Errorf("stop %s: pid %d still running after SIGKILL", name, pid)
}

func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !alive(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CPUTime returns the CPU time (user + system) used so far by the control plane's processes, read
// from /proc; benchmarks use it to tell how much of a run's cost lands on the API server and
// etcd. Processes that cannot be read count as zero.
func (cp *ControlPlane) CPUTime() time.Duration {
	var total time.Duration
	for _, name := range []string{procControllerManager, procAPIServer, procEtcd} {
		b, err := os.ReadFile(pidPath(cp.Dir, name))
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(b)), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces) start after the last ')':
		// state is field 3, utime 14, stime 15.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		total += time.Duration(utime+stime) * time.Second / clockTicks
	}
	return total
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux architecture Go
// supports.
const clockTicks = 100
