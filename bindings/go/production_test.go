package revledger

// Publishing to Redis as it runs in production (docs/SYNC.md §6): TLS with the server
// verified against a CA the test generates, mutual TLS, an ACL user that may only append,
// a password file, and Sentinel discovery. Each test starts its own redis-server (and
// redis-sentinel) on free loopback ports and a `revledger sync` that reads with a user
// that may only read.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testPKI is a CA and leaf certificates for 127.0.0.1, as PEM files in dir.
type testPKI struct {
	dir                       string
	ca, serverCert, serverKey string
	clientCert, clientKey     string
	pool                      *x509.CertPool
	client                    tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "revledger go test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(cn string, serial int64) ([]byte, []byte) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalPKCS8PrivateKey(k)
		return der, kder
	}
	sc, sk := leaf("localhost", 2)
	cc, ck := leaf("publisher", 3)
	p := &testPKI{dir: dir, ca: write("ca.pem", "CERTIFICATE", caDER),
		serverCert: write("server.pem", "CERTIFICATE", sc), serverKey: write("server.key", "PRIVATE KEY", sk),
		clientCert: write("client.pem", "CERTIFICATE", cc), clientKey: write("client.key", "PRIVATE KEY", ck),
		pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	p.client, err = tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProcess starts a server process with a config file; killed at the test's end.
func startProcess(t *testing.T, program, conf string) {
	t.Helper()
	if _, err := exec.LookPath(program); err != nil {
		t.Fatalf("%s is not installed (scripts/install-deps installs it)", program)
	}
	cmd := exec.Command(program, conf)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", program, err)
	}
	t.Cleanup(func() { killProcess(cmd) })
}

const (
	goSyncPW = "go-sync-pw-123"
	goPubPW  = "go-pub-pw-456"
)

func TestPublishOverTLSWithAnACLUserAndAPasswordFile(t *testing.T) {
	pki := newTestPKI(t)
	port := freePort(t)
	conf := filepath.Join(pki.dir, "redis.conf")
	os.WriteFile(conf, []byte("port 0\ntls-port "+strconv.Itoa(port)+"\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir "+pki.dir+
		"\ntls-cert-file "+pki.serverCert+"\ntls-key-file "+pki.serverKey+"\ntls-ca-cert-file "+pki.ca+
		"\ntls-auth-clients yes\nuser default off\n"+
		"user syncer on >"+goSyncPW+" resetkeys ~revocations resetchannels -@all +xread +xinfo|stream +ping\n"+
		"user publisher on >"+goPubPW+" resetkeys ~revocations resetchannels -@all +xadd +wait +ping\n"), 0o600)
	startProcess(t, "redis-server", conf)
	pwFile := func(name, pw string) string {
		p := filepath.Join(pki.dir, name)
		os.WriteFile(p, []byte(pw+"\n"), 0o600)
		return p
	}
	addr := "rediss://publisher@127.0.0.1:" + strconv.Itoa(port) + "/"
	tlsCfg := &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}}
	ctx := context.Background()
	start := time.Now()
	rule := func(sub string) Rule {
		return Rule{Scope: ScopeSubject, Tenant: b("acme"), Key: b(sub), At: 1_700_000_000}
	}

	var p *Publisher
	var lastErr error
	waitUntil(t, "the TLS redis-server takes a publish", func() bool {
		var err error
		p, err = NewPublisher(addr, "revocations", WithTLS(tlsCfg), WithPasswordFile(pwFile("pub.pw", goPubPW)))
		if err != nil {
			t.Fatal(err)
		}
		_, lastErr = p.Publish(ctx, rule("john"))
		if lastErr != nil && time.Since(start) > 10*time.Second {
			t.Fatalf("the TLS redis-server refuses the publish: %v", lastErr)
		}
		return lastErr == nil
	})
	defer p.Close()

	path := filepath.Join(t.TempDir(), "host.ledger")
	startSync(t, "rediss://syncer@127.0.0.1:"+strconv.Itoa(port)+"/", "revocations", path,
		"--redis-password-file", pwFile("sync.pw", goSyncPW), "--tls-ca", pki.ca,
		"--tls-cert", pki.clientCert, "--tls-key", pki.clientKey)
	gw := readerOf(t, path)
	revoked := func(sub string) bool {
		return mustCheck(t, gw, &Token{Tenant: b("acme"), Subject: b(sub), IssuedAt: 1_699_999_999}).Revoked
	}
	waitUntil(t, "sync applies the rule published over TLS", func() bool { return revoked("john") })

	// The publisher user may append, not read or write other keys.
	other, err := NewPublisher(addr, "other-stream", WithTLS(tlsCfg), WithPasswordFile(pwFile("pub.pw", goPubPW)))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var re *RedisError
	if _, err := other.Publish(ctx, rule("x")); !errors.As(err, &re) || !strings.HasPrefix(re.Message, "NOPERM") {
		t.Errorf("publishing to another key: %v, want NOPERM", err)
	}

	// Wrong password: refused, and the error does not print it.
	bad, _ := NewPublisher(addr, "revocations", WithTLS(tlsCfg), WithPasswordFile(pwFile("bad.pw", "not-the-pw")))
	_, err = bad.Publish(ctx, rule("x"))
	if err == nil || strings.Contains(err.Error(), "not-the-pw") {
		t.Errorf("wrong password: %v", err)
	}
	// A server the CA did not sign: the handshake fails.
	other2 := newTestPKI(t)
	wrongCA, _ := NewPublisher(addr, "revocations", WithTLS(&tls.Config{RootCAs: other2.pool, Certificates: []tls.Certificate{pki.client}}),
		WithPasswordFile(pwFile("pub.pw", goPubPW)))
	if _, err := wrongCA.Publish(ctx, rule("x")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("server signed by an unknown CA: %v", err)
	}
	// No client certificate while the server requires one.
	noCert, _ := NewPublisher(addr, "revocations", WithTLS(&tls.Config{RootCAs: pki.pool}), WithPasswordFile(pwFile("pub.pw", goPubPW)))
	if _, err := noCert.Publish(ctx, rule("x")); err == nil {
		t.Error("no client certificate: published")
	}
	if _, err := NewPublisher(addr, "revocations", WithTLS(&tls.Config{InsecureSkipVerify: true})); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("InsecureSkipVerify: %v, want ErrInvalidArgument", err)
	}
	if _, err := NewPublisher(addr, "revocations", WithPasswordFile(filepath.Join(pki.dir, "missing"))); err != nil {
		t.Fatalf("the password file is read at connection time: %v", err)
	}
}

