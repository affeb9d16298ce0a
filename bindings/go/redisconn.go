package revledger

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Reaching Redis as it runs in production (docs/SYNC.md §6): TLS with the server
// verified, passwords from a file, and Sentinel discovery of the primary. Everything
// here is the standard library: crypto/tls and the few RESP replies SENTINEL needs.

// readPasswordFile is the first line of the file (a trailing newline is not part of it).
// The error names the file, never its content.
func readPasswordFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", invalid("redis password file: " + err.Error())
	}
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", invalid("redis password file " + strconv.Quote(path) + " is empty")
	}
	return line, nil
}

// tlsFor is the TLS configuration for a connection to host, or nil for plain TCP.
func (p *Publisher) tlsFor(useTLS bool, host string) *tls.Config {
	if !useTLS && p.cfg.tlsConfig == nil {
		return nil
	}
	var c *tls.Config
	if p.cfg.tlsConfig != nil {
		c = p.cfg.tlsConfig.Clone()
	} else {
		c = &tls.Config{}
	}
	if c.ServerName == "" {
		c.ServerName = host
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// dialOne opens a connection to hostport, over TLS when cfg is not nil (the handshake
// done before it returns, so that a bad certificate is reported here).
func (p *Publisher) dialOne(ctx context.Context, deadline time.Time, hostport string, cfg *tls.Config) (net.Conn, error) {
	d := p.cfg.dialer
	d.Deadline = deadline
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &connError{err}
	}
	if cfg == nil {
		return conn, nil
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &connError{fmt.Errorf("TLS with %s: %w", hostport, err)}
	}
	return tc, nil
}

// dial connects to the primary: the address's host, or the one the sentinels name.
func (p *Publisher) dial(ctx context.Context, deadline time.Time) (net.Conn, error) {
	hostport := p.addr.hostport
	if len(p.cfg.sentinels) > 0 {
		master, _, _ := net.SplitHostPort(p.addr.hostport)
		var errs []error
		found := false
		for _, s := range p.cfg.sentinels {
			addr, err := p.askSentinel(ctx, deadline, s, master)
			if err == nil {
				hostport, found = addr, true
				break
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, fmt.Errorf("sentinel %s: %w", s, err))
		}
		if !found {
			return nil, &connError{fmt.Errorf("no sentinel named the primary %q: %w", master, errors.Join(errs...))}
		}
	}
	host, _, _ := net.SplitHostPort(hostport)
	return p.dialOne(ctx, deadline, hostport, p.tlsFor(p.addr.tls, host))
}

// askSentinel asks the sentinel at addr ("host:port" or "rediss://host:port") where the
// primary named master is.
func (p *Publisher) askSentinel(ctx context.Context, deadline time.Time, addr, master string) (string, error) {
	useTLS := strings.HasPrefix(addr, "rediss://")
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "rediss://"), "redis://")
	addr = strings.TrimSuffix(addr, "/")
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", invalid("sentinel address " + strconv.Quote(addr) + ": want host:port")
	}
	conn, err := p.dialOne(ctx, deadline, addr, p.tlsFor(useTLS, host))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	cmd := encodeCommand([][]byte{[]byte("SENTINEL"), []byte("GET-MASTER-ADDR-BY-NAME"), []byte(master)})
	if _, err := conn.Write(cmd); err != nil {
		return "", err
	}
	ip, port, err := readAddrReply(bufio.NewReader(conn))
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip, port), nil
}

// readAddrReply reads the reply of SENTINEL GET-MASTER-ADDR-BY-NAME: an array of two
// bulk strings (ip, port), or a nil array when the sentinel knows no such primary.
func readAddrReply(rd *bufio.Reader) (string, string, error) {
	line, err := readLine(rd)
	if err != nil {
		return "", "", err
	}
	switch {
	case len(line) > 0 && line[0] == '-':
		return "", "", &RedisError{Message: string(line[1:])}
	case string(line) == "*-1":
		return "", "", errors.New("the sentinel knows no primary of that name")
	case string(line) != "*2":
		return "", "", fmt.Errorf("%w: %q", errProtocol, line)
	}
	var parts [2]string
	for i := range parts {
		s, err := readReply(rd)
		if err != nil {
			return "", "", err
		}
		if s == nil {
			return "", "", errProtocol
		}
		parts[i] = *s
	}
	if _, err := strconv.ParseUint(parts[1], 10, 16); err != nil {
		return "", "", fmt.Errorf("%w: port %q", errProtocol, parts[1])
	}
	return parts[0], parts[1], nil
}

// isReadOnly reports an error reply of a server that is no longer the primary.
func isReadOnly(err error) bool {
	var re *RedisError
	return errors.As(err, &re) && (strings.HasPrefix(re.Message, "READONLY") || strings.HasPrefix(re.Message, "MASTERDOWN"))
}

// describeNumber is the text of an integer reply ("" for nil).
func describeNumber(reply *string) string {
	if reply == nil {
		return ""
	}
	return *reply
}
