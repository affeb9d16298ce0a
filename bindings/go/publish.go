package revledger

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Publishing rules to a Redis stream for `revledger sync` (docs/SYNC.md §2): one XADD
// per rule, over a plain TCP connection speaking just enough RESP for AUTH, SELECT and
// XADD, so the package needs no Redis client module.

// MaxNoteLen is the longest reason or origin a Publisher sends, in bytes.
const MaxNoteLen = 4096

// publishTimeout bounds dialing and each round trip when the context sets no earlier
// deadline (as the Rust publisher's 5 s).
const publishTimeout = 5 * time.Second

// Default trimming (docs/SYNC.md §3), as `revledger publish`: entries older than one day
// plus five minutes are dropped.
const (
	DefaultTrimLifetime = 24 * time.Hour
	DefaultTrimLeeway   = 5 * time.Minute
)

// NowCutoff is "now" as a rule's cutoff: the current Unix time rounded up to the next
// second, so that a token issued in the current second counts as issued before.
func NowCutoff() int64 { return time.Now().Unix() + 1 }

// Notes are optional texts published with a rule for the people reading the stream
// (why, and who); sync processes ignore them. Empty means absent.
type Notes struct {
	Reason string
	Origin string
}

// PublishOption configures Publish and NewPublisher.
type PublishOption func(*publishConfig)

type publishConfig struct {
	trim         bool
	lifetime     int64 // seconds
	leeway       int64 // seconds
	notes        Notes
	dialer       net.Dialer
	tlsConfig    *tls.Config // nil: TLS only for rediss://, with the system's roots
	passwordFile string
	sentinels    []string
	waitReplicas int
	waitTimeout  time.Duration
	kid          string
	signingKey   ed25519.PrivateKey
}

// WithTrim trims the stream by age on every XADD (MINID now − maxTokenLifetime −
// leeway, exact): a host catching up from the stream's beginning then reads exactly the
// rules that can still revoke a live token. maxTokenLifetime must be at least that of
// every ledger fed from the stream (rounded up to seconds, > 0); leeway covers clock
// skew (≥ 0). The default is WithTrim(DefaultTrimLifetime, DefaultTrimLeeway). A rule
// that the trimming would drop while it still matters (a cutoff more than leeway ahead,
// a token's exp more than maxTokenLifetime + leeway ahead) is refused.
func WithTrim(maxTokenLifetime, leeway time.Duration) PublishOption {
	return func(c *publishConfig) {
		c.trim = true
		c.lifetime = seconds(maxTokenLifetime)
		c.leeway = seconds(leeway)
	}
}

// WithoutTrim publishes without trimming (something else keeps the stream bounded) and
// without the check that goes with it.
func WithoutTrim() PublishOption {
	return func(c *publishConfig) { c.trim = false }
}

// WithReason publishes a reason with each rule (for people; sync ignores it).
func WithReason(reason string) PublishOption {
	return func(c *publishConfig) { c.notes.Reason = reason }
}

// WithOrigin publishes an origin (who published) with each rule.
func WithOrigin(origin string) PublishOption {
	return func(c *publishConfig) { c.notes.Origin = origin }
}

// WithTLS connects over TLS with this configuration (RootCAs: the CAs that sign the
// server's certificate, nil for the system's; Certificates: a client certificate for
// mutual TLS). The server is always verified: a config with InsecureSkipVerify is
// refused. A rediss:// address uses TLS even without this option.
func WithTLS(cfg *tls.Config) PublishOption {
	return func(c *publishConfig) { c.tlsConfig = cfg }
}

// WithPasswordFile authenticates with the password held in the first line of this
// file, read at each connection (a rotated password is used from the next reconnect) and
// never printed. It overrides a password in the address.
func WithPasswordFile(path string) PublishOption {
	return func(c *publishConfig) { c.passwordFile = path }
}

// WithSentinels finds the primary through these sentinels ("host:port", or
// "rediss://host:port" for a sentinel behind TLS): the address's host is then the
// primary's name as Sentinel knows it ("rediss://publisher@mymaster/0"). Every new
// connection asks them again, so a failover is followed.
func WithSentinels(sentinels ...string) PublishOption {
	return func(c *publishConfig) { c.sentinels = append([]string(nil), sentinels...) }
}

// WithWaitReplicas makes each publish wait until n replicas acknowledge the entry (WAIT,
// at most timeout); fewer is a *NotReplicatedError, and the caller publishes again. A
// publish that returned then survives a failover.
func WithWaitReplicas(n int, timeout time.Duration) PublishOption {
	return func(c *publishConfig) {
		c.waitReplicas = n
		c.waitTimeout = timeout
	}
}