func TestPublishThroughSentinelWaitingForAReplica(t *testing.T) {
	dir := t.TempDir()
	primary, replica, sentinel := freePort(t), freePort(t), freePort(t)
	for _, c := range []struct {
		port  int
		extra string
	}{{primary, ""}, {replica, "replicaof 127.0.0.1 " + strconv.Itoa(primary) + "\n"}} {
		d := filepath.Join(dir, strconv.Itoa(c.port))
		os.Mkdir(d, 0o700)
		conf := filepath.Join(d, "redis.conf")
		os.WriteFile(conf, []byte("port "+strconv.Itoa(c.port)+"\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir "+d+"\n"+c.extra), 0o600)
		startProcess(t, "redis-server", conf)
	}
	sconf := filepath.Join(dir, "sentinel.conf")
	os.WriteFile(sconf, []byte("port "+strconv.Itoa(sentinel)+"\nbind 127.0.0.1\ndir "+dir+
		"\nsentinel monitor gomaster 127.0.0.1 "+strconv.Itoa(primary)+" 1\n"), 0o600)
	startProcess(t, "redis-sentinel", sconf)
	rep := &redisServer{t: t, port: replica}
	waitUntil(t, "the replica is in sync", func() bool {
		v, err := rep.do("INFO", "replication")
		s, _ := v.(string)
		return err == nil && strings.Contains(s, "master_link_status:up")
	})

	ctx := context.Background()
	dead := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p, err := NewPublisher("redis://gomaster/", "revocations",
		WithSentinels(dead, "127.0.0.1:"+strconv.Itoa(sentinel)), WithWaitReplicas(1, 2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var id string
	waitUntil(t, "the sentinel names the primary and a replica acknowledges", func() bool {
		id, err = p.Publish(ctx, Rule{Scope: ScopeRole, Tenant: b("acme"), Key: b("admin"), At: 5})
		return err == nil
	})
	if ids := rep.streamIDs("revocations"); len(ids) == 0 || ids[len(ids)-1] != id {
		t.Errorf("the replica holds %v, want the entry %s", ids, id)
	}

	// Asking for more replicas than there are: the entry is published, the error says it
	// may not survive a failover.
	p2, _ := NewPublisher("redis://gomaster/", "revocations",
		WithSentinels("127.0.0.1:"+strconv.Itoa(sentinel)), WithWaitReplicas(2, 100*time.Millisecond))
	defer p2.Close()
	var nr *NotReplicatedError
	if _, err := p2.Publish(ctx, Rule{Scope: ScopeGlobal, At: 5}); !errors.As(err, &nr) || nr.Acked != 1 || nr.Wanted != 2 {
		t.Errorf("WAIT 2 with one replica: %v", err)
	}
	p3, _ := NewPublisher("redis://nosuchmaster/", "revocations", WithSentinels("127.0.0.1:"+strconv.Itoa(sentinel)))
	defer p3.Close()
	if _, err := p3.Publish(ctx, Rule{Scope: ScopeGlobal, At: 5}); err == nil || !strings.Contains(err.Error(), "no sentinel named") {
		t.Errorf("unknown primary: %v", err)
	}
}
