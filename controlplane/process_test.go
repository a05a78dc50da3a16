package controlplane

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeDaemon starts /bin/sh under the name of a control-plane binary, with an argument inside
// runDir, the way startProcess would.
func fakeDaemon(t *testing.T, runDir, name string) *process {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if err := os.Symlink("/bin/sh", bin); err != nil {
		t.Fatal(err)
	}
	// "; true" keeps the shell from exec'ing sleep, so the cmdline stays the shell's.
	p, err := startProcess(runDir, name, bin, []string{"-c", "sleep 60; true", filepath.Join(runDir, "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(p.pid, syscall.SIGKILL) })
	return p
}

func TestStopDir(t *testing.T) {
	runDir, err := canonicalDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	etcd := fakeDaemon(t, runDir, procEtcd)
	apiServer := fakeDaemon(t, runDir, procAPIServer)

	// An unrelated process whose PID sits in a stale pid file must survive.
	unrelated := exec.Command("sleep", "60")
	if err := unrelated.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unrelated.Process.Kill(); unrelated.Wait() })
	stale := pidPath(runDir, procControllerManager)
	if err := os.WriteFile(stale, []byte(strconv.Itoa(unrelated.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		pid  int
		proc string
		want bool
	}{
		{"etcd started in dir", etcd.pid, procEtcd, true},
		{"apiserver started in dir", apiServer.pid, procAPIServer, true},
		{"right process, wrong name", etcd.pid, procAPIServer, false},
		{"unrelated process", unrelated.Process.Pid, procControllerManager, false},
		{"this test process", os.Getpid(), procEtcd, false},
	}
	for _, tt := range tests {
		if got := isOurs(tt.pid, tt.proc, runDir); got != tt.want {
			t.Errorf("%s: isOurs = %v, want %v", tt.name, got, tt.want)
		}
	}
	if isOurs(etcd.pid, procEtcd, runDir+"x") {
		t.Error("isOurs matched a sibling run dir sharing a prefix")
	}

	start := time.Now()
	if err := StopDir(runDir); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*process{etcd, apiServer} {
		select {
		case <-p.exited:
		case <-time.After(time.Second):
			t.Errorf("%s still running after StopDir", p.name)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("StopDir took %s; SIGTERM should have been enough", d)
	}
	if !alive(unrelated.Process.Pid) {
		t.Error("StopDir killed an unrelated process named in a stale pid file")
	}
	for _, name := range stopOrder {
		if _, err := os.Stat(pidPath(runDir, name)); !os.IsNotExist(err) {
			t.Errorf("pid file of %s not removed: %v", name, err)
		}
	}
	if err := StopDir(runDir); err != nil {
		t.Errorf("second StopDir: %v", err)
	}
}

func TestWaitReady(t *testing.T) {
	notReady := func(context.Context) error { return errors.New("probe refused") }
	tests := []struct {
		name    string
		script  string
		check   func(context.Context) error
		wantErr []string // substrings; none means success
	}{
		{"ready", "sleep 60; true", func(context.Context) error { return nil }, nil},
		{"exits early", "echo boom-from-log >&2; exit 3", notReady, []string{"exited", "exit status 3", "boom-from-log"}}, // it may exit before the first probe
		{"times out", "echo still-starting; sleep 60; true", notReady, []string{"not ready after", "probe refused", "still-starting"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runDir := t.TempDir()
			p, err := startProcess(runDir, procEtcd, "/bin/sh", []string{"-c", tt.script})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { syscall.Kill(p.pid, syscall.SIGKILL); <-p.exited }()
			err = waitReady(context.Background(), p, 500*time.Millisecond, tt.check)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not mention %q:\n%v", want, err)
				}
			}
		})
	}
}
