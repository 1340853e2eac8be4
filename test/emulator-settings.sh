#!/bin/bash
# pg_virtualenv -o options for a test cluster: pcqual preloaded, as every
# installation must; with --cron also pg_cron, for the scheduled-sync suite
# (test/cron.sql), its jobs run by background workers in pcqual_tap.  Where
# pcqual sends its requests is set per database (test/emulator-settings.psql).
if [ "${1:-}" = --cron ]; then
	settings=(
		"shared_preload_libraries=pcqual,pg_cron"
		"cron.database_name=pcqual_tap"
		"cron.use_background_workers=on"
	)
else
	settings=("shared_preload_libraries=pcqual")
fi
for setting in "${settings[@]}"; do
	printf -- "-o %s " "$setting"
done
