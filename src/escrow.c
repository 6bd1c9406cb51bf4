/*-------------------------------------------------------------------------
 *
 * escrow.c
 *		The escrow counters of stock reservation (SPEC section 1): shared
 *		memory, the per-transaction ledger and its callbacks, the rebuild
 *		from the tables.  The SQL-callable functions are in stock.c.
 *
 * A row per SKU with SELECT ... FOR UPDATE serializes every buyer of a hot
 * SKU on one row lock.  Instead, each SKU's "units that may still be
 * promised" live in a shared-memory escrow counter:
 *
 *	- reserve() decrements the counter with a compare-and-swap (succeed or
 *	  fail at once, never wait), then inserts a reservation row.  The SKU row
 *	  is not touched.
 *	- the decrement is given back if the (sub)transaction aborts;
 *	- increases (release, expiry, restock) are applied only once their
 *	  transaction has committed, so the counter never promises units whose
 *	  return could still be rolled back.
 *
 * The counter therefore never exceeds on_hand - held of the committed
 * tables, which is what makes overselling impossible.  It is a cache: after
 * a restart, a crash or a promotion shared memory starts empty, and each SKU
 * is rebuilt from the tables the first time it is used (one index lookup).
 *
 * Rebuild rule: a SKU's entry must exist (be READY) before any transaction
 * changes that SKU's held or on-hand units.  Then the entry's loader, reading
 * the tables with the latest snapshot, can never miss a change made in
 * flight by someone else.  confirm() is the one writer exempt from it: it
 * lowers held and on-hand together and leaves on_hand - held unchanged.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/transam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "escrow.h"
#include "prepared.h"
#include "privilege.h"
#include "support.h"

#define STOCK_PARTITIONS	16


/*
 * Shared-memory entries are keyed by database and by the OID of the
 * pacelc.skus table, so that DROP EXTENSION + CREATE EXTENSION (or a
 * restore) starts from fresh entries instead of stale counters.
 */
typedef struct StockKey
{
	Oid			dbid;
	Oid			relid;
	char		sku[PACELC_SKU_MAXLEN + 1];
} StockKey;

#define ENTRY_LOADING	0
#define ENTRY_READY		1

typedef struct StockEntry
{
	StockKey	key;
	pg_atomic_uint64 avail;		/* int64 escrow counter, stored unsigned */
	pg_atomic_uint32 exists;	/* a committed pacelc.skus row exists */
	pg_atomic_uint32 pins;		/* open transactions that may create the SKU
								 * row; changed under the partition lock
								 * (shared is enough), see stock_unpin() */
	uint64		generation;		/* tells a reused slot from the old one; 0
								 * once the slot is freed */
	int			state;			/* ENTRY_*, under the partition lock */
} StockEntry;

typedef struct StockShared
{
	pg_atomic_uint64 next_generation;
	pg_atomic_uint32 nentries;
	LWLockPadded *locks;
} StockShared;

/*
 * What this backend's open transaction did to escrow counters: negative
 * deltas were already applied (give them back on abort), positive ones are
 * pending (apply them at commit).
 */
typedef struct EscrowRecord
{
	StockEntry *entry;
	uint64		generation;
	int64		delta;
	bool		from_pending;	/* a take out of this transaction's own
								 * pending increases, not the counter */
	bool		mark_exists;	/* the transaction created the SKU row */
	SubTransactionId subid;
} EscrowRecord;

/*
 * What the open transaction did to each entry it touched, summed up, so
 * that neither a take nor the commit has to scan the record list: commit
 * time is linear in the number of SKUs touched.
 */
typedef struct EscrowTouchKey
{
	StockEntry *entry;
	uint64		generation;
} EscrowTouchKey;

typedef struct EscrowTouch
{
	EscrowTouchKey key;
	int64		pending;		/* pending increases net of the takes out of
								 * them: what commit adds to the counter */
	int			created;		/* records with mark_exists */
	bool		pinned;			/* this transaction holds a pin */
	int64		taken;			/* units taken from the counter: set at
								 * PREPARE only */
} EscrowTouch;

/* A DROP DATABASE or DROP EXTENSION whose entries go when it commits. */
typedef struct StockDrop
{
	Oid			dbid;
	Oid			relid;			/* InvalidOid: the whole database */
	SubTransactionId subid;
} StockDrop;

static int	pacelc_max_skus = 100000;

static StockShared *stock_shared = NULL;
static HTAB *stock_htab = NULL;

static EscrowRecord *escrow = NULL;
static int	n_escrow = 0;
static int	max_escrow = 0;

static HTAB *escrow_touched = NULL;

static StockDrop *stock_drops = NULL;
static int	n_stock_drops = 0;
static int	max_stock_drops = 0;

static object_access_hook_type prev_object_access_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* The xid whose ledger went to prepared.c at PRE_PREPARE, until PREPARE. */
static TransactionId preparing_xid = InvalidTransactionId;

/* A COMMIT/ROLLBACK PREPARED failed: settle what ended at the abort. */
static bool settle_at_abort = false;

/* An entry this backend is loading; removed again if the load fails. */
static StockEntry *loading_entry = NULL;

/* The loader's saved SPI plan, prepared once per backend. */
static SPIPlanPtr load_plan = NULL;


static bool escrow_created_here(StockEntry *entry, uint64 generation);
static EscrowTouch *escrow_touch(StockEntry *entry, uint64 generation, bool enter);
static void stock_object_access(ObjectAccessType access, Oid classId,
								Oid objectId, int subId, void *arg);
static void stock_xact_callback(XactEvent event, void *arg);
static void stock_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								   SubTransactionId parentSubid, void *arg);
static void escrow_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
								  bool readOnlyTree, ProcessUtilityContext context,
								  ParamListInfo params, QueryEnvironment *queryEnv,
								  DestReceiver *dest, QueryCompletion *qc);

