# pacelc: PGXS build.  "make && make install" builds and installs the
# extension.  Tests, the standard PGXS way (see README, "Supported versions
# and tests"): against a running server started with test/pacelc.conf's
# settings, "make installcheck" runs the pg_regress suite, the isolation
# specs and the TAP tests; "make prove_installcheck" the TAP tests alone
# (they start their own servers).  "bash test/run-tests.sh" (as root) runs
# all of it on PostgreSQL 15, 17 and 18.
EXTENSION = pacelc
MODULE_big = pacelc
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA = $(sort $(wildcard sql/pacelc--*.sql))
PGFILEDESC = "pacelc - escrow reservations, LSN tokens, compensation queue"

# The test suites: add a new test's name here (one list per kind).
# pg_regress: sql/NAME.sql, expected/NAME.out
REGRESS = citus_basic queue_basic queue_purge_plan queue_worker security stock_basic stock_longlived stock_reserve_path upgrade
# isolation: test/specs/NAME.spec, test/expected/NAME.out
ISOLATION = queue_drop_lock stock_cart_order stock_confirm_release stock_fold_order \
	stock_idempotent stock_load_deadlock \
	stock_last_unit stock_savepoint stock_2pc extension_drop_rights upgrade_05_lock \
	fastpath_concurrent_index
# TAP: test/t/NNN_NAME.pl (all of them; helpers in test/perl)
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))

ISOLATION_OPTS = --inputdir=test
EXTRA_CLEAN = build.log tmp_run

PG_CPPFLAGS = -I$(srcdir)/src
# The JIT bitcode needs clang, which a plain Debian machine may not have.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# after the PGXS include, which empties PROVE_FLAGS
PROVE_FLAGS += -I test/perl

# The TAP tests alone (PGXS has the recipe but no target for it).
.PHONY: prove_installcheck print-%
prove_installcheck:
	$(prove_installcheck)

# "make -s print-REGRESS" prints a list (test/run-tests.sh reads the suites
# this way, so the lists above are the only ones).
print-%:
	@echo $($*)
