#!/bin/bash
# pg_virtualenv -o options that point pcqual at the local emulator, with the
# emulator's App-only test credentials.
port=${PCQUAL_EMULATOR_PORT:-18765}
for setting in \
	"pcqual.base_url=http://127.0.0.1:$port" \
	"pcqual.authority=http://127.0.0.1:$port" \
	"pcqual.allow_http=on" \
	"pcqual.partner_tenant=pcqual-test-partner.onmicrosoft.com" \
	"pcqual.client_id=pcqual-test-app" \
	"pcqual.client_secret=pcqual-test-secret"
do
	printf -- "-o %s " "$setting"
done
