package revledger_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	revledger "github.com/revledger/revledger/bindings/go"
)

// The scenario of DESIGN.md §1: super_admin's permissions change at t=2000. John and
// Mike hold it, Bruce does not; only John's and Mike's tokens must go.
func Example() {
	dir, err := os.MkdirTemp("", "revledger-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "acme.ledger")

	// The permission system: one writer per ledger.
	writer, err := revledger.Open(path, time.Hour) // tokens live at most an hour
	if err != nil {
		log.Fatal(err)
	}
	defer writer.Close()
	if err := writer.Revoke(revledger.ScopeRole, []byte("acme"), []byte("super_admin"), 2000); err != nil {
		log.Fatal(err)
	}
	if err := writer.Sync(); err != nil { // durable; readers saw it already
		log.Fatal(err)
	}

	// A gateway process: any number of readers.
	gateway, err := revledger.OpenReader(path)
	if err != nil {
		log.Fatal(err)
	}
	defer gateway.Close()
	tokens := []*revledger.Token{
		{Tenant: []byte("acme"), Subject: []byte("john"), Roles: [][]byte{[]byte("super_admin"), []byte("billing")}, IssuedAt: 1990},
		{Tenant: []byte("acme"), Subject: []byte("mike"), Roles: [][]byte{[]byte("super_admin")}, IssuedAt: 1500},
		{Tenant: []byte("acme"), Subject: []byte("bruce"), Roles: [][]byte{[]byte("billing")}, IssuedAt: 1500},
		{Tenant: []byte("acme"), Subject: []byte("john"), Roles: [][]byte{[]byte("super_admin")}, IssuedAt: 2000}, // refreshed
	}
	for _, tok := range tokens {
		v, err := gateway.Check(tok)
		if err != nil {
			log.Fatal(err) // never "valid" by default: the gateway decides
		}
		fmt.Printf("%s (iat %d): %v\n", tok.Subject, tok.IssuedAt, v)
		if v.Revoked {
			fmt.Printf("  WWW-Authenticate: Bearer error=\"invalid_token\", error_description=%q\n", v.Description())
		}
	}
	// Output:
	// john (iat 1990): revoked by role rule, cutoff 2000
	//   WWW-Authenticate: Bearer error="invalid_token", error_description="token revoked: role permissions changed at 2000"
	// mike (iat 1500): revoked by role rule, cutoff 2000
	//   WWW-Authenticate: Bearer error="invalid_token", error_description="token revoked: role permissions changed at 2000"
	// bruce (iat 1500): valid
	// john (iat 2000): valid
}

// Middleware puts the ledger in front of an API: revoked tokens get 401 and the client
// refreshes.
func ExampleMiddleware() {
	// api := revledger.Middleware(apiHandler, gateway, func(r *http.Request) (*revledger.Token, error) {
	//     claims, err := verifyJWT(r) // signature and exp, by your JWT library
	//     if err != nil {
	//         return nil, err
	//     }
	//     return &revledger.Token{Tenant: claims.Tenant, Subject: claims.Sub, Roles: claims.Roles, IssuedAt: claims.Iat}, nil
	// })
	// http.ListenAndServe(":8080", api)
}
