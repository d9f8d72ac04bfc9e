// gen_creds DIR: writes an operator-mode nats-server configuration fragment (operator.conf)
// and a user credentials file (user.creds) signed for it, plus one signed by an account the
// server does not know (stranger.creds). Built offline from Debian's nats-io/jwt and nkeys.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	jwt "github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen_creds:", err)
		os.Exit(1)
	}
}

func account(op nkeys.KeyPair, name string, jetstream bool) (nkeys.KeyPair, string, string) {
	kp, err := nkeys.CreateAccount()
	must(err)
	pub, err := kp.PublicKey()
	must(err)
	claims := jwt.NewAccountClaims(pub)
	claims.Name = name
	if jetstream {
		claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	}
	token, err := claims.Encode(op)
	must(err)
	return kp, pub, token
}

func userCreds(acct nkeys.KeyPair, name string) []byte {
	kp, err := nkeys.CreateUser()
	must(err)
	pub, err := kp.PublicKey()
	must(err)
	seed, err := kp.Seed()
	must(err)
	claims := jwt.NewUserClaims(pub)
	claims.Name = name
	token, err := claims.Encode(acct)
	must(err)
	creds, err := jwt.FormatUserConfig(token, seed)
	must(err)
	return creds
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen_creds DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	op, err := nkeys.CreateOperator()
	must(err)
	opPub, err := op.PublicKey()
	must(err)
	opClaims := jwt.NewOperatorClaims(opPub)
	opClaims.Name = "natbus-test-operator"
	opJWT, err := opClaims.Encode(op)
	must(err)
	app, appPub, appJWT := account(op, "APP", true)
	_, sysPub, sysJWT := account(op, "SYS", false)
	stranger, _, _ := account(op, "NOT_PRELOADED", true)

	conf := fmt.Sprintf("operator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %s\n  %s: %s\n}\n",
		opJWT, sysPub, appPub, appJWT, sysPub, sysJWT)
	must(os.WriteFile(filepath.Join(dir, "operator.conf"), []byte(conf), 0o600))
	must(os.WriteFile(filepath.Join(dir, "user.creds"), userCreds(app, "natbus-user"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "stranger.creds"), userCreds(stranger, "stranger"), 0o600))
}
