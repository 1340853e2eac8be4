#!/usr/bin/env bash
# Test certificates for the Partner Center emulator's TLS listeners and for
# pcqual's certificate credential (test/pc_emulator.py --tls-dir DIR).
#
#   test/make-certs.sh DIR
#
# Creates (or overwrites) in DIR:
#   ca.crt, ca.key                   the test CA (EC P-256, 10 years)
#   server.crt, server.key           signed by the CA; SAN IP:127.0.0.1, DNS:localhost
#   wrong-name.crt, wrong-name.key   signed by the CA; SAN DNS:other.example only
#   expired.crt, expired.key         signed by the CA; SAN IP:127.0.0.1, DNS:localhost;
#                                    valid 2020-01-01 to 2020-01-02 only
#   self-signed.crt, self-signed.key not signed by the CA; SAN IP:127.0.0.1
#   client.crt, client.key           RSA 2048 self-signed: the "Azure AD app
#                                    certificate" client assertions are signed with;
#                                    valid 10 years (3650 days) from now
#   client-expiring.crt, client-expiring.key
#                                    the same kind (CN pcqual-test-app, its own
#                                    key), valid only 10 days from now: a
#                                    credential that expires within 30 days
# Certificates are mode 644, keys 600.  Only the openssl command line is used
# (OpenSSL 3.0 and later: no -not_before/-not_after, so the expired
# certificate comes from `openssl ca -startdate/-enddate`).  Takes a second
# or two (the two RSA keys).
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One configuration for every step, so the system openssl.cnf plays no part.
cat >"$tmp/openssl.cnf" <<EOF
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = $tmp
database = $tmp/index.txt
serial = $tmp/serial
new_certs_dir = $tmp
certificate = $tmp/ca.crt
private_key = $tmp/ca.key
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
email_in_dn = no
[ any ]
commonName = supplied
[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ server_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1, DNS:localhost
[ wrong_name_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:other.example
[ self_signed_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
subjectAltName = IP:127.0.0.1
[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
EOF
export OPENSSL_CONF=$tmp/openssl.cnf
: >"$tmp/index.txt"
openssl rand -hex 16 >"$tmp/serial"

ec_key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/$1.key" 2>/dev/null
}

# CA
ec_key ca
openssl req -new -x509 -key "$tmp/ca.key" -out "$tmp/ca.crt" -days 3650 \
	-subj "/CN=pcqual test CA" -extensions ca_ext -set_serial 1

# name ext startdate enddate: a key and a CA-signed certificate
signed() {
	ec_key "$1"
	openssl req -new -key "$tmp/$1.key" -out "$tmp/$1.csr" -subj "/CN=pcqual test $1"
	openssl ca -batch -notext -in "$tmp/$1.csr" -out "$tmp/$1.crt" -extensions "$2" \
		-startdate "$3" -enddate "$4" 2>"$tmp/ca.log" || { cat "$tmp/ca.log" >&2; exit 1; }
}
# a start date a day back, so clock skew does not matter
now=$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)
later=$(date -u -d '3650 days' +%Y%m%d%H%M%SZ)
signed server server_ext "$now" "$later"
signed wrong-name wrong_name_ext "$now" "$later"
signed expired server_ext 20200101000000Z 20200102000000Z

ec_key self-signed
openssl req -new -x509 -key "$tmp/self-signed.key" -out "$tmp/self-signed.crt" -days 3650 \
	-subj "/CN=pcqual test self-signed" -extensions self_signed_ext

# name days: an RSA 2048 key and a self-signed client certificate
client() {
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/$1.key" 2>/dev/null
	openssl req -new -x509 -key "$tmp/$1.key" -out "$tmp/$1.crt" -days "$2" \
		-subj "/CN=pcqual-test-app" -extensions client_ext
}
client client 3650
client client-expiring 10

for name in ca server wrong-name expired self-signed client client-expiring; do
	chmod 644 "$tmp/$name.crt"
	chmod 600 "$tmp/$name.key"
	mv -f "$tmp/$name.crt" "$tmp/$name.key" "$dir/"
done