/* ---------------------------------------------------------------------
 * Set-up
 * --------------------------------------------------------------------- */

/*
 * pacelc.max_skus sizes shared memory once, at postmaster start.  A value
 * out of range must stop the start instead of being replaced by the default
 * (which is what PostgreSQL does with a bad value of a custom parameter):
 * the operator asked for a size and would otherwise silently get another.
 */
#define MAX_SKUS_MIN	100
#define MAX_SKUS_MAX	(INT_MAX / 2)

static void
stock_check_max_skus_setting(void)
{
	const char *raw = GetConfigOption("pacelc.max_skus", true, false);
	int			value;
	const char *hint = NULL;

	if (raw == NULL)
		return;
	if (!parse_int(raw, &value, 0, &hint))
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for parameter \"%s\": \"%s\"",
						"pacelc.max_skus", raw),
				 hint ? errhint("%s", _(hint)) : 0));
	if (value < MAX_SKUS_MIN || value > MAX_SKUS_MAX)
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%d is outside the valid range for parameter \"%s\" (%d .. %d)",
						value, "pacelc.max_skus", MAX_SKUS_MIN, MAX_SKUS_MAX)));
}

void
pacelc_stock_init(void)
{
	stock_check_max_skus_setting();
	DefineCustomIntVariable("pacelc.max_skus",
							"Maximum number of SKUs whose escrow counters fit in shared memory.",
							"Counts SKUs of all databases together; each takes about 128 bytes.",
							&pacelc_max_skus,
							100000,
							MAX_SKUS_MIN,
							MAX_SKUS_MAX,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	RegisterXactCallback(stock_xact_callback, NULL);
	RegisterSubXactCallback(stock_subxact_callback, NULL);

	prev_object_access_hook = object_access_hook;
	object_access_hook = stock_object_access;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = escrow_ProcessUtility;
}

Size
pacelc_stock_shmem_size(void)
{
	return add_size(add_size(MAXALIGN(sizeof(StockShared)),
							 hash_estimate_size(pacelc_max_skus, sizeof(StockEntry))),
					pacelc_prepared_shmem_size());
}

void
pacelc_stock_shmem_request(void)
{
	RequestNamedLWLockTranche("pacelc_stock", STOCK_PARTITIONS);
	pacelc_prepared_shmem_request();
}

void
pacelc_stock_shmem_startup(void)
{
	bool		found;
	HASHCTL		info;

	stock_shared = ShmemInitStruct("pacelc stock", sizeof(StockShared), &found);
	if (!found)
	{
		pg_atomic_init_u64(&stock_shared->next_generation, 1);
		pg_atomic_init_u32(&stock_shared->nentries, 0);
		stock_shared->locks = GetNamedLWLockTranche("pacelc_stock");
	}

	info.keysize = sizeof(StockKey);
	info.entrysize = sizeof(StockEntry);
	info.num_partitions = STOCK_PARTITIONS;
	stock_htab = ShmemInitHash("pacelc stock entries",
							   pacelc_max_skus, pacelc_max_skus,
							   &info,
							   HASH_ELEM | HASH_BLOBS | HASH_PARTITION);
	pacelc_prepared_shmem_startup();
}

/* ---------------------------------------------------------------------
 * Shared-memory entries
 * --------------------------------------------------------------------- */

void
pacelc_stock_check_shmem(void)
{
	pacelc_check_loaded();
	if (stock_htab == NULL)
		elog(ERROR, "pacelc shared memory is not initialized");
}

Oid
pacelc_skus_relid(void)
{
	Oid			nsp = get_namespace_oid("pacelc", false);
	Oid			relid = get_relname_relid("skus", nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "table pacelc.skus does not exist");
	return relid;
}

static void
make_key(StockKey *key, const char *sku)
{
	memset(key, 0, sizeof(StockKey));
	key->dbid = MyDatabaseId;
	key->relid = pacelc_skus_relid();
	strlcpy(key->sku, sku, sizeof(key->sku));
}

static LWLock *
partition_lock(uint32 hash)
{
	return &stock_shared->locks[hash % STOCK_PARTITIONS].lock;
}

/*
 * Frees an entry; the caller holds its partition lock exclusively.  The
 * generation is cleared first, so that a backend still holding a pointer
 * to the slot (a record of an aborting transaction) never mistakes the
 * freed slot, or its next tenant, for the entry it knew.
 */
static void
stock_free_entry(StockEntry *entry, uint32 hash)
{
	entry->generation = 0;
	hash_search_with_hash_value(stock_htab, &entry->key, hash, HASH_REMOVE, NULL);
	pg_atomic_fetch_sub_u32(&stock_shared->nentries, 1);
}

/*
 * Drops an entry whose load failed.  Whoever waits for it waits on the
 * loader's lock (see stock_acquire), which the abort releases after this.
 */
static void
remove_loading_entry(void)
{
	StockEntry *entry = loading_entry;
	uint32		hash;
	LWLock	   *lock;

	if (entry == NULL)
		return;
	loading_entry = NULL;
	hash = get_hash_value(stock_htab, &entry->key);
	lock = partition_lock(hash);
	LWLockAcquire(lock, LW_EXCLUSIVE);
	stock_free_entry(entry, hash);
	LWLockRelease(lock);
}

/*
 * What the prepared transactions in doubt (prepared before this server
 * started, see prepared.c) did to a SKU being loaded: xids[i] changed
 * on_hand - held by delta[i].
 */
typedef struct InDoubt
{
	int			n;
	TransactionId *xids;
	int64	   *delta;
	bool	   *created;
	bool	   *seen;
} InDoubt;

/*
 * Reads on_hand - held of one SKU from the committed tables, with the
 * latest snapshot even in REPEATABLE READ: the counter must reflect every
 * committed change, not the transaction's view.  Returns false if the SKU
 * has no row.  With in_doubt, also what the prepared transactions in doubt
 * did to it, against the same snapshot.
 */
static bool
load_from_tables(const char *sku, int64 *avail, InDoubt *in_doubt)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	SPIPlanPtr	plan;
	bool		found;
	int			rc;
	Snapshot	snap;
	TransactionId *xids = NULL;
	int			nxids = 0;

	/* listed before the snapshot: one that ends in between is seen ended */
	if (in_doubt)
	{
		in_doubt->n = 0;
		nxids = pacelc_prepared_in_doubt(MyDatabaseId, &xids);
	}
	snap = RegisterSnapshot(GetLatestSnapshot());
	SPI_connect();
	plan = pacelc_keep_plan(&load_plan,
							"SELECT (k.on_hand_base"
							"  - coalesce((SELECT sum(r.qty) FROM pacelc.reservation_data r"
							"     WHERE r.sku = k.sku AND r.state = 'confirmed' AND NOT r.folded), 0)"
							"  - coalesce((SELECT sum(r.qty) FROM pacelc.reservation_data r"
							"     WHERE r.sku = k.sku AND r.state = 'held'), 0))::pg_catalog.int8"
							"  FROM pacelc.skus k WHERE k.sku = $1",
							1, argtypes);
	values[0] = CStringGetTextDatum(sku);
	rc = SPI_execute_snapshot(plan, values, NULL, snap,
							  InvalidSnapshot, true, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "loading SKU \"%s\" failed: %s", sku,
			 SPI_result_code_string(rc));
	found = SPI_processed > 0;
	if (found)
	{
		bool		isnull;

		*avail = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
		if (isnull)
			*avail = 0;
	}
	else
		*avail = 0;
	SPI_finish();
	if (nxids > 0)
	{
		in_doubt->n = nxids;
		in_doubt->xids = xids;
		in_doubt->delta = palloc(sizeof(int64) * nxids);
		in_doubt->created = palloc(sizeof(bool) * nxids);
		in_doubt->seen = palloc(sizeof(bool) * nxids);
		pacelc_prepared_sku_deltas(pacelc_skus_relid(), sku, snap, xids, nxids,
								   in_doubt->delta, in_doubt->created,
								   in_doubt->seen);
	}
	UnregisterSnapshot(snap);
	return found;
}

