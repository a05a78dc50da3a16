package controlplane

import (
	"slices"
	"strings"
	"testing"
)

// TestNodeIPTablesEntry: the node's entries are the kubelet's and the CNI plugins' chains, the
// rules in them or jumping to them, and rules naming the pod bridge or subnet; another program's
// are not.
func TestNodeIPTablesEntry(t *testing.T) {
	tests := []struct {
		entry string
		ours  bool
	}{
		{":KUBE-FIREWALL -", true},
		{":CNI-abc123 -", true},
		{":DOCKER -", false},
		{":DRPLAN-OTHER-1 -", false},
		{"-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -j DROP", true},
		{"-A INPUT -j KUBE-FIREWALL", true},
		{"-A POSTROUTING -s 10.244.0.7/32 -g CNI-abc123", true},
		{"-A FORWARD -i drplan0 -j ACCEPT", true},
		{"-A POSTROUTING -s 10.244.0.0/24 ! -o drplan0 -j MASQUERADE", true},
		{"-A INPUT -j DOCKER-USER", false},
		{"-A DRPLAN-OTHER-1 -j RETURN", false},
		{"-A FORWARD -i docker0 -j ACCEPT", false},
		{"-A INPUT -m comment --comment KUBE-FIREWALL -j ACCEPT", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := nodeIPTablesEntry(tc.entry); got != tc.ours {
			t.Errorf("nodeIPTablesEntry(%q) = %t, want %t", tc.entry, got, tc.ours)
		}
	}
}

// TestSysctlSetByNode: a sysctl is the node's change only when it now holds the value the node
// sets and did not before.
func TestSysctlSetByNode(t *testing.T) {
	tests := []struct {
		name, before, now string
		ours              bool
	}{
		{"kernel.panic", "1", "10", true},       // the kubelet set it
		{"kernel.panic", "1", "7", false},       // another program set it
		{"kernel.panic", "10", "10", false},     // it was already the node's value
		{"kernel.panic", "1", "1", false},       // unchanged
		{"net.ipv4.ip_forward", "0", "1", true}, // the bridge plugin set it
		{"vm.swappiness", "60", "1", false},     // not a sysctl the node sets
	}
	for _, tc := range tests {
		if got := sysctlSetByNode(tc.name, tc.before, tc.now); got != tc.ours {
			t.Errorf("sysctlSetByNode(%s, %s -> %s) = %t, want %t", tc.name, tc.before, tc.now, got, tc.ours)
		}
	}
}

// TestHostDiff: the check reports what the node's domain gained or lost and the sysctls at the
// node's values; a record of an older version, which held the whole host, is first narrowed to
// the domain, so that other programs' cgroups, links, mounts and chains are not judged.
func TestHostDiff(t *testing.T) {
	old := hostState{
		IPTables: map[string][]string{"iptables/filter": {":DOCKER -", "-A INPUT -j DOCKER"}},
		Cgroups:  []string{"memory/process_api", "memory/process_api/abc", "cpu/user.slice"},
		Sysctls:  map[string]string{"kernel.panic": "1", "net.ipv4.ip_forward": "0"},
		Paths:    map[string]bool{"/var/lib/kubelet": false},
		Links:    []string{"lo", "eth0"},
		Mounts:   []string{"/", "/proc", "/var/lib/kubelet/pods/x"},
	}.inDomain()
	if len(old.Cgroups)+len(old.Links)+len(old.IPTables["iptables/filter"]) != 0 || !slices.Equal(old.Mounts, []string{"/var/lib/kubelet/pods/x"}) {
		t.Fatalf("inDomain kept more than the node's domain: %+v", old)
	}
	now := hostState{
		IPTables: map[string][]string{"iptables/filter": {":KUBE-FIREWALL -"}},
		Cgroups:  []string{"memory/kubepods", "memory/kubepods/besteffort"},
		Sysctls:  map[string]string{"kernel.panic": "7", "net.ipv4.ip_forward": "1"},
		Paths:    map[string]bool{"/var/lib/kubelet": true},
		Links:    []string{nodeBridge, "veth1234"},
	}
	got := strings.Join(old.diff(now), "\n")
	want := strings.Join([]string{
		`cgroup "memory/kubepods" added`,
		`cgroup "memory/kubepods/besteffort" added`,
		`network interface "drplan0" added`,
		`network interface "veth1234" added`,
		`mount "/var/lib/kubelet/pods/x" removed`,
		`iptables/filter entry ":KUBE-FIREWALL -" added`,
		`sysctl net.ipv4.ip_forward is 1 (the node's value), was 0`,
		`/var/lib/kubelet exists=true, was false`,
	}, "\n")
	if got != want {
		t.Errorf("diff:\n%s\nwant:\n%s", got, want)
	}
	if d := old.diff(old); len(d) != 0 {
		t.Errorf("a state differs from itself: %v", d)
	}
}
