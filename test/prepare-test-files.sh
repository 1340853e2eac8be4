#!/bin/bash
# Creates the files the test clusters point pcqual at, in /tmp/pcqual-test
# (or $PCQUAL_TEST_DIR):
#   tls/       the emulator's CA and server certificates (test/make-certs.sh)
#   secrets/   the emulator's test credentials, as a DBA would keep them:
#              a directory and files owned by the server's operating system
#              user (postgres), files mode 600, so that pcqual accepts them
#              and can write a rotated refresh token back.
#     client_secret   App-only secret
#     client.crt      App certificate (public), client.key its private key
#     client-expiring.crt, .key  one that expires in 10 days
#     refresh_token   App+User refresh token
#     access_token    an externally managed token
# Run as root before the cluster starts (test/check.sh, test/demo.sh), or
# as the server's operating system user (test/with-emulator.sh, for `make
# installcheck`, with PCQUAL_TEST_OWNER set to that user).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${PCQUAL_TEST_DIR:-/tmp/pcqual-test}
owner=${PCQUAL_TEST_OWNER:-postgres}

rm -rf "$dir"
mkdir -p "$dir/tls" "$dir/secrets"
test/make-certs.sh "$dir/tls" >/dev/null

secret() { # name value
	printf '%s\n' "$2" > "$dir/secrets/$1"
	chmod 600 "$dir/secrets/$1"
}
secret client_secret pcqual-test-secret
secret refresh_token pcqual-test-refresh
secret access_token pcqual-static-token
cp "$dir/tls/client.crt" "$dir/secrets/client.crt"
cp "$dir/tls/client.key" "$dir/secrets/client.key"
chmod 644 "$dir/secrets/client.crt"
chmod 600 "$dir/secrets/client.key"
# a certificate that expires in 10 days (pc_credential_status, its WARNING)
cp "$dir/tls/client-expiring.crt" "$dir/secrets/client-expiring.crt"
cp "$dir/tls/client-expiring.key" "$dir/secrets/client-expiring.key"
chmod 644 "$dir/secrets/client-expiring.crt"
chmod 600 "$dir/secrets/client-expiring.key"

chmod 755 "$dir" "$dir/tls"
chmod 700 "$dir/secrets"
chown -R "$owner:" "$dir/secrets"