void
pacelc_raise_unknown_sku(const char *sku)
{
	ereport(ERROR,
			(errcode(ERRCODE_PACELC_UNKNOWN_SKU),
			 errmsg("unknown sku \"%s\"", sku),
			 errhint("Create it with pacelc.set_stock().")));
}

/*
 * The lock a SKU's loader holds while it loads; later comers wait for it.
 * It is an advisory-style heavyweight lock (field 4 tells it from the ones
 * of pg_advisory_lock), so the deadlock detector sees such a wait: a
 * loader stuck behind a table lock held by a waiter is a deadlock that
 * PostgreSQL breaks, not a hang.  Two SKUs with the same 64-bit hash only
 * share a lock, which costs a short wait at most.
 */
#define PACELC_LOCKTAG_LOAD		0x5043

static void
loader_locktag(LOCKTAG *tag, StockKey *key)
{
	uint64		h = hash_bytes_extended((const unsigned char *) key,
										sizeof(StockKey), 0);

	SET_LOCKTAG_ADVISORY(*tag, key->dbid, (uint32) (h >> 32), (uint32) h,
						 PACELC_LOCKTAG_LOAD);
}

/* Deletes every entry matching dbid (and relid, if valid) or orphaned. */
static int
stock_sweep(Oid dbid, Oid relid, Oid *dead_dbs, int n_dead_dbs, bool orphans)
{
	HASH_SEQ_STATUS status;
	StockEntry *entry;
	int			i,
				n = 0;

	for (i = 0; i < STOCK_PARTITIONS; i++)
		LWLockAcquire(&stock_shared->locks[i].lock, LW_EXCLUSIVE);
	hash_seq_init(&status, stock_htab);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		bool		drop = false;

		if (OidIsValid(dbid) && entry->key.dbid == dbid &&
			(!OidIsValid(relid) || entry->key.relid == relid))
			drop = true;
		for (i = 0; !drop && i < n_dead_dbs; i++)
			drop = (entry->key.dbid == dead_dbs[i]);
		/* no committed row, and no open transaction that may create one */
		if (orphans && entry->state == ENTRY_READY &&
			pg_atomic_read_u32(&entry->exists) == 0 &&
			pg_atomic_read_u32(&entry->pins) == 0)
			drop = true;
		if (drop && entry->state == ENTRY_READY)
		{
			stock_free_entry(entry, get_hash_value(stock_htab, &entry->key));
			n++;
		}
	}
	for (i = STOCK_PARTITIONS - 1; i >= 0; i--)
		LWLockRelease(&stock_shared->locks[i].lock);
	return n;
}

/*
 * Shared memory is full: frees what nobody can use any more, namely
 * entries of databases that no longer exist (dropped while this server
 * ran) and SKUs whose creating transactions all ended without a row.
 * Entries of DROP DATABASE / DROP EXTENSION are freed when those commit
 * (stock_object_access); this catches whatever that missed.
 */
static int
stock_reclaim(void)
{
	HASH_SEQ_STATUS status;
	StockEntry *entry;
	Oid		   *dbs;
	int			ndbs = 0,
				ndead = 0,
				i,
				j;

	dbs = palloc(sizeof(Oid) * 64);
	for (i = 0; i < STOCK_PARTITIONS; i++)
		LWLockAcquire(&stock_shared->locks[i].lock, LW_SHARED);
	hash_seq_init(&status, stock_htab);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (entry->key.dbid == MyDatabaseId)
			continue;
		for (j = 0; j < ndbs; j++)
			if (dbs[j] == entry->key.dbid)
				break;
		if (j == ndbs && ndbs < 64)
			dbs[ndbs++] = entry->key.dbid;
	}
	for (i = STOCK_PARTITIONS - 1; i >= 0; i--)
		LWLockRelease(&stock_shared->locks[i].lock);

	/* catalog lookups outside the LWLocks */
	for (i = 0; i < ndbs; i++)
		if (!SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dbs[i])))
			dbs[ndead++] = dbs[i];
	return stock_sweep(InvalidOid, InvalidOid, dbs, ndead, true);
}

