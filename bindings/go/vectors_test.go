package revledger

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The shared table of cases (tests/vectors/README.md), run through the Go binding.
const vectorsPath = "../../tests/vectors/cases.txt"

// unescape decodes a byte-string field: "-" is empty, "*N*C" is C repeated N times,
// otherwise %XX escapes and bare characters.
func unescape(t *testing.T, line int, field string) []byte {
	t.Helper()
	if field == "-" {
		return nil
	}
	if strings.HasPrefix(field, "*") {
		parts := strings.SplitN(field[1:], "*", 2)
		n, err := strconv.Atoi(parts[0])
		if len(parts) != 2 || err != nil || len(parts[1]) != 1 {
			t.Fatalf("line %d: bad repeat field %q", line, field)
		}
		return []byte(strings.Repeat(parts[1], n))
	}
	var out []byte
	for i := 0; i < len(field); i++ {
		if field[i] == '%' {
			if i+3 > len(field) {
				t.Fatalf("line %d: truncated escape in %q", line, field)
			}
			b, err := strconv.ParseUint(field[i+1:i+3], 16, 8)
			if err != nil {
				t.Fatalf("line %d: bad escape in %q", line, field)
			}
			out = append(out, byte(b))
			i += 2
		} else {
			out = append(out, field[i])
		}
	}
	return out
}

func parseRoles(t *testing.T, line int, field string) [][]byte {
	if field == "-" {
		return nil
	}
	var roles [][]byte
	for _, r := range strings.Split(field, ",") {
		roles = append(roles, unescape(t, line, r))
	}
	return roles
}

// parseScopeField is a scope name or a decimal integer given to C as is. ok is false for
// an integer too large for the C enum's 32 bits (it cannot even be passed).
func parseScopeField(t *testing.T, line int, field string) (s Scope, ok bool) {
	if n, err := strconv.ParseUint(field, 10, 64); err == nil {
		if n > 0xFFFFFFFF {
			return 0, false
		}
		return Scope(n), true
	}
	s, err := ParseScope(field)
	if err != nil {
		t.Fatalf("line %d: %v", line, err)
	}
	return s, true
}

type vectorCheck struct {
	line   int
	fields []string
}

func statusOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Status.String()
	}
	return "not a *revledger.Error: " + err.Error()
}

func runVectorCheck(t *testing.T, l *Ledger, what string, c vectorCheck) {
	t.Helper()
	f := c.fields
	if len(f) < 9 {
		t.Fatalf("line %d: short check", c.line)
	}
	iat, err := strconv.ParseInt(f[7], 10, 64)
	if err != nil {
		t.Fatalf("line %d: iat: %v", c.line, err)
	}
	tok := &Token{
		Tenant:   unescape(t, c.line, f[1]),
		Subject:  unescape(t, c.line, f[2]),
		Roles:    parseRoles(t, c.line, f[3]),
		Client:   unescape(t, c.line, f[4]),
		Session:  unescape(t, c.line, f[5]),
		TokenID:  unescape(t, c.line, f[6]),
		IssuedAt: iat,
	}
	got, err := l.Check(tok)
	switch f[0] {
	case "check":
		var want Verdict
		switch f[8] {
		case "valid":
		case "revoked":
			if len(f) != 11 {
				t.Fatalf("line %d: revoked needs scope and cutoff", c.line)
			}
			s, _ := parseScopeField(t, c.line, f[9])
			cutoff, perr := strconv.ParseInt(f[10], 10, 64)
			if perr != nil {
				t.Fatalf("line %d: cutoff: %v", c.line, perr)
			}
			want = Verdict{Revoked: true, Scope: s, Cutoff: cutoff}
		default:
			t.Fatalf("line %d: unknown verdict %q", c.line, f[8])
		}
		if err != nil || got != want {
			t.Errorf("line %d (%s): %s: got %+v, %v; want %+v", c.line, what, strings.Join(f, " "), got, err, want)
		}
	case "check-error":
		if err == nil {
			t.Errorf("line %d (%s): %s: got %+v, want error %s", c.line, what, strings.Join(f, " "), got, f[8])
		} else if statusOf(err) != f[8] {
			t.Errorf("line %d (%s): got error %s (%v), want %s", c.line, what, statusOf(err), err, f[8])
		}
	}
}

func TestSharedVectors(t *testing.T) {
	file, err := os.Open(vectorsPath)
	if err != nil {
		t.Fatalf("the shared vectors must be present: %v", err)
	}
	defer file.Close()
	dir := t.TempDir()

	var (
		ledger *Ledger
		path   string
		name   string
		checks []vectorCheck
		cases  int
		lines  int
	)
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		lines++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, " ")
		switch f[0] {
		case "case":
			if ledger != nil {
				t.Fatalf("line %d: case %s inside case %s", lines, f[1], name)
			}
			name = f[1]
			path = filepath.Join(dir, name)
			ledger, err = Open(path, time.Hour)
			if err != nil {
				t.Fatalf("line %d: open: %v", lines, err)
			}
			checks = checks[:0]
		case "rule", "rule-error":
			if ledger == nil {
				t.Fatalf("line %d: rule outside a case", lines)
			}
			at, perr := strconv.ParseInt(f[4], 10, 64)
			if perr != nil {
				t.Fatalf("line %d: at: %v", lines, perr)
			}
			var result error
			if s, ok := parseScopeField(t, lines, f[1]); ok {
				result = ledger.Revoke(s, unescape(t, lines, f[2]), unescape(t, lines, f[3]), at)
			} else {
				result = &Error{Status: StatusInvalidArgument, Message: "scope does not fit in 32 bits"}
			}
			if f[0] == "rule" {
				if result != nil {
					t.Errorf("line %d (%s): %s: %v", lines, name, line, result)
				}
			} else if result == nil {
				t.Errorf("line %d (%s): %s: succeeded, want %s", lines, name, line, f[5])
			} else if statusOf(result) != f[5] {
				t.Errorf("line %d (%s): got %s (%v), want %s", lines, name, statusOf(result), result, f[5])
			}
		case "check", "check-error":
			if ledger == nil {
				t.Fatalf("line %d: check outside a case", lines)
			}
			c := vectorCheck{line: lines, fields: f}
			runVectorCheck(t, ledger, name+", live writer", c)
			checks = append(checks, c)
		case "end":
			if ledger == nil {
				t.Fatalf("line %d: end outside a case", lines)
			}
			// A reader opened beside the writer, and one opened after it closed.
			reader, err := OpenReader(path)
			if err != nil {
				t.Fatalf("line %d: open reader: %v", lines, err)
			}
			if err := ledger.Close(); err != nil {
				t.Fatalf("line %d: close: %v", lines, err)
			}
			reopened, err := OpenReader(path)
			if err != nil {
				t.Fatalf("line %d: reopen: %v", lines, err)
			}
			for _, c := range checks {
				runVectorCheck(t, reader, name+", reader", c)
				runVectorCheck(t, reopened, name+", fresh reader", c)
			}
			reader.Close()
			reopened.Close()
			ledger = nil
			cases++
		default:
			t.Fatalf("line %d: unknown statement %q", lines, f[0])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if ledger != nil {
		t.Fatalf("case %s has no end", name)
	}
	if cases < 15 {
		t.Fatalf("only %d cases ran", cases)
	}
	t.Log(fmt.Sprintf("%d cases", cases))
}