// NotReplicatedError says that an entry reached fewer replicas than WithWaitReplicas
// asked for: a failover could lose it. Publishing it again is harmless.
type NotReplicatedError struct {
	ID     string
	Acked  int
	Wanted int
}

func (e *NotReplicatedError) Error() string {
	return fmt.Sprintf("revledger: redis: entry %s reached %d replica(s) of the %d asked for in time: a failover could lose it; publish it again", e.ID, e.Acked, e.Wanted)
}

// RedisError is an error reply from Redis (e.g. "WRONGPASS ..." or "ERR ...").
type RedisError struct {
	Message string
}

func (e *RedisError) Error() string { return "revledger: redis: " + e.Message }

// redisAddr is where and how to connect.
type redisAddr struct {
	tls      bool
	loneUser bool // the URL's user part had no ":": a password, or with a password file the user
	hostport string
	username string
	password string
	hasPass  bool
	db       int
}

// parseRedisAddr takes "host:port" or "redis://[[user]:password@]host[:port][/db]".
func parseRedisAddr(addr string) (redisAddr, error) {
	bad := func(why string) (redisAddr, error) {
		return redisAddr{}, &Error{Status: StatusInvalidArgument, Message: "invalid argument: redis address " + strconv.Quote(addr) + ": " + why}
	}
	if !strings.Contains(addr, "://") {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return bad("want host:port or redis://[[user]:password@]host[:port][/db]")
		}
		return redisAddr{hostport: addr}, nil
	}
	u, err := url.Parse(addr)
	if err != nil {
		return bad(err.Error())
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return bad("only redis:// and rediss:// are supported (not " + u.Scheme + "://)")
	}
	if u.Hostname() == "" || u.RawQuery != "" || u.Fragment != "" {
		return bad("want redis://[[user]:password@]host[:port][/db]")
	}
	a := redisAddr{hostport: u.Host, tls: u.Scheme == "rediss"}
	if u.Port() == "" {
		a.hostport = net.JoinHostPort(u.Hostname(), "6379")
	}
	if u.User != nil {
		a.username = u.User.Username()
		a.password, a.hasPass = u.User.Password()
		if !a.hasPass && a.username != "" {
			// redis://secret@host: a lone user part is the password, as redis-cli -u reads it.
			a.password, a.username, a.hasPass, a.loneUser = a.username, "", true, true
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return bad("the database must be a number, not " + strconv.Quote(db))
		}
		a.db = n
	}
	return a, nil
}

// Publisher publishes rules to one Redis stream over one connection, made on first use
// and again after it broke. When the connection was found broken during a publish, the
// entry is sent once more on a new connection: an entry published twice changes no
// answer (rules are idempotent). Safe for concurrent use; publishes are serialised.
type Publisher struct {
	addr   redisAddr
	stream string
	cfg    publishConfig

	mu     sync.Mutex
	conn   net.Conn
	rd     *bufio.Reader
	closed bool
}

// NewPublisher returns a Publisher of rules to stream on the Redis at addr:
// "host:port" or "redis://[[user]:password@]host[:port][/db]". It connects on first use.
// The options are WithTrim or WithoutTrim, and WithReason / WithOrigin for notes sent
// with every rule (PublishWithNotes may give others).
func NewPublisher(addr, stream string, opts ...PublishOption) (*Publisher, error) {
	a, err := parseRedisAddr(addr)
	if err != nil {
		return nil, err
	}
	if stream == "" || len(stream) > MaxKeyLen {
		return nil, invalid(fmt.Sprintf("the stream name must be 1 to %d bytes long", MaxKeyLen))
	}
	cfg := publishConfig{trim: true, lifetime: seconds(DefaultTrimLifetime), leeway: seconds(DefaultTrimLeeway)}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.trim && (cfg.lifetime <= 0 || cfg.leeway < 0) {
		return nil, invalid("trimming by age needs a max token lifetime > 0 and a leeway >= 0")
	}
	if err := checkNotes(cfg.notes); err != nil {
		return nil, err
	}
	if cfg.passwordFile != "" && a.loneUser {
		// redis://user@host with a password file: the lone part names the user.
		a.username, a.password, a.hasPass, a.loneUser = a.password, "", false, false
	}
	if cfg.tlsConfig != nil && cfg.tlsConfig.InsecureSkipVerify {
		return nil, invalid("InsecureSkipVerify turns off the server's verification, which revledger does not do: give RootCAs instead")
	}
	if cfg.signingKey != nil {
		if len(cfg.signingKey) != ed25519.PrivateKeySize {
			return nil, invalid("the signing key is not an Ed25519 private key")
		}
		if err := checkKid(cfg.kid); err != nil {
			return nil, err
		}
	}
	if cfg.waitReplicas < 0 || (cfg.waitReplicas > 0 && cfg.waitTimeout <= 0) {
		return nil, invalid("WithWaitReplicas needs n >= 0 and a positive timeout")
	}
	return &Publisher{addr: a, stream: stream, cfg: cfg}, nil
}