static void
raise_too_many_skus(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("too many SKUs for pacelc shared memory"),
			 errdetail("\"pacelc.max_skus\" (%d) SKUs are in use across all databases.",
					   pacelc_max_skus),
			 errhint("Increase \"pacelc.max_skus\" and restart the server.")));
}

/*
 * Counts a new entry against pacelc.max_skus.  When full, a SKU that does
 * not exist is PC002 (not 53200), and stale entries are reclaimed before
 * giving up.
 */
static void
stock_reserve_slot(const char *sku, bool create)
{
	int64		dummy;
	int			attempt;

	for (attempt = 0;; attempt++)
	{
		if (pg_atomic_fetch_add_u32(&stock_shared->nentries, 1) < (uint32) pacelc_max_skus)
			return;
		pg_atomic_fetch_sub_u32(&stock_shared->nentries, 1);
		if (attempt == 0 && !create && !load_from_tables(sku, &dummy, NULL))
			pacelc_raise_unknown_sku(sku);
		if (attempt > 0 || stock_reclaim() == 0)
			raise_too_many_skus();
	}
}

/*
 * Pins an entry that has no committed row yet, for a transaction that may
 * create it: the entry is freed when the last such transaction ends
 * without a row (stock_unpin), e.g. a set_stock() of a new SKU that rolls
 * back.  The caller holds the partition lock.
 */
static void
stock_pin(StockEntry *entry, uint64 generation)
{
	EscrowTouch *touch = escrow_touch(entry, generation, true);

	if (!touch->pinned)
	{
		pg_atomic_fetch_add_u32(&entry->pins, 1);
		touch->pinned = true;
	}
}

static void
raise_prepared_full(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("out of shared memory for the stock of prepared transactions"),
			 errhint("Finish prepared transactions, or increase \"max_prepared_transactions\" and restart the server.")));
}

#define IN_DOUBT_NONE	0		/* nothing in doubt touched the SKU */
#define IN_DOUBT_LOCKED	1		/* registered: prepared.c's lock is held */
#define IN_DOUBT_RETRY	2		/* one of them ended meanwhile: load again */
#define IN_DOUBT_FULL	3		/* no room left in prepared.c */

/*
 * Registers what the prepared transactions in doubt did to a SKU being
 * loaded, as lines of their (recovered) slots, and takes their takes out of
 * the counter: it is then exact whichever way each ends, and the settling
 * of their COMMIT/ROLLBACK PREPARED finds the lines.  The loaded counter
 * must be published before prepared.c's lock is released (IN_DOUBT_LOCKED),
 * or a settling in between would be lost.  One that ended since the load
 * read the tables makes the load start again.
 */
static int
escrow_register_in_doubt(StockEntry *entry, InDoubt *d, int64 *avail)
{
	int			i;
	bool		any = false;

	for (i = 0; i < d->n; i++)
		any |= d->seen[i];
	if (!any)
		return IN_DOUBT_NONE;

	pacelc_prepared_lock();
	for (i = 0; i < d->n; i++)
	{
		if (d->seen[i] && !TransactionIdIsInProgress(d->xids[i]))
		{
			pacelc_prepared_unlock();
			return IN_DOUBT_RETRY;
		}
	}
	for (i = 0; i < d->n; i++)
	{
		PreparedLine line;

		if (!d->seen[i] || (d->delta[i] == 0 && !d->created[i]))
			continue;
		memset(&line, 0, sizeof(line));
		line.xid = d->xids[i];
		line.entry = entry;
		line.generation = entry->generation;
		line.taken = Max(-d->delta[i], 0);
		line.pending = Max(d->delta[i], 0);
		line.created = d->created[i];
		if (!pacelc_prepared_begin(line.xid, true) ||
			!pacelc_prepared_add_line(&line))
		{
			pacelc_prepared_drop_entry(entry, entry->generation);
			pacelc_prepared_unlock();
			return IN_DOUBT_FULL;
		}
		*avail -= line.taken;
	}
	return IN_DOUBT_LOCKED;
}

/*
 * Finds the entry of a SKU, loading it from the tables on first use.
 * Concurrent first users wait for the one loader rather than loading twice.
 * With create, a SKU without a row gets an entry with a zero counter (the
 * caller is about to create the row); without it, such a SKU is PC002.
 */
