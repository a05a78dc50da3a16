package actions

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

func TestParseEgressPolicy(t *testing.T) {
	tests := []struct {
		name                string
		deny, allow, dh, ah string
		want                EgressPolicy
		wantErr             string
	}{
		{name: "empty", want: EgressPolicy{}},
		{name: "default", deny: DefaultHTTPDenyCIDRs, want: EgressPolicy{DenyCIDRs: []netip.Prefix{
			netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::/128"),
			netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fe80::/10"),
			netip.MustParsePrefix("fd00:ec2::254/128"), netip.MustParsePrefix("100.100.100.200/32")}}},
		{name: "spaces, empty entries, bare addresses, host bits", deny: " 10.1.2.3/8 ,, 169.254.169.254", allow: "::1",
			dh: "Metadata.Internal., *.svc.cluster.local", ah: "ok.svc.cluster.local",
			want: EgressPolicy{
				DenyCIDRs:  []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("169.254.169.254/32")},
				AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("::1/128")},
				DenyHosts:  []string{"metadata.internal", "*.svc.cluster.local"},
				AllowHosts: []string{"ok.svc.cluster.local"}}},
		{name: "bad CIDR", deny: "127.0.0.0/8,10.0.0.0/33",
			wantErr: `--http-deny-cidrs: "10.0.0.0/33" is not a CIDR: netip.ParsePrefix("10.0.0.0/33"): prefix length out of range`},
		{name: "not an address", allow: "localhost",
			wantErr: `--http-allow-cidrs: "localhost" is neither a CIDR nor an address`},
		{name: "mapped CIDR", deny: "::ffff:127.0.0.0/104",
			wantErr: `--http-deny-cidrs: "::ffff:127.0.0.0/104" is an IPv4-mapped IPv6 CIDR: give the IPv4 one (addresses are compared unmapped)`},
		{name: "URL as a host", dh: "http://metadata/",
			wantErr: `--http-deny-hosts: "http://metadata/" is not a host name or *.domain (no scheme, port or path)`},
		{name: "port and inner wildcard", ah: "a:80", dh: "a.*.b",
			wantErr: `--http-deny-hosts: "a.*.b" is not a host name or *.domain (no scheme, port or path)` + "\n" +
				`--http-allow-hosts: "a:80" is not a host name or *.domain (no scheme, port or path)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEgressPolicy(tc.deny, tc.allow, tc.dh, tc.ah)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestEgressPolicyRules(t *testing.T) {
	p, err := ParseEgressPolicy("127.0.0.0/8,::1,10.0.0.0/8", "10.1.0.0/16", "*.internal,blocked.example", "ok.internal")
	require.NoError(t, err)
	for addr, want := range map[string]string{
		"127.0.0.1":        "address 127.0.0.1 is refused by --http-deny-cidrs 127.0.0.0/8",
		"::ffff:127.0.0.2": "address 127.0.0.2 is refused by --http-deny-cidrs 127.0.0.0/8", // compared unmapped
		"::1":              "address ::1 is refused by --http-deny-cidrs ::1/128",
		"10.2.3.4":         "address 10.2.3.4 is refused by --http-deny-cidrs 10.0.0.0/8",
		"10.1.3.4":         "", // allow wins
		"192.0.2.1":        "",
	} {
		err := p.checkAddr(netip.MustParseAddr(addr))
		if want == "" {
			assert.NoError(t, err, addr)
		} else {
			assert.EqualError(t, err, want, addr)
		}
	}
	for host, want := range map[string]string{
		"metadata.internal": "host metadata.internal is refused by --http-deny-hosts *.internal",
		"A.B.Internal.":     "host a.b.internal is refused by --http-deny-hosts *.internal",
		"internal":          "", // *.internal is below it
		"ok.internal":       "",
		"blocked.example":   "host blocked.example is refused by --http-deny-hosts blocked.example",
		"x.blocked.example": "",
		"127.0.0.1":         "address 127.0.0.1 is refused by --http-deny-cidrs 127.0.0.0/8",
		"::1":               "address ::1 is refused by --http-deny-cidrs ::1/128",
		"example.com":       "",
	} {
		err := p.checkHost(host)
		if want == "" {
			assert.NoError(t, err, host)
		} else {
			assert.EqualError(t, err, want, host)
		}
	}
}

// loopbackDenied is the chart's default policy: loopback refused.
func loopbackDenied(t testing.TB) *HTTPRunner {
	p, err := ParseEgressPolicy(DefaultHTTPDenyCIDRs, "", "", "")
	require.NoError(t, err)
	r := NewHTTPRunner(newTestEnv(t), NewHTTPClient(p))
	r.sleep = (&recordedSleeps{}).sleep
	return r
}

func TestHTTPEgressRefusesLoopback(t *testing.T) {
	srv, served := scriptedHTTPServer(t, httpReply{status: 200})
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	runner := loopbackDenied(t)
	retry := &drv1.HTTPRetry{Limit: 3}

	// The address itself, and a name resolving to it: refused at connection time, not retried.
	res, err := runner.Run(context.Background(), httpRequest(drv1.HTTPAction{URL: srv.URL + "/x", Retry: retry}))
	require.EqualError(t, err, "POST "+srv.URL+"/x: address 127.0.0.1 is refused by --http-deny-cidrs 127.0.0.0/8; "+
		"not retried after 1 attempt: only failures to connect, timeouts, 429 and 5xx are")
	assert.Zero(t, res.Retries)
	assert.Nil(t, res.HTTPResponse)

	byName := "http://localhost:" + strconv.Itoa(port) + "/x"
	_, err = runner.Run(context.Background(), httpRequest(drv1.HTTPAction{URL: byName}))
	require.Error(t, err)
	// localhost may resolve to ::1 first; either is refused by its own rule.
	assert.Regexp(t, `^POST `+byName+`: address (127\.0\.0\.1 is refused by --http-deny-cidrs 127\.0\.0\.0/8|::1 is refused by --http-deny-cidrs ::1/128)$`, err.Error())

	// 0.0.0.0 reaches this host too.
	_, err = runner.Run(context.Background(), httpRequest(drv1.HTTPAction{URL: "http://0.0.0.0:" + strconv.Itoa(port) + "/x"}))
	require.EqualError(t, err, "POST http://0.0.0.0:"+strconv.Itoa(port)+"/x: address 0.0.0.0 is refused by --http-deny-cidrs 0.0.0.0/8")
	assert.Zero(t, served.Load(), "nothing reached the server")
}

func TestHTTPEgressAllowedAddressesWork(t *testing.T) {
	srv, served := scriptedHTTPServer(t, httpReply{status: 200, body: "ok"})
	p, err := ParseEgressPolicy(DefaultHTTPDenyCIDRs, "127.0.0.1", "", "")
	require.NoError(t, err)
	runner := NewHTTPRunner(newTestEnv(t), NewHTTPClient(p))
	res, err := runner.Run(context.Background(), httpRequest(drv1.HTTPAction{URL: srv.URL}))
	require.NoError(t, err)
	assert.Equal(t, &drv1.HTTPResponse{StatusCode: 200, Body: "ok"}, res.HTTPResponse)
	// The zero policy refuses nothing.
	_, err = NewHTTPRunner(newTestEnv(t), NewHTTPClient(EgressPolicy{})).Run(context.Background(), httpRequest(drv1.HTTPAction{URL: srv.URL}))
	require.NoError(t, err)
	assert.EqualValues(t, 2, served.Load())
}

// TestHTTPEgressRedirect: an allowed server redirecting to a denied address or host is refused at
// that hop, and the message names the hop.
func TestHTTPEgressRedirect(t *testing.T) {
	denied, served := scriptedHTTPServer(t, httpReply{status: 200})
	deniedPort := strconv.Itoa(denied.Listener.Addr().(*net.TCPAddr).Port)
	// The allowed server listens on another loopback address, allowed by --http-allow-cidrs.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 on this host: %v", err)
	}
	redirector := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusTemporaryRedirect)
	}))
	redirector.Listener = ln
	redirector.Start()
	t.Cleanup(redirector.Close)

	p, err := ParseEgressPolicy(DefaultHTTPDenyCIDRs, "127.0.0.2", "*.internal", "")
	require.NoError(t, err)
	runner := NewHTTPRunner(newTestEnv(t), NewHTTPClient(p))
	for _, tc := range []struct{ to, want string }{
		{to: denied.URL + "/x?token=s3cret", want: "address 127.0.0.1 is refused by --http-deny-cidrs 127.0.0.0/8 (redirect to " + denied.URL + "/x?token=xxxxx)"},
		{to: "http://localhost:" + deniedPort + "/x", want: "is refused by --http-deny-cidrs"},
		{to: "http://metadata.internal/", want: "host metadata.internal is refused by --http-deny-hosts *.internal (redirect to http://metadata.internal/)"},
	} {
		from := redirector.URL + "/?to=" + url.QueryEscape(tc.to)
		_, err := runner.Run(context.Background(), httpRequest(drv1.HTTPAction{URL: from}))
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
		assert.Contains(t, err.Error(), "POST "+redirector.URL+"/?to=xxxxx: ")
	}
	assert.Zero(t, served.Load(), "nothing reached the denied server")
}
