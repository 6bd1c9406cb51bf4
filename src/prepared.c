/*-------------------------------------------------------------------------
 *
 * prepared.c
 *		The escrow of prepared transactions (two-phase commit).
 *
 * A transaction that changed stock keeps its escrow in its backend
 * (escrow.c): takes already out of the counters, increases to apply at
 * commit.  PREPARE TRANSACTION ends the backend's part, so at PREPARE that
 * ledger moves here, into shared memory, under the transaction's xid: a
 * slot per prepared transaction and a line per entry it touched.  COMMIT
 * PREPARED or ROLLBACK PREPARED may then come from any session; escrow.c
 * settles the lines of every prepared transaction that has finished
 * (pacelc_prepared_claim_finished), once, whoever claims them first.
 *
 * Shared memory does not survive a restart (nor a crash, nor a standby's
 * promotion), while prepared transactions do: PostgreSQL keeps them in its
 * state files and WAL, and has no hook for an extension there.  Such a
 * transaction is "in doubt" to the escrow: its rows are in the heap but
 * in progress to every snapshot, so reading committed rows alone would
 * leave out its holds (an oversell if it commits).  When a SKU is rebuilt
 * while transactions are in doubt, pacelc_prepared_sku_deltas() reads the
 * versions of the SKU's rows that those transactions wrote or replaced,
 * and escrow.c registers what each one did to the SKU as a line of a
 * "recovered" slot: the SKU is then exact whichever way it ends.
 *
 * Lock order: this module's lock before escrow.c's partition locks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/multixact.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/subtrans.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/twophase.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "prepared.h"
#include "support.h"

#define SLOT_FREE		0
#define SLOT_PREPARING	1		/* between PRE_PREPARE and PREPARE */
#define SLOT_PREPARED	2

typedef struct PreparedSlot
{
	TransactionId xid;
	int			state;
	bool		recovered;		/* in doubt: lines only of the SKUs rebuilt */
} PreparedSlot;

typedef struct PreparedShared
{
	LWLock	   *lock;
	pg_atomic_uint32 in_doubt_possible; /* prepared transactions may exist
										 * that this escrow does not know */
	int			nslots;
	PreparedSlot slots[FLEXIBLE_ARRAY_MEMBER];
} PreparedShared;

typedef struct PreparedLineKey
{
	TransactionId xid;
	void	   *entry;
	uint64		generation;
} PreparedLineKey;

typedef struct PreparedLineEntry
{
	PreparedLineKey key;
	int64		taken;
	int64		pending;
	bool		created;
	bool		pinned;
} PreparedLineEntry;

static PreparedShared *prepared_shared = NULL;
static HTAB *prepared_lines = NULL;

/* ---------------------------------------------------------------------
 * Shared memory
 * --------------------------------------------------------------------- */

/*
 * A slot per prepared transaction, plus one per backend that may be
 * between the two steps of PREPARE; lines for 64 SKUs per transaction on
 * average (more fit while shared memory has room to spare).
 */
static int
prepared_nslots(void)
{
	return max_prepared_xacts > 0 ? max_prepared_xacts + MaxBackends : 0;
}

static int
prepared_nlines(void)
{
	return max_prepared_xacts > 0 ? Max(max_prepared_xacts * 64, 1024) : 0;
}

Size
pacelc_prepared_shmem_size(void)
{
	if (max_prepared_xacts <= 0)
		return 0;
	return add_size(add_size(offsetof(PreparedShared, slots),
							 mul_size(prepared_nslots(), sizeof(PreparedSlot))),
					hash_estimate_size(prepared_nlines(), sizeof(PreparedLineEntry)));
}

void
pacelc_prepared_shmem_request(void)
{
	if (max_prepared_xacts > 0)
		RequestNamedLWLockTranche("pacelc_prepared", 1);
}

