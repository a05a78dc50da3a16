package actions

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
)

// The flags of the HTTP egress policy; refusals name them.
const (
	FlagHTTPDenyCIDRs  = "--http-deny-cidrs"
	FlagHTTPAllowCIDRs = "--http-allow-cidrs"
	FlagHTTPDenyHosts  = "--http-deny-hosts"
	FlagHTTPAllowHosts = "--http-allow-hosts"
)

// DefaultHTTPDenyCIDRs is the chart's and the binary's default --http-deny-cidrs: this host
// (0.0.0.0 and :: reach it too), loopback, link-local (where the cloud metadata services of AWS,
// GCP, Azure and Tencent Cloud answer, 169.254.169.254 and 169.254.0.23), AWS's IPv6 metadata
// address and Alibaba Cloud's metadata address.
const DefaultHTTPDenyCIDRs = "0.0.0.0/8,127.0.0.0/8,::/128,::1/128,169.254.0.0/16,fe80::/10,fd00:ec2::254/128,100.100.100.200/32"

// EgressPolicy says where HTTP actions may connect. Each kind of rule is decided on its own, allow
// winning over deny:
//   - the host of the URL of every request, the first and each redirect hop, is refused if it
//     matches a DenyHosts entry and no AllowHosts entry (before any name resolution);
//   - every address a connection is made to, once the name is resolved (at connection time, so
//     that DNS cannot route around it), is refused if it is in a DenyCIDRs prefix and in no
//     AllowCIDRs prefix. A URL whose host is an address literal is checked before the request
//     too, so that a proxy cannot route around it.
//
// Through a proxy (HTTP_PROXY, HTTPS_PROXY), the connection is to the proxy, whose address the
// CIDR rules check; the proxy resolves the URL's names, so it must enforce the rest.
//
// A host entry is a name, matched whole and case-insensitively ("vault.example.com"), or
// "*.example.com", matching every name under example.com (not example.com itself). The zero
// policy refuses nothing.
type EgressPolicy struct {
	DenyCIDRs, AllowCIDRs []netip.Prefix
	DenyHosts, AllowHosts []string
}

// ParseEgressPolicy reads the four flags, each a comma-separated list (empty entries ignored). A
// CIDR may be a bare address (a prefix of that address alone).
func ParseEgressPolicy(denyCIDRs, allowCIDRs, denyHosts, allowHosts string) (EgressPolicy, error) {
	var p EgressPolicy
	var errs []error
	for _, f := range []struct {
		flag, list string
		into       *[]netip.Prefix
	}{{FlagHTTPDenyCIDRs, denyCIDRs, &p.DenyCIDRs}, {FlagHTTPAllowCIDRs, allowCIDRs, &p.AllowCIDRs}} {
		for _, s := range splitList(f.list) {
			prefix, err := parseCIDR(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.flag, err))
				continue
			}
			*f.into = append(*f.into, prefix)
		}
	}
	for _, f := range []struct {
		flag, list string
		into       *[]string
	}{{FlagHTTPDenyHosts, denyHosts, &p.DenyHosts}, {FlagHTTPAllowHosts, allowHosts, &p.AllowHosts}} {
		for _, s := range splitList(f.list) {
			host, err := parseHostPattern(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.flag, err))
				continue
			}
			*f.into = append(*f.into, host)
		}
	}
	if len(errs) > 0 {
		return EgressPolicy{}, errors.Join(errs...)
	}
	return p, nil
}

func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func parseCIDR(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		addr, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an address", s)
		}
		addr = addr.Unmap()
		return netip.PrefixFrom(addr, addr.BitLen()), nil
	}
	prefix, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR: %w", s, err)
	}
	if prefix.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 CIDR: give the IPv4 one (addresses are compared unmapped)", s)
	}
	return prefix.Masked(), nil
}

func parseHostPattern(s string) (string, error) {
	host := strings.TrimSuffix(strings.ToLower(s), ".")
	name := strings.TrimPrefix(host, "*.")
	if name == "" || strings.ContainsAny(name, "*/:@ \t[]") {
		return "", fmt.Errorf("%q is not a host name or *.domain (no scheme, port or path)", s)
	}
	return host, nil
}

// EgressRefusedError is a connection or request the policy refuses. It is not transient: the
// call is not retried.
type EgressRefusedError struct {
	What string // "address 127.0.0.1" or "host metadata.internal"
	Rule string // "--http-deny-cidrs 127.0.0.0/8"
}

func (e *EgressRefusedError) Error() string { return e.What + " is refused by " + e.Rule }

// Empty says the policy refuses nothing.
func (p EgressPolicy) Empty() bool { return len(p.DenyCIDRs) == 0 && len(p.DenyHosts) == 0 }

// checkAddr refuses an address in a denied prefix and no allowed one.
func (p EgressPolicy) checkAddr(addr netip.Addr) error {
	addr = addr.Unmap()
	for _, deny := range p.DenyCIDRs {
		if !deny.Contains(addr) {
			continue
		}
		for _, allow := range p.AllowCIDRs {
			if allow.Contains(addr) {
				return nil
			}
		}
		return &EgressRefusedError{What: "address " + addr.String(), Rule: FlagHTTPDenyCIDRs + " " + deny.String()}
	}
	return nil
}

// checkHost refuses a URL host matching a denied host entry and no allowed one; a host that is an
// address literal goes through the CIDR rules as well.
func (p EgressPolicy) checkHost(host string) error {
	if addr, err := netip.ParseAddr(host); err == nil {
		if err := p.checkAddr(addr); err != nil {
			return err
		}
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, deny := range p.DenyHosts {
		if !hostMatches(deny, host) {
			continue
		}
		for _, allow := range p.AllowHosts {
			if hostMatches(allow, host) {
				return nil
			}
		}
		return &EgressRefusedError{What: "host " + host, Rule: FlagHTTPDenyHosts + " " + deny}
	}
	return nil
}

func hostMatches(pattern, host string) bool {
	if domain, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(host, "."+domain)
	}
	return pattern == host
}

// control is the net.Dialer's Control: it sees the resolved address of every connection attempt.
func (p EgressPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("egress policy: cannot read the address %q: %w", address, err)
	}
	return p.checkAddr(ap.Addr())
}

// egressTransport checks the host rules (and an address literal) of every request the client
// sends: the first and each redirect hop.
type egressTransport struct {
	policy EgressPolicy
	next   http.RoundTripper
}

func (t *egressTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.policy.checkHost(req.URL.Hostname()); err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // a RoundTripper closes the body, even on errors
		}
		return nil, err
	}
	return t.next.RoundTrip(req)
}

// newEgressDialer is a dialer whose every connection attempt is checked against p.
func newEgressDialer(d *net.Dialer, p EgressPolicy) *net.Dialer {
	if len(p.DenyCIDRs) > 0 {
		d.Control = p.control
	}
	return d
}
