// Package scramsecret makes and reads SCRAM-SHA-256 verifiers in PostgreSQL's format:
//
//	SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
//
// The same format serves the proxy's users (config) and the app role's password (ALTER ROLE), so
// no plaintext password is ever stored or sent to the database.
package scramsecret

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/xdg-go/scram"
)

// Iterations is PostgreSQL's default (scram_iterations).
const Iterations = 4096

const prefix = "SCRAM-SHA-256$"

// New returns a verifier for password with a fresh random salt.
func New(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		return "", fmt.Errorf("scram: %w", err)
	}
	creds := client.GetStoredCredentials(scram.KeyFactors{Salt: string(salt), Iters: Iterations})
	enc := base64.StdEncoding
	return fmt.Sprintf("%s%d:%s$%s:%s", prefix, Iterations, enc.EncodeToString(salt),
		enc.EncodeToString(creds.StoredKey), enc.EncodeToString(creds.ServerKey)), nil
}

// Parse reads a verifier made by New, by PostgreSQL, or by `tenantproxy passwd`.
func Parse(verifier string) (scram.StoredCredentials, error) {
	var none scram.StoredCredentials
	rest, ok := strings.CutPrefix(verifier, prefix)
	if !ok {
		return none, fmt.Errorf("not a SCRAM-SHA-256 verifier (it must start with %q)", prefix)
	}
	factors, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return none, fmt.Errorf("malformed SCRAM-SHA-256 verifier")
	}
	iters, salt, ok1 := strings.Cut(factors, ":")
	storedKey, serverKey, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return none, fmt.Errorf("malformed SCRAM-SHA-256 verifier")
	}
	n, err := strconv.Atoi(iters)
	if err != nil || n < 1 {
		return none, fmt.Errorf("malformed SCRAM-SHA-256 verifier: bad iteration count")
	}
	enc := base64.StdEncoding
	saltBytes, err1 := enc.DecodeString(salt)
	stored, err2 := enc.DecodeString(storedKey)
	server, err3 := enc.DecodeString(serverKey)
	if err1 != nil || err2 != nil || err3 != nil || len(stored) != 32 || len(server) != 32 || len(saltBytes) == 0 {
		return none, fmt.Errorf("malformed SCRAM-SHA-256 verifier: bad base64 field")
	}
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(saltBytes), Iters: n},
		StoredKey:  stored,
		ServerKey:  server,
	}, nil
}