StockEntry *
pacelc_stock_acquire(const char *sku, bool create, uint64 *generation)
{
	StockKey	key;
	uint32		hash;
	LWLock	   *lock;
	StockEntry *entry;
	bool		found;
	int64		avail;
	LOCKTAG		tag;
	bool		loader = false;
	int			in_doubt_rc;

	pacelc_stock_check_shmem();
	make_key(&key, sku);
	hash = get_hash_value(stock_htab, &key);
	lock = partition_lock(hash);

	for (;;)
	{
		int			state = -1;
		bool		unknown = false;

		LWLockAcquire(lock, LW_SHARED);
		entry = hash_search_with_hash_value(stock_htab, &key, hash, HASH_FIND, NULL);
		if (entry)
		{
			state = entry->state;
			*generation = entry->generation;
			if (state == ENTRY_READY && pg_atomic_read_u32(&entry->exists) == 0)
			{
				if (create)
					stock_pin(entry, *generation);
				else if (!escrow_created_here(entry, *generation))
					unknown = true;
			}
		}
		LWLockRelease(lock);

		if (entry && state == ENTRY_READY)
		{
			if (loader)
				LockRelease(&tag, ExclusiveLock, false);
			if (unknown)
				pacelc_raise_unknown_sku(sku);
			return entry;
		}
		if (entry)
		{
			/*
			 * Someone else is loading it: wait for its loader's lock (the
			 * deadlock detector sees this wait), then look again.
			 */
			Assert(!loader);
			loader_locktag(&tag, &key);
			(void) LockAcquire(&tag, ShareLock, false, false);
			LockRelease(&tag, ShareLock, false);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		if (!loader)
		{
			/* become the loader, then look again: someone may have been first */
			loader_locktag(&tag, &key);
			(void) LockAcquire(&tag, ExclusiveLock, false, false);
			loader = true;
			continue;
		}

		/* not there: create it in state LOADING, then load outside the lock */
		stock_reserve_slot(sku, create);
		LWLockAcquire(lock, LW_EXCLUSIVE);
		entry = hash_search_with_hash_value(stock_htab, &key, hash,
											HASH_ENTER_NULL, &found);
		if (entry == NULL || found)
		{
			LWLockRelease(lock);
			pg_atomic_fetch_sub_u32(&stock_shared->nentries, 1);
			if (entry == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("out of shared memory for pacelc SKUs"),
						 errhint("Increase \"pacelc.max_skus\" and restart the server.")));
			continue;			/* cannot happen while we hold the load lock */
		}
		entry->state = ENTRY_LOADING;
		entry->generation = pg_atomic_fetch_add_u64(&stock_shared->next_generation, 1);
		pg_atomic_init_u64(&entry->avail, 0);
		pg_atomic_init_u32(&entry->exists, 0);
		pg_atomic_init_u32(&entry->pins, 0);
		loading_entry = entry;
		LWLockRelease(lock);

		for (;;)
		{
			InDoubt		in_doubt;

			found = load_from_tables(sku, &avail, &in_doubt);
			if (!found && !create)
			{
				remove_loading_entry();
				LockRelease(&tag, ExclusiveLock, false);
				pacelc_raise_unknown_sku(sku);
			}
			in_doubt_rc = escrow_register_in_doubt(entry, &in_doubt, &avail);
			if (in_doubt_rc != IN_DOUBT_RETRY)
				break;
		}
		if (in_doubt_rc == IN_DOUBT_FULL)
		{
			remove_loading_entry();
			LockRelease(&tag, ExclusiveLock, false);
			raise_prepared_full();
		}

		LWLockAcquire(lock, LW_EXCLUSIVE);
		pg_atomic_write_u64(&entry->avail, (uint64) avail);
		pg_atomic_write_u32(&entry->exists, found ? 1 : 0);
		*generation = entry->generation;
		if (!found)
			stock_pin(entry, *generation);
		entry->state = ENTRY_READY;
		loading_entry = NULL;
		LWLockRelease(lock);
		if (in_doubt_rc == IN_DOUBT_LOCKED)
			pacelc_prepared_unlock();
		LockRelease(&tag, ExclusiveLock, false);
		return entry;
	}
}

/* ---------------------------------------------------------------------
 * The escrow itself
 * --------------------------------------------------------------------- */

/* Grows the record array before a counter changes, so nothing can fail after. */
static void
escrow_make_room(int k)
{
	escrow = pacelc_grow_array(escrow, &max_escrow, n_escrow + k,
							   sizeof(EscrowRecord));
}

/*
 * The per-entry summary of this transaction's records.  With enter, it is
 * created if missing (which may fail, so callers do it before changing a
 * counter); otherwise NULL if the transaction never touched the entry.
 */