// Publish publishes one rule to stream on the Redis at addr over a connection of its
// own, and returns the id Redis gave the entry ("<ms>-<seq>"). To publish many, keep a
// Publisher. See NewPublisher for addr and the options.
func Publish(ctx context.Context, addr, stream string, rule Rule, opts ...PublishOption) (string, error) {
	p, err := NewPublisher(addr, stream, opts...)
	if err != nil {
		return "", err
	}
	defer p.Close()
	return p.Publish(ctx, rule)
}

// Stream is the stream this publisher writes to.
func (p *Publisher) Stream() string { return p.stream }

// Publish publishes rule (with the notes of WithReason / WithOrigin, if any) and
// returns the id Redis gave its entry, "<ms>-<seq>", once Redis holds it. ctx bounds
// the whole call (5 s per network step when it sets no earlier deadline).
func (p *Publisher) Publish(ctx context.Context, rule Rule) (string, error) {
	return p.PublishWithNotes(ctx, rule, p.cfg.notes)
}

// PublishWithNotes publishes rule with these notes; an empty one is the publisher's
// (WithReason / WithOrigin).
func (p *Publisher) PublishWithNotes(ctx context.Context, rule Rule, notes Notes) (string, error) {
	now := time.Now()
	if notes.Reason == "" {
		notes.Reason = p.cfg.notes.Reason
	}
	if notes.Origin == "" {
		notes.Origin = p.cfg.notes.Origin
	}
	if err := validateRule(rule); err != nil {
		return "", err
	}
	if err := checkNotes(notes); err != nil {
		return "", err
	}
	args := [][]byte{[]byte("XADD"), []byte(p.stream)}
	if p.cfg.trim {
		if err := p.checkTrim(rule, now.Unix()); err != nil {
			return "", err
		}
		args = append(args, []byte("MINID"), []byte(strconv.FormatInt(p.minID(now), 10)))
	}
	args = append(args, []byte("*"),
		[]byte("scope"), []byte(rule.Scope.String()),
		[]byte("tenant"), rule.Tenant,
		[]byte("key"), rule.Key,
		[]byte("at"), []byte(strconv.FormatInt(rule.At, 10)))
	if notes.Reason != "" {
		args = append(args, []byte("reason"), []byte(notes.Reason))
	}
	if notes.Origin != "" {
		args = append(args, []byte("origin"), []byte(notes.Origin))
	}
	if p.cfg.signingKey != nil {
		args = append(args, []byte("kid"), []byte(p.cfg.kid), []byte("sig"), signature(p.cfg.signingKey, p.stream, rule))
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return "", ErrClosed
	}
	reused := p.conn != nil
	reply, err := p.roundTrip(ctx, args)
	if err != nil && ctx.Err() == nil && (reused && isConnError(err) || isReadOnly(err)) {
		// The connection broke while idle (Redis restarted, a proxy dropped it), or the
		// server is no longer the primary (a failover): connect again — through the
		// sentinels, if any — and send once more.
		p.drop()
		reply, err = p.roundTrip(ctx, args)
	}
	if err != nil {
		return "", err
	}
	if reply == nil || !validEntryID(*reply) {
		p.drop()
		return "", fmt.Errorf("revledger: redis: XADD answered %s, not an entry id", describe(reply))
	}
	if p.cfg.waitReplicas > 0 {
		ms := p.cfg.waitTimeout.Milliseconds()
		if ms < 1 {
			ms = 1
		}
		acked, err := p.roundTrip(ctx, [][]byte{[]byte("WAIT"), []byte(strconv.Itoa(p.cfg.waitReplicas)), []byte(strconv.FormatInt(ms, 10))})
		if err != nil {
			return "", err
		}
		n, convErr := strconv.Atoi(describeNumber(acked))
		if convErr != nil {
			p.drop()
			return "", fmt.Errorf("revledger: redis: WAIT answered %s, not a number", describe(acked))
		}
		if n < p.cfg.waitReplicas {
			return "", &NotReplicatedError{ID: *reply, Acked: n, Wanted: p.cfg.waitReplicas}
		}
	}
	return *reply, nil
}

