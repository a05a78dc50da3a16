package controlplane

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The node mode changes the host: the kubelet adds iptables chains, cgroups and sysctls, files
// under /var, the CNI bridge plugin a bridge, veths and ip_forward, containerd mounts. hostState is
// that part of the host, and only that: what a node run can change (its domain). It is recorded
// before the run, the tear-down puts it back, then checks that it did. Whatever else changes on the
// host meanwhile (another program's cgroups, chains, interfaces, mounts) is not recorded, so it is
// neither judged nor touched.
type hostState struct {
	// IPTables is, per table of iptables-save (and ip6tables-save), the node's entries: the
	// kubelet's and the CNI plugins' chains (KUBE-*, CNI-*), the rules in them, and the rules that
	// jump to them or name the pod bridge or subnet; counters left out. A table that exists has a
	// key, even with no such entry.
	IPTables map[string][]string `json:"iptables"`
	// Cgroups are the kubelet's cgroup directories (the kubepods trees, every depth), e.g.
	// "memory/kubepods/burstable/pod<uid>".
	Cgroups []string `json:"cgroups"`
	// Sysctls are the values of the sysctls the kubelet or the CNI plugins set (nodeSysctls).
	Sysctls map[string]string `json:"sysctls"`
	// Paths are the files and directories the kubelet and containerd create outside their
	// configured directories, and whether each existed.
	Paths map[string]bool `json:"paths"`
	// Links are the pod bridge and the interfaces attached to it (the pods' veths).
	Links []string `json:"links"`
	// Mounts are the mount points under the node's host paths (the run directory's own are
	// unmounted with it and not recorded).
	Mounts []string `json:"mounts"`
}

// nodeSysctls are the sysctls a node run sets, with the value it sets: the kubelet's at start
// (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops) and the bridge plugin's for a gateway
// (ip_forward). A sysctl is judged the run's change only when it now holds that value and did not
// before; another program's value is left alone.
var nodeSysctls = map[string]string{
	"vm.overcommit_memory": "1", "vm.panic_on_oom": "0", "kernel.panic": "10", "kernel.panic_on_oops": "1",
	"kernel.keys.root_maxkeys": "1000000", "kernel.keys.root_maxbytes": "25000000",
	"net.ipv4.ip_forward": "1",
}

// nodeHostPaths are the paths the kubelet and containerd write whatever their configuration says.
var nodeHostPaths = []string{"/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni", "/run/containerd", "/var/run/kubernetes", "/etc/cni"}

const cgroupRoot = "/sys/fs/cgroup"

// readHostState records the node run's domain of the host.
func readHostState(runDir string) (hostState, error) {
	s := hostState{IPTables: map[string][]string{}, Sysctls: map[string]string{}, Paths: map[string]bool{}}
	for _, tool := range []string{"iptables", "ip6tables"} {
		out, err := exec.Command(tool + "-save").Output()
		if err != nil {
			return s, fmt.Errorf("read the host's %s: %w", tool, err)
		}
		for table, entries := range parseIPTablesSave(string(out)) {
			s.IPTables[tool+"/"+table] = slices.DeleteFunc(entries, func(e string) bool { return !nodeIPTablesEntry(e) })
		}
	}
	var err error
	if s.Cgroups, err = kubepodsCgroups(); err != nil {
		return s, err
	}
	for name := range nodeSysctls {
		v, err := os.ReadFile(sysctlPath(name))
		if err != nil {
			return s, fmt.Errorf("read sysctl %s: %w", name, err)
		}
		s.Sysctls[name] = strings.TrimSpace(string(v))
	}
	for _, p := range nodeHostPaths {
		_, err := os.Lstat(p)
		s.Paths[p] = err == nil
	}
	if s.Links, err = bridgeLinks(); err != nil {
		return s, err
	}
	mounts, err := mountPoints()
	if err != nil {
		return s, err
	}
	for _, m := range mounts {
		if underNodeHostPath(m) {
			s.Mounts = append(s.Mounts, m)
		}
	}
	slices.Sort(s.Mounts)
	return s, nil
}