static EscrowTouch *
escrow_touch(StockEntry *entry, uint64 generation, bool enter)
{
	EscrowTouchKey key;
	EscrowTouch *touch;
	bool		found;

	if (escrow_touched == NULL)
	{
		HASHCTL		ctl;

		if (!enter)
			return NULL;
		ctl.keysize = sizeof(EscrowTouchKey);
		ctl.entrysize = sizeof(EscrowTouch);
		ctl.hcxt = TopMemoryContext;
		escrow_touched = hash_create("pacelc escrow per SKU", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.entry = entry;
	key.generation = generation;
	touch = hash_search(escrow_touched, &key, enter ? HASH_ENTER : HASH_FIND, &found);
	if (enter && !found)
	{
		touch->pending = 0;
		touch->created = 0;
		touch->pinned = false;
	}
	return touch;
}

/* Does the record count towards the increases applied at commit? */
static inline bool
escrow_is_pending(EscrowRecord *rec)
{
	return rec->delta > 0 || rec->from_pending;
}

/* Removes a record's part of its entry's summary (undo, savepoint rollback). */
static void
escrow_forget(EscrowRecord *rec)
{
	EscrowTouch *touch = escrow_touch(rec->entry, rec->generation, false);

	if (touch == NULL)
		return;
	if (escrow_is_pending(rec))
		touch->pending -= rec->delta;
	if (rec->mark_exists)
		touch->created--;
}

/*
 * Units this transaction restocked or released are not in the shared counter
 * before commit, yet the transaction itself may reserve them: what is left of
 * its own pending increases for an entry.
 */
int64
pacelc_escrow_own_pending(StockEntry *entry, uint64 generation)
{
	EscrowTouch *touch = escrow_touch(entry, generation, false);

	return touch ? touch->pending : 0;
}

/* Did this transaction create the SKU (its row is not committed yet)? */
static bool
escrow_created_here(StockEntry *entry, uint64 generation)
{
	EscrowTouch *touch = escrow_touch(entry, generation, false);

	return touch != NULL && touch->created > 0;
}

/* The caller made room (escrow_make_room) and has the summary entry. */
static void
escrow_push(StockEntry *entry, uint64 generation, int64 delta,
			bool from_pending, bool mark_exists)
{
	EscrowRecord *rec;
	EscrowTouch *touch = escrow_touch(entry, generation, true);

	escrow_make_room(1);
	rec = &escrow[n_escrow];
	rec->entry = entry;
	rec->generation = generation;
	rec->delta = delta;
	rec->from_pending = from_pending;
	rec->mark_exists = mark_exists;
	rec->subid = GetCurrentSubTransactionId();
	n_escrow++;
	if (escrow_is_pending(rec))
		touch->pending += delta;
	if (mark_exists)
		touch->created++;
}

/*
 * Takes qty units if that many are there, without waiting for anyone: the
 * heart of "never oversell, never queue".  The transaction's own pending
 * increases are used first, then the shared counter (compare-and-swap).
 */
bool
pacelc_escrow_take(StockEntry *entry, uint64 generation, int64 qty)
{
	int64		own = pacelc_escrow_own_pending(entry, generation);
	int64		from_own = Min(own, qty);
	int64		rest = qty - from_own;
	uint64		old;

	/* make room first: nothing may fail once the counter has changed */
	escrow_make_room(2);
	(void) escrow_touch(entry, generation, true);

	if (rest > 0)
	{
		old = pg_atomic_read_u64(&entry->avail);
		for (;;)
		{
			if ((int64) old < rest)
				return false;
			if (pg_atomic_compare_exchange_u64(&entry->avail, &old,
											   (uint64) ((int64) old - rest)))
				break;
		}
		escrow_push(entry, generation, -rest, false, false);
	}
	if (from_own > 0)
		escrow_push(entry, generation, -from_own, true, false);
	return true;
}

/* Notes an increase to apply when (and if) the transaction commits. */
void
pacelc_escrow_add_on_commit(StockEntry *entry, uint64 generation, int64 qty,
							bool mark_exists)
{
	escrow_push(entry, generation, qty, false, mark_exists);
}

/*
 * Gives units taken from the counter back, unless the entry was freed
 * meanwhile (DROP EXTENSION): the generation is checked under the
 * partition lock, which whoever frees the slot holds exclusively.
 */
static void
escrow_give_back(StockEntry *entry, uint64 generation, int64 qty)
{
	LWLock	   *lock;

	if (entry->generation != generation)
		return;
	lock = partition_lock(get_hash_value(stock_htab, &entry->key));
	LWLockAcquire(lock, LW_SHARED);
	if (entry->generation == generation)
		pg_atomic_fetch_add_u64(&entry->avail, (uint64) qty);
	LWLockRelease(lock);
}

/* Ends one record at abort: takes from the counter go back. */
static void
escrow_abort_record(EscrowRecord *rec)
{
	if (rec->delta < 0 && !rec->from_pending)
		escrow_give_back(rec->entry, rec->generation, -rec->delta);
}

/*
 * Undoes every take made since mark at once, for a cart line that did not
 * fit or an idempotent retry that found its request already done.
 */
void
pacelc_escrow_undo_to(int mark)
{
	while (n_escrow > mark)
	{
		EscrowRecord *rec = &escrow[--n_escrow];

		escrow_abort_record(rec);
		escrow_forget(rec);
	}
}

/*
 * Ends the pins of this transaction: an entry whose SKU row was not
 * created by anyone (all its creating transactions rolled back) is freed,
 * so rolled-back creates never use up pacelc.max_skus.
 */
static void
stock_unpin_entry(StockEntry *entry, uint64 generation)
{
	uint32		hash;
	LWLock	   *lock;

	if (entry->generation != generation)
		return;
	hash = get_hash_value(stock_htab, &entry->key);
	lock = partition_lock(hash);
	LWLockAcquire(lock, LW_EXCLUSIVE);
	if (entry->generation == generation)
	{
		if (pg_atomic_sub_fetch_u32(&entry->pins, 1) == 0 &&
			pg_atomic_read_u32(&entry->exists) == 0 &&
			entry->state == ENTRY_READY)
			stock_free_entry(entry, hash);
	}
	LWLockRelease(lock);
}

static void
stock_unpin(EscrowTouch *touch)
{
	if (!touch->pinned)
		return;
	touch->pinned = false;
	stock_unpin_entry(touch->key.entry, touch->key.generation);
}

/*
 * Forgets the summaries at the end of a transaction.  A table that grew
 * large (a transaction touching many SKUs) is freed rather than kept.
 */
static void
escrow_touched_reset(void)
{
	HASH_SEQ_STATUS status;
	EscrowTouch *touch;

	if (escrow_touched == NULL)
		return;
	if (hash_get_num_entries(escrow_touched) > 1024)
	{
		hash_destroy(escrow_touched);
		escrow_touched = NULL;
		return;
	}
	hash_seq_init(&status, escrow_touched);
	while ((touch = hash_seq_search(&status)) != NULL)
		hash_search(escrow_touched, &touch->key, HASH_REMOVE, NULL);
}

/*
 * At commit, each SKU's pending increases go to the counter net of the
 * takes this transaction made out of them, in one atomic add.  Applying the
 * increases first and the takes afterwards would let another buyer take, in
 * between, units this transaction has already promised to itself (an
 * oversell); the takes first would make the counter dip and refuse buyers
 * for nothing.  The net is never negative: a take out of pending units
 * always follows the increase it uses, in the same or an inner
 * (sub)transaction.  One pass over the SKUs touched: linear, however many.
 */
static void
escrow_commit(void)
{
	HASH_SEQ_STATUS status;
	EscrowTouch *touch;

	if (escrow_touched == NULL)
		return;
	hash_seq_init(&status, escrow_touched);
	while ((touch = hash_seq_search(&status)) != NULL)
	{
		StockEntry *entry = touch->key.entry;

		Assert(touch->pending >= 0);
		if (entry->generation == touch->key.generation)
		{
			if (touch->pending > 0)
				pg_atomic_fetch_add_u64(&entry->avail, (uint64) touch->pending);
			if (touch->created > 0)
				pg_atomic_write_u32(&entry->exists, 1);
		}
		stock_unpin(touch);
	}
}

/* At abort, takes from the counter go back and everything else is dropped. */
static void
escrow_abort(void)
{
	HASH_SEQ_STATUS status;
	EscrowTouch *touch;
	int			i;

	for (i = 0; i < n_escrow; i++)
		escrow_abort_record(&escrow[i]);
	if (escrow_touched == NULL)
		return;
	hash_seq_init(&status, escrow_touched);
	while ((touch = hash_seq_search(&status)) != NULL)
		stock_unpin(touch);
}

/* Frees the entries of what this transaction dropped (at its commit). */
static void
stock_drops_commit(void)
{
	int			i;

	for (i = 0; i < n_stock_drops; i++)
		(void) stock_sweep(stock_drops[i].dbid, stock_drops[i].relid, NULL, 0, false);
	n_stock_drops = 0;
}

/* ---------------------------------------------------------------------
 * Two-phase commit: the ledger of a prepared transaction (see prepared.c)
 * --------------------------------------------------------------------- */

/*
 * Applies the lines of prepared transactions that ended: increases of
 * those that committed, takes back of those that rolled back.  The caller
 * holds prepared.c's lock (taken before the partition locks).
 */
static void
escrow_settle_lines(PreparedLine *lines, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		StockEntry *entry = lines[i].entry;
		uint64		generation = lines[i].generation;

		if (lines[i].commit && entry->generation == generation)
		{
			LWLock	   *lock = partition_lock(get_hash_value(stock_htab, &entry->key));

			LWLockAcquire(lock, LW_SHARED);
			if (entry->generation == generation)
			{
				if (lines[i].pending > 0)
					pg_atomic_fetch_add_u64(&entry->avail, (uint64) lines[i].pending);
				if (lines[i].created)
					pg_atomic_write_u32(&entry->exists, 1);
			}
			LWLockRelease(lock);
		}
		else if (!lines[i].commit && lines[i].taken > 0)
			escrow_give_back(entry, generation, lines[i].taken);
		if (lines[i].pinned)
			stock_unpin_entry(entry, generation);
	}
}

/*
 * Settles every prepared transaction that has ended, whoever ended it:
 * after each COMMIT PREPARED and ROLLBACK PREPARED, and (for one whose
 * statement failed, or ran where this hook did not) before a PREPARE, a
 * rebuild and the escrow audit.  A crash between the end of a prepared
 * transaction and its settling loses shared memory too: the rebuild then
 * reads the outcome from the tables.
 */
void
pacelc_escrow_settle_finished(void)
{
	PreparedLine *lines;
	int			n;

	if (!pacelc_prepared_enabled())
		return;
	pacelc_prepared_lock();
	n = pacelc_prepared_claim_finished(&lines);
	escrow_settle_lines(lines, n);
	pacelc_prepared_unlock();
	if (lines)
		pfree(lines);
}

/*
 * At PRE_PREPARE (errors still abort the transaction normally) the ledger
 * goes to shared memory, per entry: units taken from the counter, pending
 * increases net of the takes out of them, SKU created, pin held.  The slot
 * stays PREPARING until the PREPARE is durable (XACT_EVENT_PREPARE); if the
 * PREPARE fails instead, the abort drops it and the backend's ledger gives
 * the units back as usual.
 */
static void
escrow_pre_prepare(void)
{
	HASH_SEQ_STATUS status;
	EscrowTouch *touch;
	TransactionId xid;
	bool		ok;
	int			i;

	if (escrow_touched == NULL || hash_get_num_entries(escrow_touched) == 0)
		return;
	if (!pacelc_prepared_enabled())
		return;					/* max_prepared_transactions = 0: PREPARE fails */
	xid = GetTopTransactionId();

	hash_seq_init(&status, escrow_touched);
	while ((touch = hash_seq_search(&status)) != NULL)
		touch->taken = 0;
	for (i = 0; i < n_escrow; i++)
	{
		EscrowRecord *rec = &escrow[i];

		if (rec->delta < 0 && !rec->from_pending)
			escrow_touch(rec->entry, rec->generation, false)->taken -= rec->delta;
	}

	pacelc_escrow_settle_finished();	/* frees the slots of ended ones */
	pacelc_prepared_lock();
	ok = pacelc_prepared_begin(xid, false);
	hash_seq_init(&status, escrow_touched);
	while ((touch = hash_seq_search(&status)) != NULL)
	{
		PreparedLine line;

		if (!ok)
			continue;
		memset(&line, 0, sizeof(line));
		line.xid = xid;
		line.entry = touch->key.entry;
		line.generation = touch->key.generation;
		line.taken = touch->taken;
		line.pending = touch->pending;
		line.created = touch->created > 0;
		line.pinned = touch->pinned;
		ok = pacelc_prepared_add_line(&line);
	}
	if (!ok)
		pacelc_prepared_forget(xid);
	pacelc_prepared_unlock();
	if (!ok)
		raise_prepared_full();
	preparing_xid = xid;
}

/*
 * The PREPARE is durable: the ledger belongs to the prepared transaction
 * now.  Nothing is given back or applied, and the pins stay (with the
 * lines) until COMMIT/ROLLBACK PREPARED.
 */
static void
escrow_prepared(void)
{
	pacelc_prepared_lock();
	pacelc_prepared_mark_prepared(preparing_xid);
	pacelc_prepared_unlock();
	preparing_xid = InvalidTransactionId;
	escrow_touched_reset();
	n_escrow = 0;
}

/* The PREPARE failed after PRE_PREPARE: the slot goes, the ledger aborts. */
static void
escrow_prepare_failed(void)
{
	pacelc_prepared_lock();
	pacelc_prepared_forget(preparing_xid);
	pacelc_prepared_unlock();
	preparing_xid = InvalidTransactionId;
}

/*
 * COMMIT PREPARED and ROLLBACK PREPARED settle, in whichever session runs
 * them, after PostgreSQL has finished the transaction.  If the statement
 * fails, the abort settles whatever did end.
 */
static void
escrow_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		finishing = false;

	if (IsA(parsetree, TransactionStmt))
	{
		TransactionStmtKind kind = ((TransactionStmt *) parsetree)->kind;

		finishing = (kind == TRANS_STMT_COMMIT_PREPARED ||
					 kind == TRANS_STMT_ROLLBACK_PREPARED);
	}
	if (finishing)
		settle_at_abort = true;
	pacelc_next_utility(prev_ProcessUtility, pstmt, queryString, readOnlyTree,
						context, params, queryEnv, dest, qc);
	if (finishing)
	{
		settle_at_abort = false;
		pacelc_escrow_settle_finished();
	}
}