// Close closes the connection; later publishes return ErrClosed. Closing twice is a
// no-op.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.conn == nil {
		return nil
	}
	err := p.conn.Close()
	p.conn, p.rd = nil, nil
	return err
}

func invalid(msg string) error {
	return &Error{Status: StatusInvalidArgument, Message: "invalid argument: " + msg}
}

// validateRule refuses what every sync process would skip (docs/SYNC.md §2), with the
// words of the Rust crate's Rule::validate.
func validateRule(r Rule) error {
	if r.Scope > ScopeToken {
		return invalid("unknown scope " + r.Scope.String())
	}
	if len(r.Tenant) > MaxKeyLen {
		return invalid(fmt.Sprintf("tenant is %d bytes long; the limit is %d", len(r.Tenant), MaxKeyLen))
	}
	if len(r.Key) > MaxKeyLen {
		return invalid(fmt.Sprintf("%s is %d bytes long; the limit is %d", r.Scope, len(r.Key), MaxKeyLen))
	}
	switch {
	case r.Scope == ScopeGlobal && (len(r.Tenant) > 0 || len(r.Key) > 0):
		return invalid("a global rule takes no tenant and no key")
	case r.Scope == ScopeTenant && len(r.Key) > 0:
		return invalid("a tenant rule takes no key besides the tenant")
	case r.Scope > ScopeTenant && len(r.Key) == 0:
		return invalid(fmt.Sprintf("a %s rule needs a non-empty %s key", r.Scope, r.Scope))
	}
	return nil
}

func checkNotes(n Notes) error {
	if len(n.Reason) > MaxNoteLen {
		return invalid(fmt.Sprintf("reason is longer than %d bytes", MaxNoteLen))
	}
	if len(n.Origin) > MaxNoteLen {
		return invalid(fmt.Sprintf("origin is longer than %d bytes", MaxNoteLen))
	}
	return nil
}

// checkTrim refuses a rule the trimming would drop from the stream while it still
// matters (docs/SYNC.md §3).
func (p *Publisher) checkTrim(r Rule, now int64) error {
	limit, what := satAdd(now, p.cfg.leeway), "a cutoff more than leeway ahead"
	if r.Scope == ScopeToken {
		limit, what = satAdd(satAdd(now, p.cfg.lifetime), p.cfg.leeway), "a token rule's exp more than max token lifetime + leeway ahead"
	}
	if r.At > limit {
		return invalid(fmt.Sprintf("%s (%d > %d) would be trimmed from the stream (entries are kept max token lifetime + leeway = %d s) while it still matters",
			what, r.At, limit, satAdd(p.cfg.lifetime, p.cfg.leeway)))
	}
	return nil
}

// minID is the MINID threshold in milliseconds: now − (lifetime + leeway), at least 0.
func (p *Publisher) minID(now time.Time) int64 {
	keep := satAdd(p.cfg.lifetime, p.cfg.leeway)
	nowMs := now.UnixNano() / int64(time.Millisecond)
	if nowMs <= 0 || keep >= nowMs/1000+1 {
		return 0
	}
	return nowMs - keep*1000
}

// satAdd is a + b, saturating at the limits of int64.
func satAdd(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return 1<<63 - 1
	case b < 0 && s > a:
		return -1 << 63
	}
	return s
}

// validEntryID reports whether s is "<ms>-<seq>" in decimal.
func validEntryID(s string) bool {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return err1 == nil && err2 == nil
}

func describe(reply *string) string {
	if reply == nil {
		return "nil"
	}
	return strconv.Quote(*reply)
}

// connError marks a failure of the connection itself (as opposed to an error reply).
type connError struct{ err error }