// nodeIPTablesEntry reports whether an iptables-save entry (a chain declaration ":NAME POLICY" or
// a rule "-A CHAIN ...") is a node run's: a chain of the kubelet or the CNI plugins, a rule in
// one or jumping to one, or a rule that names the pod bridge or subnet.
func nodeIPTablesEntry(entry string) bool {
	ours := func(chain string) bool { return strings.HasPrefix(chain, "KUBE-") || strings.HasPrefix(chain, "CNI-") }
	if name, ok := strings.CutPrefix(entry, ":"); ok {
		return ours(strings.Fields(name)[0])
	}
	f := strings.Fields(entry)
	if len(f) < 2 || f[0] != "-A" {
		return false
	}
	if ours(f[1]) {
		return true
	}
	for i := 2; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && ours(f[i+1]) {
			return true
		}
		if f[i+1] == nodeBridge || strings.HasPrefix(f[i+1], podSubnet) {
			return true
		}
	}
	return false
}

// diff lists how now differs from s, one line a difference; none means the node's domain of the
// host is as recorded.
func (s hostState) diff(now hostState) []string {
	type list struct {
		what        string
		before, now []string
	}
	lists := []list{{"cgroup", s.Cgroups, now.Cgroups}, {"network interface", s.Links, now.Links}, {"mount", s.Mounts, now.Mounts}}
	for _, table := range sortedUnion(s.IPTables, now.IPTables) {
		lists = append(lists, list{table + " entry", s.IPTables[table], now.IPTables[table]})
	}
	var out []string
	for _, l := range lists {
		added, removed := setDiff(l.before, l.now)
		for _, x := range added {
			out = append(out, fmt.Sprintf("%s %q added", l.what, x))
		}
		for _, x := range removed {
			out = append(out, fmt.Sprintf("%s %q removed", l.what, x))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Sysctls)) {
		if sysctlSetByNode(k, s.Sysctls[k], now.Sysctls[k]) {
			out = append(out, fmt.Sprintf("sysctl %s is %s (the node's value), was %s", k, now.Sysctls[k], s.Sysctls[k]))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(s.Paths)) {
		if s.Paths[p] != now.Paths[p] {
			out = append(out, fmt.Sprintf("%s exists=%t, was %t", p, now.Paths[p], s.Paths[p]))
		}
	}
	return out
}

// sysctlSetByNode reports whether a sysctl that was before and is now is a node run's change:
// it now holds the value the run sets, which it did not hold before.
func sysctlSetByNode(name, before, now string) bool {
	v, ok := nodeSysctls[name]
	return ok && before != v && now == v
}

// parseIPTablesSave returns each table's chain declarations (":CHAIN POLICY") and rules ("-A ..."),
// without counters.
func parseIPTablesSave(out string) map[string][]string {
	tables := map[string][]string{}
	table := ""
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			tables[table] = []string{}
		case strings.HasPrefix(line, ":"):
			// ":KUBE-FIREWALL - [0:0]": keep the name and the policy. A built-in chain that
			// accepts is what a table has before anything uses it (with the nf_tables backend the
			// table only appears then), so it is left out: `iptables -S` prints the same either way.
			f := strings.Fields(line)
			if len(f) >= 2 && (f[1] != "ACCEPT" || !builtinChains[f[0][1:]]) {
				tables[table] = append(tables[table], f[0]+" "+f[1])
			}
		case strings.HasPrefix(line, "-A "):
			tables[table] = append(tables[table], line)
		}
	}
	return tables
}

var builtinChains = map[string]bool{"INPUT": true, "FORWARD": true, "OUTPUT": true, "PREROUTING": true, "POSTROUTING": true}

