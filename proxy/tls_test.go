package proxy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// writeCertificate makes a self-signed certificate for 127.0.0.1 and returns the paths of the
// certificate (also its own CA) and key.
func writeCertificate(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tenantproxy test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}

func TestTLS(t *testing.T) {
	certFile, keyFile := writeCertificate(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			db := pgtest.New(t)
			p := startProxy(t, db, mode, func(c *config.Config) {
				c.TLS = config.TLS{Mode: "require", Cert: certFile, Key: keyFile}
			})
			base := strings.Replace(p.url("alice"), "sslmode=disable", "", 1)

			conn, err := pgx.Connect(ctx, base+"sslmode=verify-full&sslrootcert="+certFile)
			if err != nil {
				t.Fatalf("verify-full: %v", err)
			}
			defer conn.Close(ctx)
			if tc, ok := conn.PgConn().Conn().(*tls.Conn); !ok || !tc.ConnectionState().HandshakeComplete {
				t.Errorf("the connection is not TLS: %T", conn.PgConn().Conn())
			}
			if got := tenantOf(t, conn); got != "acme" {
				t.Errorf("tenant over TLS: %q", got)
			}

			// psql, with libpq's default channel_binding=prefer.
			out, err := exec.Command("psql", "-X", "-At", "-d", base+"sslmode=require", "-c",
				"SELECT current_setting('app.current_tenant_id')").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "acme" {
				t.Errorf("psql over TLS: %v\n%s", err, out)
			}

			// TLS required: a client that does not ask for it is refused.
			err = p.connectErr("alice")
			wantCode(t, err, "28000", "requires TLS")
		})
	}
}