void
pacelc_prepared_shmem_startup(void)
{
	bool		found;
	HASHCTL		info;

	if (max_prepared_xacts <= 0)
		return;
	prepared_shared = ShmemInitStruct("pacelc prepared",
									  offsetof(PreparedShared, slots) +
									  prepared_nslots() * sizeof(PreparedSlot),
									  &found);
	if (!found)
	{
		prepared_shared->lock = &(GetNamedLWLockTranche("pacelc_prepared"))->lock;
		/* whatever was prepared before this start is in doubt */
		pg_atomic_init_u32(&prepared_shared->in_doubt_possible, 1);
		prepared_shared->nslots = prepared_nslots();
		memset(prepared_shared->slots, 0,
			   prepared_nslots() * sizeof(PreparedSlot));
	}
	info.keysize = sizeof(PreparedLineKey);
	info.entrysize = sizeof(PreparedLineEntry);
	prepared_lines = ShmemInitHash("pacelc prepared lines",
								   prepared_nlines(), prepared_nlines(),
								   &info, HASH_ELEM | HASH_BLOBS);
}

/* False when max_prepared_transactions is 0: nothing can be prepared. */
bool
pacelc_prepared_enabled(void)
{
	return prepared_shared != NULL;
}

void
pacelc_prepared_lock(void)
{
	LWLockAcquire(prepared_shared->lock, LW_EXCLUSIVE);
}

void
pacelc_prepared_unlock(void)
{
	LWLockRelease(prepared_shared->lock);
}

/* ---------------------------------------------------------------------
 * Slots and lines (the caller holds the lock)
 * --------------------------------------------------------------------- */

static PreparedSlot *
find_slot(TransactionId xid)
{
	int			i;

	for (i = 0; i < prepared_shared->nslots; i++)
		if (prepared_shared->slots[i].state != SLOT_FREE &&
			TransactionIdEquals(prepared_shared->slots[i].xid, xid))
			return &prepared_shared->slots[i];
	return NULL;
}

/*
 * Makes the slot of a transaction about to prepare (state PREPARING), or
 * of an in-doubt one found by a rebuild (recovered, PREPARED); returns
 * false if there is no room.  Existing slots are kept.
 */
bool
pacelc_prepared_begin(TransactionId xid, bool recovered)
{
	int			i;

	if (find_slot(xid) != NULL)
		return true;
	for (i = 0; i < prepared_shared->nslots; i++)
	{
		PreparedSlot *slot = &prepared_shared->slots[i];

		if (slot->state == SLOT_FREE)
		{
			slot->xid = xid;
			slot->state = recovered ? SLOT_PREPARED : SLOT_PREPARING;
			slot->recovered = recovered;
			return true;
		}
	}
	return false;
}

/* Adds a line (summed with one for the same entry); false if out of room. */
bool
pacelc_prepared_add_line(const PreparedLine *line)
{
	PreparedLineKey key;
	PreparedLineEntry *e;
	bool		found;

	memset(&key, 0, sizeof(key));
	key.xid = line->xid;
	key.entry = line->entry;
	key.generation = line->generation;
	e = hash_search(prepared_lines, &key, HASH_ENTER_NULL, &found);
	if (e == NULL)
		return false;
	if (!found)
	{
		e->taken = 0;
		e->pending = 0;
		e->created = false;
		e->pinned = false;
	}
	e->taken += line->taken;
	e->pending += line->pending;
	e->created |= line->created;
	e->pinned |= line->pinned;
	return true;
}

/* Drops the lines of one entry (a rebuild that could not finish). */
void
pacelc_prepared_drop_entry(void *entry, uint64 generation)
{
	HASH_SEQ_STATUS status;
	PreparedLineEntry *e;

	hash_seq_init(&status, prepared_lines);
	while ((e = hash_seq_search(&status)) != NULL)
		if (e->key.entry == entry && e->key.generation == generation)
			hash_search(prepared_lines, &e->key, HASH_REMOVE, NULL);
}

/* The transaction's PREPARE is durable: its lines wait for its end. */
void
pacelc_prepared_mark_prepared(TransactionId xid)
{
	PreparedSlot *slot = find_slot(xid);

	if (slot)
		slot->state = SLOT_PREPARED;
}