// kubepodsCgroups lists the kubelet's cgroup directories: every directory of the trees named
// kubepods* at the top of each hierarchy (cgroup v1, e.g. "memory/kubepods/besteffort/pod<uid>")
// or of the unified root (v2, "kubepods.slice/..."). Other cgroups are never read.
func kubepodsCgroups() ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(cgroupRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == cgroupRoot {
				return err
			}
			return nil // a cgroup removed while walking
		}
		if !d.IsDir() || path == cgroupRoot {
			return nil
		}
		rel, _ := filepath.Rel(cgroupRoot, path)
		if kubepodsCgroup(rel) {
			dirs = append(dirs, rel)
			return nil
		}
		if strings.Count(rel, "/") >= 1 {
			return filepath.SkipDir // below a hierarchy, not a kubepods tree
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list cgroups: %w", err)
	}
	return dirs, nil
}

// kubepodsCgroup reports whether a cgroup directory (relative to cgroupRoot) is in a kubepods
// tree: one of its components is named kubepods*.
func kubepodsCgroup(rel string) bool {
	return slices.ContainsFunc(strings.Split(rel, "/"), func(p string) bool { return strings.HasPrefix(p, "kubepods") })
}

// underNodeHostPath reports whether a mount point is under one of the node's host paths.
func underNodeHostPath(m string) bool {
	return slices.ContainsFunc(nodeHostPaths, func(p string) bool { return within(m, p) })
}

// bridgeLinks lists the pod bridge, if it exists, and the interfaces attached to it.
func bridgeLinks() ([]string, error) {
	ifaces, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var links []string
	for _, i := range ifaces {
		master, _ := os.Readlink(filepath.Join("/sys/class/net", i.Name(), "master"))
		if i.Name() == nodeBridge || filepath.Base(master) == nodeBridge {
			links = append(links, i.Name())
		}
	}
	return links, nil
}

func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

// mountPoints lists this mount namespace's mount points, from /proc/self/mountinfo.
func mountPoints() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 4 {
			out = append(out, unescapeMount(f[4]))
		}
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

func setDiff(before, now []string) (added, removed []string) {
	b := map[string]bool{}
	for _, x := range before {
		b[x] = true
	}
	n := map[string]bool{}
	for _, x := range now {
		n[x] = true
		if !b[x] {
			added = append(added, x)
		}
	}
	for _, x := range before {
		if !n[x] {
			removed = append(removed, x)
		}
	}
	return added, removed
}

func sortedUnion[V any](a, b map[string]V) []string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return slices.Sorted(maps.Keys(keys))
}

// restoreHost undoes what a node run in runDir changed, given the state recorded before it
// (every daemon of the run must be stopped already): it kills what is left of the pods, unmounts
// the run's mounts, removes the cgroups, iptables rules and chains, interfaces and paths the run
// added, and writes the sysctls back. It returns what it could not put back.
func restoreHost(runDir string, before hostState) error {
	killPodProcesses(runDir, before)
	unmountAdded(runDir, before)
	now, err := readHostState(runDir)
	if err != nil {
		return err
	}
	removeAddedCgroups(before)
	restoreIPTables(before, now)
	for name, v := range before.Sysctls {
		if sysctlSetByNode(name, v, now.Sysctls[name]) {
			_ = os.WriteFile(sysctlPath(name), []byte(v+"\n"), 0o644)
		}
	}
	links, _ := setDiff(before.Links, now.Links)
	for _, l := range slices.Backward(links) { // the veths, then the bridge
		_ = exec.Command("ip", "link", "delete", l).Run()
	}
	for p, existed := range before.Paths {
		if !existed {
			_ = os.RemoveAll(p)
		}
	}
	after, err := readHostState(runDir)
	if err != nil {
		return err
	}
	if d := before.diff(after); len(d) > 0 {
		return fmt.Errorf("the host is not as it was before the node started:\n  %s", strings.Join(d, "\n  "))
	}
	return nil
}

