package scramsecret

import (
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

// A verifier PostgreSQL 15 made for the password "demo" (SELECT rolpassword after ALTER ROLE).
const postgresVerifier = "SCRAM-SHA-256$4096:uRAHQj90xSnpUjaBq0PuUQ==$ufhAAL6iD8naf+G08RbhWEL+DpyX3IXBYiZicPz/k6E=:K6LNQEA7ri4Nf6JJ4ld2/wsz9mchTSoG3hVRTc4kyZk="

// verify runs a whole SCRAM exchange: a client knowing password against a server holding creds.
func verify(t *testing.T, creds scram.StoredCredentials, password string) bool {
	t.Helper()
	server, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		t.Fatal(err)
	}
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		t.Fatal(err)
	}
	cc, sc := client.NewConversation(), server.NewConversation()
	msg, err := cc.Step("")
	for err == nil && !cc.Done() {
		if msg, err = sc.Step(msg); err != nil {
			break
		}
		msg, err = cc.Step(msg)
	}
	return err == nil && sc.Valid()
}

func TestNewVerifiesItsPasswordOnly(t *testing.T) {
	v, err := New("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "SCRAM-SHA-256$4096:") {
		t.Fatalf("format: %s", v)
	}
	creds, err := Parse(v)
	if err != nil {
		t.Fatal(err)
	}
	if !verify(t, creds, "correct horse") {
		t.Error("the right password was refused")
	}
	if verify(t, creds, "battery staple") {
		t.Error("a wrong password was accepted")
	}
	if other, _ := New("correct horse"); other == v {
		t.Error("two verifiers share a salt")
	}
}

func TestParseReadsPostgresVerifiers(t *testing.T) {
	creds, err := Parse(postgresVerifier)
	if err != nil {
		t.Fatal(err)
	}
	if creds.Iters != 4096 || len(creds.StoredKey) != 32 {
		t.Errorf("parsed %+v", creds.KeyFactors)
	}
	if !verify(t, creds, "demo") || verify(t, creds, "Demo") {
		t.Error("PostgreSQL's verifier for demo does not verify exactly demo")
	}
}

func TestParseRefusesMalformedVerifiers(t *testing.T) {
	for _, bad := range []string{
		"", "demo", "md5abcdef", "SCRAM-SHA-256$", "SCRAM-SHA-256$4096:c2FsdA==",
		"SCRAM-SHA-256$x:c2FsdA==$a:b", "SCRAM-SHA-256$4096:!!$a:b",
		"SCRAM-SHA-256$4096:c2FsdA==$c2hvcnQ=:c2hvcnQ=",
	} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
