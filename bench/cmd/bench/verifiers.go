package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/xdg-go/scram"

	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
)

// floodIterations is the PBKDF2 iteration count of the flood user's verifier. A client derives
// its key with that many iterations at every login, the proxy never (it stores the derived
// keys): with one, a storm of logins spends the shared CPUs in the proxy, not in its own clients.
const floodIterations = 1

// makeVerifiers gives every proxy user the product's verifier (4096 iterations) of the client
// password, and floodUser one of floodIterations.
func (e *env) makeVerifiers() error {
	var err error
	if e.verifier, err = scramsecret.New(e.clientPassword); err != nil {
		return err
	}
	if e.floodVerifier, err = verifierWithIterations(e.clientPassword, floodIterations); err != nil {
		return err
	}
	_, err = scramsecret.Parse(e.floodVerifier)
	return err
}

// verifierOf is user's verifier, the same in both proxies.
func (e *env) verifierOf(user string) string {
	if user == floodUser {
		return e.floodVerifier
	}
	return e.verifier
}

func verifierWithIterations(password string, iterations int) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		return "", fmt.Errorf("scram: %w", err)
	}
	creds := client.GetStoredCredentials(scram.KeyFactors{Salt: string(salt), Iters: iterations})
	enc := base64.StdEncoding
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, enc.EncodeToString(salt),
		enc.EncodeToString(creds.StoredKey), enc.EncodeToString(creds.ServerKey)), nil
}
