package revledger

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"os"
	"strconv"
)

// Signed rules (docs/SYNC.md §5.1): a publisher signs each entry with an Ed25519 key, and
// `revledger sync --trusted-keys` applies only entries signed by a key it trusts for
// their scope. The signed bytes are the same as the Rust publisher's:
//
//	"revledger-rule-v1" 0x00
//	u32 LE stream length, stream
//	u8 scope
//	u32 LE tenant length, tenant
//	u32 LE key length, key
//	i64 LE at

const signDomain = "revledger-rule-v1\x00"

// SignedMessage is the bytes a publisher signs for rule published to stream.
func SignedMessage(stream string, rule Rule) []byte {
	m := make([]byte, 0, len(signDomain)+21+len(stream)+len(rule.Tenant)+len(rule.Key))
	m = append(m, signDomain...)
	m = binary.LittleEndian.AppendUint32(m, uint32(len(stream)))
	m = append(m, stream...)
	m = append(m, byte(rule.Scope))
	m = binary.LittleEndian.AppendUint32(m, uint32(len(rule.Tenant)))
	m = append(m, rule.Tenant...)
	m = binary.LittleEndian.AppendUint32(m, uint32(len(rule.Key)))
	m = append(m, rule.Key...)
	m = binary.LittleEndian.AppendUint64(m, uint64(rule.At))
	return m
}

// WithSigningKey signs every entry with key, named kid ([A-Za-z0-9._@-], 1 to 64 bytes)
// as in the trusted-keys file of the sync processes: the entry carries the fields `kid`
// and `sig` (base64 of the signature).
func WithSigningKey(kid string, key ed25519.PrivateKey) PublishOption {
	return func(c *publishConfig) {
		c.kid = kid
		c.signingKey = key
	}
}

// LoadSigningKey reads an Ed25519 private key from a PKCS#8 PEM file (`revledger
// keygen`, or `openssl genpkey -algorithm ed25519`). The error names the file, never its
// content.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, invalid("signing key: " + err.Error())
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, invalid("signing key " + strconv.Quote(path) + ": not a PEM \"PRIVATE KEY\" (PKCS#8)")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, invalid("signing key " + strconv.Quote(path) + ": " + err.Error())
	}
	ed, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, invalid("signing key " + strconv.Quote(path) + ": not an Ed25519 key")
	}
	return ed, nil
}

// checkKid refuses a key name the sync processes would not match.
func checkKid(kid string) error {
	if len(kid) == 0 || len(kid) > 64 {
		return invalid("the signing key's name must be 1 to 64 bytes long")
	}
	for _, c := range []byte(kid) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@'
		if !ok {
			return invalid("the signing key's name " + strconv.Quote(kid) + " has a character outside A-Z a-z 0-9 . _ - @")
		}
	}
	return nil
}

// signature is the `sig` field for rule on stream.
func signature(key ed25519.PrivateKey, stream string, rule Rule) []byte {
	return []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(key, SignedMessage(stream, rule))))
}