/* Removes the lines of xids[0..n-1], copying them to out when not NULL. */
static int
remove_lines(TransactionId *xids, bool *commits, int n, PreparedLine *out)
{
	HASH_SEQ_STATUS status;
	PreparedLineEntry *e;
	int			nout = 0;
	int			i;

	hash_seq_init(&status, prepared_lines);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		for (i = 0; i < n; i++)
			if (TransactionIdEquals(e->key.xid, xids[i]))
				break;
		if (i == n)
			continue;
		if (out)
		{
			PreparedLine *l = &out[nout];

			l->xid = e->key.xid;
			l->entry = e->key.entry;
			l->generation = e->key.generation;
			l->taken = e->taken;
			l->pending = e->pending;
			l->created = e->created;
			l->pinned = e->pinned;
			l->commit = commits ? commits[i] : false;
		}
		nout++;
		hash_search(prepared_lines, &e->key, HASH_REMOVE, NULL);
	}
	return nout;
}

/* The PREPARE failed: its slot and lines go, nothing is applied. */
void
pacelc_prepared_forget(TransactionId xid)
{
	PreparedSlot *slot = find_slot(xid);

	if (slot == NULL)
		return;
	slot->state = SLOT_FREE;
	(void) remove_lines(&xid, NULL, 1, NULL);
}

/* Has a prepared transaction of a slot ended (cheap enough to poll)? */
bool
pacelc_prepared_has_finished(void)
{
	int			i;

	if (prepared_shared == NULL)
		return false;
	for (i = 0; i < prepared_shared->nslots; i++)
	{
		PreparedSlot *slot = &prepared_shared->slots[i];

		if (slot->state == SLOT_PREPARED &&
			!TransactionIdIsInProgress(slot->xid))
			return true;
	}
	return false;
}

/*
 * Claims the lines of every prepared transaction that has ended (COMMIT
 * PREPARED or ROLLBACK PREPARED, from any session), freeing their slots:
 * each line is claimed once, by whoever comes first.  A prepared
 * transaction stays in the proc array until its end is in the commit log,
 * so "not in progress" means the commit log has the outcome.  Returns the
 * number of lines, palloc'd in *lines.
 */
int
pacelc_prepared_claim_finished(PreparedLine **lines)
{
	TransactionId *xids;
	bool	   *commits;
	int			n = 0;
	int			i;
	long		nlines;

	*lines = NULL;
	if (prepared_shared == NULL)
		return 0;
	xids = palloc(sizeof(TransactionId) * prepared_shared->nslots);
	commits = palloc(sizeof(bool) * prepared_shared->nslots);
	for (i = 0; i < prepared_shared->nslots; i++)
	{
		PreparedSlot *slot = &prepared_shared->slots[i];

		if (slot->state != SLOT_PREPARED || TransactionIdIsInProgress(slot->xid))
			continue;
		xids[n] = slot->xid;
		commits[n] = TransactionIdDidCommit(slot->xid);
		slot->state = SLOT_FREE;
		n++;
	}
	if (n == 0)
		return 0;
	nlines = hash_get_num_entries(prepared_lines);
	*lines = palloc(sizeof(PreparedLine) * Max(nlines, 1));
	return remove_lines(xids, commits, n, *lines);
}

/* ---------------------------------------------------------------------
 * Transactions in doubt
 * --------------------------------------------------------------------- */

/* Does this escrow know the prepared transaction (it prepared here)? */
static bool
known_here(TransactionId xid)
{
	PreparedSlot *slot = find_slot(xid);

	return slot != NULL && !slot->recovered;
}

/*
 * The prepared transactions of database dbid that this escrow does not
 * know from their PREPARE (it has been restarted, or promoted, since).
 * Once there are none in any database, there never will be again until
 * the next start, and the question costs nothing.
 */
