# pacelc: PGXS build.  "make && make install" builds and installs the
# extension; "bash test/run-tests.sh" (as root or as an unprivileged user)
# runs every test.
EXTENSION = pacelc
MODULE_big = pacelc
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA = $(sort $(wildcard sql/pacelc--*.sql))
PGFILEDESC = "pacelc - escrow reservations, LSN tokens, compensation queue"

# pg_regress suites: every sql/*.sql that is not an install/upgrade script.
REGRESS = $(sort $(filter-out pacelc--%,$(basename $(notdir $(wildcard sql/*.sql)))))
ISOLATION = $(sort $(basename $(notdir $(wildcard test/specs/*.spec))))

PG_CPPFLAGS = -I$(srcdir)/src
# The JIT bitcode needs clang, which a plain Debian machine may not have.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
