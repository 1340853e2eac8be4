# pcqual: Microsoft Partner Center customer qualifications, from SQL.
EXTENSION = pcqual
MODULE_big = pcqual
OBJS = \
	src/pcqual.o \
	src/shmem.o \
	src/governor.o \
	src/token_cache.o \
	src/stats.o \
	src/activity.o \
	src/credentials.o \
	src/assertion.o \
	src/http.o \
	src/retry.o \
	src/token.o \
	src/parse.o \
	src/report.o \
	src/functions.o \
	src/lateral.o \
	src/write.o \
	src/discover.o \
	src/validation.o \
	src/credential_status.o

# The extension's version is written in one place, pcqual.control's
# default_version: the C code gets it as PCQUAL_VERSION (User-Agent, module
# magic), and the scripts installed are every pcqual--*.sql (the direct
# install script of each version and the update scripts), so a new version
# needs no edit here.  The control file is next to this Makefile, also in a
# VPATH build (srcdir is not set until PGXS is included).
pcqual_control := $(dir $(firstword $(MAKEFILE_LIST)))pcqual.control
PCQUAL_VERSION := $(shell sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" $(pcqual_control))
ifeq ($(PCQUAL_VERSION),)
$(error no default_version = '...' in $(pcqual_control))
endif

DATA = $(notdir $(wildcard $(srcdir)/pcqual--*.sql))
PGFILEDESC = "pcqual - Partner Center customer qualifications"

# libcurl, cJSON and OpenSSL as their pkg-config files describe them (an
# installation outside the compiler's default paths, PKG_CONFIG_PATH), else
# the plain library names where pkg-config or a .pc file is missing.
# Evaluated once (:=), not at every compile.
PKG_CONFIG ?= pkg-config
pcqual_pkg = $(or $(shell $(PKG_CONFIG) --$(1) $(2) 2>/dev/null),$(3))
pcqual_cflags := $(call pcqual_pkg,cflags,libcurl,) $(call pcqual_pkg,cflags,libcjson,) \
	$(call pcqual_pkg,cflags,openssl,)
SHLIB_LINK := $(call pcqual_pkg,libs,libcurl,-lcurl) $(call pcqual_pkg,libs,libcjson,-lcjson) \
	$(call pcqual_pkg,libs,openssl,-lssl -lcrypto)

PG_CPPFLAGS = -I$(srcdir)/src $(pcqual_cflags) -DPCQUAL_VERSION='"$(PCQUAL_VERSION)"'

# pg_regress suites, one per user-facing feature (sql/ and expected/).
# They need the Partner Center emulator: `make installcheck` starts it
# (test/with-emulator.sh, below), or uses the one test/check.sh started.
REGRESS = setup seed_examples shapes nulls_and_dates bulk lateral errors settings credentials privileges write validation discover sync upgrade
REGRESS_OPTS = --inputdir=$(srcdir) --encoding=UTF8

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# A VPATH build (pg_buildext builds in build-NN, debian/rules) writes the
# objects under src/ of the build directory, which must exist; a rule
# cannot make it, since VPATH would find the source tree's src/ instead.
ifdef VPATH
$(shell mkdir -p src)
endif

# PGXS does not track header dependencies; the version comes from the
# control file.
$(OBJS): src/pcqual.h src/compat.h $(pcqual_control)

# `make installcheck` as PGXS runs it, against the running server the PG*
# variables name, with the emulator the suites call: PGXS's pg_regress
# command runs through test/with-emulator.sh, which checks that the server
# preloads pcqual, starts the emulator unless one runs already, runs
# pg_regress, and stops the emulator again.  PGXS's own installcheck rule
# and options (REGRESS_OPTS, EXTRA_REGRESS_OPTS) stay as they are.
pcqual_pg_regress := $(top_builddir)/src/test/regress/pg_regress
ifneq ($(findstring $(pcqual_pg_regress),$(pg_regress_installcheck)),)
pg_regress_installcheck := $(subst $(pcqual_pg_regress),$(srcdir)/test/with-emulator.sh $(pcqual_pg_regress),$(pg_regress_installcheck))
else
pg_regress_installcheck = { echo "pcqual: this PGXS's pg_regress_installcheck does not run $(pcqual_pg_regress);" \
	"test/with-emulator.sh cannot wrap it (see the Makefile)" >&2; exit 1; }
endif