/*
 * Commit applies pending increases; abort returns taken units.  PREPARE
 * hands the ledger to shared memory (above).
 */
static void
stock_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (n_stock_drops > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that drops pacelc stock"),
						 errdetail("The transaction drops the pacelc extension, whose stock counters are freed when it commits."),
						 errhint("Commit it directly.")));
			escrow_pre_prepare();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			escrow_commit();
			escrow_touched_reset();
			n_escrow = 0;
			if (n_stock_drops > 0)
				stock_drops_commit();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (TransactionIdIsValid(preparing_xid))
				escrow_prepare_failed();
			if (settle_at_abort)
			{
				settle_at_abort = false;
				pacelc_escrow_settle_finished();
			}
			remove_loading_entry();
			escrow_abort();
			escrow_touched_reset();
			n_escrow = 0;
			n_stock_drops = 0;
			break;
		case XACT_EVENT_PREPARE:
			if (TransactionIdIsValid(preparing_xid))
			{
				escrow_prepared();
				n_stock_drops = 0;
				break;
			}
			/* nothing touched */
			escrow_abort();
			escrow_touched_reset();
			n_escrow = 0;
			n_stock_drops = 0;
			break;
		default:
			break;
	}
}

/*
 * Rolling back to a savepoint returns what the subtransaction took; a
 * released subtransaction hands its records to the parent.  A
 * subtransaction's records are the tail of the list (inner ones end
 * first), so both cost what the subtransaction itself did, not more.
 */