int
pacelc_prepared_in_doubt(Oid dbid, TransactionId **xids)
{
	uint64		i;
	int			n = 0,
				nother = 0;

	*xids = NULL;
	if (prepared_shared == NULL ||
		pg_atomic_read_u32(&prepared_shared->in_doubt_possible) == 0)
		return 0;

	SPI_connect();
	if (SPI_execute("SELECT p.transaction, p.dbid FROM pg_catalog.pg_prepared_xact() p",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list the prepared transactions");
	*xids = SPI_palloc(sizeof(TransactionId) * Max(SPI_processed, 1));
	LWLockAcquire(prepared_shared->lock, LW_SHARED);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		TransactionId xid;
		Oid			db;

		xid = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[i],
												  SPI_tuptable->tupdesc, 1, &isnull));
		db = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
											SPI_tuptable->tupdesc, 2, &isnull));
		if (known_here(xid))
			continue;
		if (db == dbid)
			(*xids)[n++] = xid;
		else
			nother++;
	}
	LWLockRelease(prepared_shared->lock);
	SPI_finish();
	if (n == 0 && nother == 0 && !RecoveryInProgress())
		pg_atomic_write_u32(&prepared_shared->in_doubt_possible, 0);
	return n;
}

/*
 * Which of xids[] (top-level, in progress in snap) wrote (or deleted) a
 * tuple version: its index, or -1.  Aborted subtransactions do not count.
 */
static int
writer_of(TransactionId xid, Snapshot snap, const TransactionId *xids, int nxids)
{
	TransactionId top;
	int			i;

	if (!TransactionIdIsNormal(xid) || !XidInMVCCSnapshot(xid, snap))
		return -1;
	top = SubTransGetTopmostTransaction(xid);
	for (i = 0; i < nxids; i++)
		if (TransactionIdEquals(top, xids[i]))
			break;
	if (i == nxids)
		return -1;
	if (!TransactionIdEquals(top, xid) && TransactionIdDidAbort(xid))
		return -1;
	return i;
}

/*
 * Scans the versions of the rows of one SKU (all of them, SnapshotAny)
 * through an index on the SKU, calling back with the index of the in-doubt
 * transaction that inserted it (ins) and that deleted or updated it (del),
 * -1 for neither.
 */
typedef void (*version_cb) (HeapTuple tup, TupleDesc desc, int ins, int del,
							void *arg);

static void
scan_versions(Oid heapid, Oid indexid, const char *sku, Snapshot snap,
			  const TransactionId *xids, int nxids, version_cb cb, void *arg)
{
	Relation	heap = table_open(heapid, AccessShareLock);
	Relation	index = index_open(indexid, AccessShareLock);
	IndexScanDesc scan;
	TupleTableSlot *slot;

	scan = pacelc_text_index_scan(heap, index, CStringGetTextDatum(sku),
								  SnapshotAny);
	slot = table_slot_create(heap, NULL);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		BufferHeapTupleTableSlot *bslot = (BufferHeapTupleTableSlot *) slot;
		HeapTuple	tup;
		HeapTupleHeader h;
		int			ins = -1,
					del = -1;

		CHECK_FOR_INTERRUPTS();
		tup = bslot->base.tuple;
		LockBuffer(bslot->buffer, BUFFER_LOCK_SHARE);
		h = tup->t_data;
		if (!HeapTupleHeaderXminInvalid(h) && !HeapTupleHeaderXminFrozen(h))
			ins = writer_of(HeapTupleHeaderGetRawXmin(h), snap, xids, nxids);
		if (!(h->t_infomask & HEAP_XMAX_INVALID) &&
			!HEAP_XMAX_IS_LOCKED_ONLY(h->t_infomask))
			del = writer_of(HeapTupleHeaderGetUpdateXid(h), snap, xids, nxids);
		LockBuffer(bslot->buffer, BUFFER_LOCK_UNLOCK);
		if ((ins >= 0 || del >= 0) && ins != del)
			cb(tup, RelationGetDescr(heap), ins, del, arg);
	}
	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
}