// killPodProcesses SIGKILLs every process in a kubepods cgroup the run added (the containers) and
// the containerd shims serving the run's containerd, which outlive containerd itself.
func killPodProcesses(runDir string, before hostState) {
	for range 3 {
		for _, c := range addedKubepods(before) {
			for _, pid := range cgroupProcs(filepath.Join(cgroupRoot, c)) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		for _, pid := range shimsOf(runDir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// addedKubepods lists the kubelet's cgroups (kubepods trees, every depth) that were not there
// before.
func addedKubepods(before hostState) []string {
	now, err := kubepodsCgroups()
	if err != nil {
		return nil
	}
	added, _ := setDiff(before.Cgroups, now)
	return added
}

// cgroupProcs lists the processes in the cgroup dir and below it (never this one or init).
func cgroupProcs(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(path)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// shimsOf finds the containerd-shim processes whose containerd socket is in runDir.
func shimsOf(runDir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		args := procArgs(pid)
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, runDir+"/") }) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unmountAdded detaches, deepest first, every mount point in runDir (the kubelet's volumes,
// containerd's rootfs and shm mounts, the pods' network namespaces) and every one the run added
// under the node's host paths; stacked mounts take more than one pass.
func unmountAdded(runDir string, before hostState) {
	old := map[string]bool{}
	for _, m := range before.Mounts {
		old[m] = true
	}
	for range 3 {
		mounts, err := mountPoints()
		if err != nil {
			return
		}
		ours := slices.DeleteFunc(mounts, func(m string) bool {
			if within(m, runDir) {
				return m == runDir
			}
			return old[m] || !underNodeHostPath(m)
		})
		if len(ours) == 0 {
			return
		}
		slices.SortFunc(ours, func(a, b string) int { return len(b) - len(a) })
		for _, m := range ours {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
}

// removeAddedCgroups removes the kubelet's cgroup directories (kubepods) that were not there
// before, deepest first, retrying while their last processes die.
func removeAddedCgroups(before hostState) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		added := addedKubepods(before)
		slices.SortFunc(added, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
		left := 0
		for _, c := range added {
			if err := os.Remove(filepath.Join(cgroupRoot, c)); err != nil && !errors.Is(err, os.ErrNotExist) {
				left++
			}
		}
		if left == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restoreIPTables deletes the rules, then the chains, that the run added to each table.
func restoreIPTables(before, now hostState) {
	for table, rules := range now.IPTables {
		tool, name, _ := strings.Cut(table, "/")
		added, _ := setDiff(before.IPTables[table], rules)
		var chains []string
		for _, r := range added {
			if chain, ok := strings.CutPrefix(r, "-A "); ok {
				// The rule as iptables-save prints it is the rule to delete.
				args := append([]string{"-t", name, "-D"}, splitRule(chain)...)
				_ = exec.Command(tool, args...).Run()
			} else if strings.HasPrefix(r, ":") {
				chains = append(chains, strings.Fields(r)[0][1:])
			}
		}
		for _, c := range chains {
			_ = exec.Command(tool, "-t", name, "-F", c).Run()
		}
		for _, c := range chains {
			_ = exec.Command(tool, "-t", name, "-X", c).Run()
		}
		// With the nf_tables backend a table the run brought into being stays, empty; remove it
		// (unless another program uses it now) so that iptables-save prints what it printed
		// before.
		if _, existed := before.IPTables[table]; !existed && iptablesTableEmpty(tool, name) {
			family := map[string]string{"iptables": "ip", "ip6tables": "ip6"}[tool]
			_ = exec.Command("nft", "delete", "table", family, name).Run()
		}
	}
}

// iptablesTableEmpty reports whether a table has no chain or rule but its built-in chains that
// accept.
func iptablesTableEmpty(tool, table string) bool {
	out, err := exec.Command(tool+"-save", "-t", table).Output()
	return err == nil && len(parseIPTablesSave(string(out))[table]) == 0
}

// splitRule splits an iptables-save rule into arguments, honouring double quotes (comments).
func splitRule(s string) []string {
	var args []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inQuote && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			inQuote, have = !inQuote, true
		case c == ' ' && !inQuote:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}

// inDomain keeps of a recorded state only the node's domain, as readHostState records it: a
// record written by an older version, which recorded more of the host, is judged like a new one.
func (s hostState) inDomain() hostState {
	keep := func(list []string, ours func(string) bool) []string {
		return slices.DeleteFunc(slices.Clone(list), func(x string) bool { return !ours(x) })
	}
	s.Cgroups = keep(s.Cgroups, kubepodsCgroup)
	s.Links = keep(s.Links, func(l string) bool { return l == nodeBridge })
	s.Mounts = keep(s.Mounts, underNodeHostPath)
	tables := map[string][]string{}
	for t, entries := range s.IPTables {
		tables[t] = keep(entries, nodeIPTablesEntry)
	}
	s.IPTables = tables
	return s
}

// NodeHostProblem says why this machine cannot run the node mode, or "" when it can: the node
// mode runs containerd and a kubelet on the host, so it needs root, the capabilities containers
// need, writable cgroups, and the packages hack/node-deps.sh installs.
func NodeHostProblem() string {
	if os.Geteuid() != 0 {
		return "the node mode runs containerd and a kubelet on this host and needs root (euid is " + strconv.Itoa(os.Geteuid()) + ")"
	}
	if missing := missingCapabilities(); len(missing) > 0 {
		return "the node mode needs the capabilities " + strings.Join(missing, ", ") + ", which this process lacks (run it in a privileged environment)"
	}
	if err := probeCgroups(); err != nil {
		return "the node mode needs writable cgroups: " + err.Error()
	}
	var missing []string
	for _, cmd := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "iptables-save", "ip6tables-save", "ip", "gcc"} {
		if _, err := exec.LookPath(cmd); err != nil {
			missing = append(missing, cmd)
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, plugin)); err != nil {
			missing = append(missing, filepath.Join(cniBinDir, plugin))
		}
	}
	if err := staticBinary(busyboxPath); err != nil {
		missing = append(missing, "a static "+busyboxPath+" ("+err.Error()+")")
	}
	if _, err := os.Stat("/usr/include/stdio.h"); err != nil {
		missing = append(missing, "C headers (libc6-dev) to build the pause image")
	}
	if len(missing) > 0 {
		return "the node mode needs " + strings.Join(missing, ", ") + ": install them with `make node-deps` (hack/node-deps.sh)"
	}
	return ""
}

const (
	cniBinDir   = "/usr/lib/cni"
	busyboxPath = "/bin/busybox"
)

// missingCapabilities lists the capabilities containers and their networking need that this
// process's effective set lacks.
func missingCapabilities() []string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return []string{"(cannot read /proc/self/status)"}
	}
	var eff uint64
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			eff, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	need := []struct {
		bit  uint
		name string
	}{{12, "CAP_NET_ADMIN"}, {21, "CAP_SYS_ADMIN"}, {19, "CAP_SYS_PTRACE"}, {0, "CAP_CHOWN"}, {18, "CAP_SYS_CHROOT"}, {27, "CAP_MKNOD"}}
	var missing []string
	for _, c := range need {
		if eff&(1<<c.bit) == 0 {
			missing = append(missing, c.name)
		}
	}
	return missing
}

// probeCgroups creates and removes a cgroup where the kubelet will create kubepods.
func probeCgroups() error {
	probe := filepath.Join(cgroupRoot, memoryCgroups(), "drplan-probe-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil {
		return err // "mkdir <path>: <why>"
	}
	return os.Remove(probe)
}

// memoryCgroups is the memory controller's hierarchy relative to cgroupRoot: "memory" (v1) or ""
// (v2, the unified root).
func memoryCgroups() string {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		return ""
	}
	return "memory"
}

// staticBinary fails unless path is an ELF executable without a dynamic loader.
func staticBinary(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("it is dynamically linked; install busybox-static")
		}
	}
	return nil
}