static void
stock_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			i;

	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (i = n_escrow - 1; i >= 0 && escrow[i].subid >= mySubid; i--)
			escrow[i].subid = parentSubid;
		for (i = n_stock_drops - 1; i >= 0 && stock_drops[i].subid >= mySubid; i--)
			stock_drops[i].subid = parentSubid;
	}
	else if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		remove_loading_entry();
		while (n_escrow > 0 && escrow[n_escrow - 1].subid >= mySubid)
		{
			EscrowRecord *rec = &escrow[--n_escrow];

			escrow_abort_record(rec);
			escrow_forget(rec);
		}
		while (n_stock_drops > 0 && stock_drops[n_stock_drops - 1].subid >= mySubid)
			n_stock_drops--;
	}
}

/*
 * DROP DATABASE and DROP EXTENSION (which drops pacelc.skus) free the
 * entries of the dropped database or extension when they commit.  The
 * hook runs before the objects go, in the dropping backend.
 */
static void
stock_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					int subId, void *arg)
{
	Oid			dbid = InvalidOid;
	Oid			relid = InvalidOid;

	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (access != OAT_DROP || stock_htab == NULL)
		return;

	if (classId == DatabaseRelationId)
		dbid = objectId;
	else if (classId == RelationRelationId && subId == 0)
	{
		Oid			nsp = get_namespace_oid("pacelc", true);
		char	   *name;

		if (!OidIsValid(nsp) || get_rel_namespace(objectId) != nsp)
			return;
		name = get_rel_name(objectId);
		if (name == NULL || strcmp(name, "skus") != 0)
			return;
		dbid = MyDatabaseId;
		relid = objectId;
	}
	else
		return;

	stock_drops = pacelc_grow_array(stock_drops, &max_stock_drops,
									n_stock_drops + 1, sizeof(StockDrop));
	stock_drops[n_stock_drops].dbid = dbid;
	stock_drops[n_stock_drops].relid = relid;
	stock_drops[n_stock_drops].subid = GetCurrentSubTransactionId();
	n_stock_drops++;
}


/*
 * Reads the counter of a SKU of the given pacelc.skus table without
 * loading it; false if it is not in shared memory (or has no row yet).
 */
bool
pacelc_escrow_read_counter(const char *sku, Oid relid, int64 *avail)
{
	StockKey	key;
	uint32		hash;
	LWLock	   *lock;
	StockEntry *entry;
	bool		ready = false;

	memset(&key, 0, sizeof(StockKey));
	key.dbid = MyDatabaseId;
	key.relid = relid;
	strlcpy(key.sku, sku, sizeof(key.sku));
	hash = get_hash_value(stock_htab, &key);
	lock = partition_lock(hash);
	LWLockAcquire(lock, LW_SHARED);
	entry = hash_search_with_hash_value(stock_htab, &key, hash, HASH_FIND, NULL);
	if (entry && entry->state == ENTRY_READY &&
		pg_atomic_read_u32(&entry->exists) != 0)
	{
		ready = true;
		*avail = (int64) pg_atomic_read_u64(&entry->avail);
	}
	LWLockRelease(lock);
	return ready;
}


/* The counter of an entry: units that may still be promised. */
int64
pacelc_escrow_counter(StockEntry *entry)
{
	return (int64) pg_atomic_read_u64(&entry->avail);
}

/* Does the SKU of an entry have a committed pacelc.skus row? */
bool
pacelc_escrow_sku_exists(StockEntry *entry)
{
	return pg_atomic_read_u32(&entry->exists) != 0;
}

/* Where this transaction's ledger ends now: for pacelc_escrow_undo_to(). */
int
pacelc_escrow_mark(void)
{
	return n_escrow;
}
