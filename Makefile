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
	src/write.o \
	src/discover.o

DATA = pcqual--1.3.sql pcqual--1.0.sql pcqual--1.0--1.1.sql pcqual--1.1--1.2.sql pcqual--1.2--1.3.sql
PGFILEDESC = "pcqual - Partner Center customer qualifications"

PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK = -lcurl -lcjson -lssl -lcrypto

# pg_regress suites, one per user-facing feature (sql/ and expected/).
# They need the emulator running: test/check.sh starts it.
REGRESS = setup seed_examples shapes nulls_and_dates bulk errors settings credentials privileges write discover sync upgrade
REGRESS_OPTS = --inputdir=$(srcdir) --encoding=UTF8

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS does not track header dependencies.
$(OBJS): src/pcqual.h src/compat.h