typedef struct DeltaState
{
	int64	   *delta;
	bool	   *created;
	bool	   *seen;
	bool	   *deleted;
	AttrNumber	a1;				/* qty, or on_hand_base */
	AttrNumber	a2;				/* state */
	AttrNumber	a3;				/* folded */
} DeltaState;

/* A reservation version: what it withholds from on_hand. */
static void
reservation_cb(HeapTuple tup, TupleDesc desc, int ins, int del, void *arg)
{
	DeltaState *st = arg;
	bool		isnull;
	int64		qty = DatumGetInt64(heap_getattr(tup, st->a1, desc, &isnull));
	char	   *state = TextDatumGetCString(heap_getattr(tup, st->a2, desc, &isnull));
	bool		folded = DatumGetBool(heap_getattr(tup, st->a3, desc, &isnull));
	int64		held = 0;

	if (strcmp(state, "held") == 0 ||
		(strcmp(state, "confirmed") == 0 && !folded))
		held = qty;
	if (ins >= 0)
	{
		st->delta[ins] -= held;
		st->seen[ins] = true;
	}
	if (del >= 0)
	{
		st->delta[del] += held;
		st->seen[del] = true;
	}
}

/* A SKU row version: its on_hand_base. */
static void
sku_cb(HeapTuple tup, TupleDesc desc, int ins, int del, void *arg)
{
	DeltaState *st = arg;
	bool		isnull;
	int64		base = DatumGetInt64(heap_getattr(tup, st->a1, desc, &isnull));

	if (ins >= 0)
	{
		st->delta[ins] += base;
		st->seen[ins] = true;
		st->created[ins] = true;
	}
	if (del >= 0)
	{
		st->delta[del] -= base;
		st->seen[del] = true;
		st->deleted[del] = true;
	}
}

static Oid
pacelc_relid(const char *name)
{
	Oid			relid = get_relname_relid(name, get_namespace_oid("pacelc", false));

	if (!OidIsValid(relid))
		elog(ERROR, "relation \"pacelc.%s\" does not exist", name);
	return relid;
}

static AttrNumber
column(Oid relid, const char *name)
{
	AttrNumber	a = get_attnum(relid, name);

	if (a == InvalidAttrNumber)
		elog(ERROR, "column \"%s\" of a pacelc table does not exist", name);
	return a;
}

/*
 * What each in-doubt transaction xids[i] (in progress in snap) did to the
 * units of one SKU that may still be promised, on_hand - held, against
 * what snap shows: delta[i] (negative for a take), created[i] when it made
 * the SKU row, seen[i] when it touched the SKU at all.  confirm() and
 * folding change nothing here; a release is a positive delta; a hold, a
 * negative one.
 */
void
pacelc_prepared_sku_deltas(Oid skus_relid, const char *sku, Snapshot snap,
						   const TransactionId *xids, int nxids, int64 *delta,
						   bool *created, bool *seen)
{
	Oid			resid = pacelc_relid("reservation_data");
	DeltaState	st;
	int			i;

	st.delta = delta;
	st.created = created;
	st.seen = seen;
	st.deleted = palloc0(sizeof(bool) * nxids);
	for (i = 0; i < nxids; i++)
	{
		delta[i] = 0;
		created[i] = false;
		seen[i] = false;
	}

	/* versions outside the partial index (released, ...) withhold nothing */
	st.a1 = column(resid, "qty");
	st.a2 = column(resid, "state");
	st.a3 = column(resid, "folded");
	scan_versions(resid, pacelc_relid("reservation_data_open_idx"), sku, snap,
				  xids, nxids, reservation_cb, &st);

	st.a1 = column(skus_relid, "on_hand_base");
	scan_versions(skus_relid, pacelc_relid("skus_pkey"), sku, snap,
				  xids, nxids, sku_cb, &st);
	for (i = 0; i < nxids; i++)
		created[i] = created[i] && !st.deleted[i];
}