func (e *connError) Error() string { return "revledger: redis connection: " + e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

func isConnError(err error) bool {
	var c *connError
	return errors.As(err, &c)
}

// drop closes and forgets the connection (its state is unknown after a failure).
func (p *Publisher) drop() {
	if p.conn != nil {
		p.conn.Close()
		p.conn, p.rd = nil, nil
	}
}

// roundTrip sends one command and reads its reply (a bulk or simple string; nil for a
// nil bulk string), connecting first if needed. On any failure of the connection it
// drops the connection; an error reply leaves it usable. Called with p.mu held.
func (p *Publisher) roundTrip(ctx context.Context, args [][]byte) (*string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(publishTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if p.conn == nil {
		if err := p.connect(ctx, deadline); err != nil {
			return nil, err
		}
	}
	reply, err := p.exchange(ctx, deadline, args)
	if err != nil && isConnError(err) {
		p.drop()
	}
	return reply, err
}

// connect dials (through the sentinels, over TLS, as configured) and, when the
// address says so, authenticates and selects the database.
func (p *Publisher) connect(ctx context.Context, deadline time.Time) error {
	password, hasPass := p.addr.password, p.addr.hasPass
	if p.cfg.passwordFile != "" {
		pw, err := readPasswordFile(p.cfg.passwordFile)
		if err != nil {
			return err
		}
		password, hasPass = pw, true
	}
	conn, err := p.dial(ctx, deadline)
	if err != nil {
		return err
	}
	p.conn, p.rd = conn, bufio.NewReader(conn)
	var setup [][][]byte
	if hasPass {
		if p.addr.username != "" {
			setup = append(setup, [][]byte{[]byte("AUTH"), []byte(p.addr.username), []byte(password)})
		} else {
			setup = append(setup, [][]byte{[]byte("AUTH"), []byte(password)})
		}
	}
	if p.addr.db != 0 {
		setup = append(setup, [][]byte{[]byte("SELECT"), []byte(strconv.Itoa(p.addr.db))})
	}
	for _, cmd := range setup {
		if _, err := p.exchange(ctx, deadline, cmd); err != nil {
			p.drop()
			if isConnError(err) {
				return err
			}
			return fmt.Errorf("revledger: redis %s: %w", cmd[0], err)
		}
	}
	return nil
}

// aLongTimeAgo is a deadline in the past: setting it makes blocked I/O return at once.
var aLongTimeAgo = time.Unix(1, 0)

// exchange writes one command and reads one reply, within deadline and ctx.
func (p *Publisher) exchange(ctx context.Context, deadline time.Time, args [][]byte) (*string, error) {
	conn := p.conn
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, &connError{err}
	}
	if ctx.Done() != nil {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			select {
			case <-ctx.Done():
				conn.SetDeadline(aLongTimeAgo)
			case <-stop:
			}
		}()
		defer func() {
			close(stop)
			<-done
		}()
	}
	if _, err := conn.Write(encodeCommand(args)); err != nil {
		return nil, p.ioError(ctx, err)
	}
	reply, err := readReply(p.rd)
	if err != nil {
		var re *RedisError
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, p.ioError(ctx, err)
	}
	return reply, nil
}

// ioError is ctx's error when ctx ended the I/O, else err as a connection failure.
func (p *Publisher) ioError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return &connError{ctx.Err()}
	}
	return &connError{err}
}

// encodeCommand is the RESP array of bulk strings for args (binary-safe).
func encodeCommand(args [][]byte) []byte {
	n := 16
	for _, a := range args {
		n += len(a) + 16
	}
	buf := make([]byte, 0, n)
	buf = append(buf, '*')
	buf = strconv.AppendInt(buf, int64(len(args)), 10)
	buf = append(buf, '\r', '\n')
	for _, a := range args {
		buf = append(buf, '$')
		buf = strconv.AppendInt(buf, int64(len(a)), 10)
		buf = append(buf, '\r', '\n')
		buf = append(buf, a...)
		buf = append(buf, '\r', '\n')
	}
	return buf
}

// maxReplyLen bounds a bulk reply: the replies read here are "OK" and entry ids.
const maxReplyLen = 1 << 20

var errProtocol = errors.New("unexpected reply from redis")

// readReply reads one RESP reply: a simple string, a bulk string (nil for $-1) or an
// error (a *RedisError). Anything else is a protocol error.
func readReply(rd *bufio.Reader) (*string, error) {
	line, err := readLine(rd)
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, errProtocol
	}
	switch line[0] {
	case '+':
		s := string(line[1:])
		return &s, nil
	case '-':
		return nil, &RedisError{Message: string(line[1:])}
	case ':':
		s := string(line[1:])
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return nil, errProtocol
		}
		return &s, nil
	case '$':
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n < -1 || n > maxReplyLen {
			return nil, errProtocol
		}
		if n == -1 {
			return nil, nil
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(rd, body); err != nil {
			return nil, err
		}
		if body[n] != '\r' || body[n+1] != '\n' {
			return nil, errProtocol
		}
		s := string(body[:n])
		return &s, nil
	default:
		return nil, fmt.Errorf("%w: %q", errProtocol, line)
	}
}

// readLine reads one CRLF-terminated line, without the CRLF.
func readLine(rd *bufio.Reader) ([]byte, error) {
	line, err := rd.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errProtocol
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errProtocol
	}
	return line[:len(line)-2], nil
}
