/*-------------------------------------------------------------------------
 *
 * inflight.c
 *		The worker's record of the batch whose handlers are running.
 *
 * A worker handles a batch in one transaction: it locks the messages
 * (FOR UPDATE SKIP LOCKED), runs their handlers and marks them done.  An
 * attempt must count even when it never finishes: a handler that crashes
 * the server, or one the worker gives up on, must not run forever.  Rather
 * than commit a lease per message first (a second write of every message
 * and a second commit per batch), the worker writes the batch's ids and
 * attempts to a file of its own before the first handler runs and empties
 * it after the commit:
 *
 *		pg_stat_tmp/pacelc.<database oid>.<worker index>.inflight
 *
 * No fsync: the file has to outlive a crash of the worker or a crash
 * restart of the server, which the kernel's page cache does; an operating
 * system crash is not something a handler causes.  pg_stat_tmp is kept
 * out of base backups and pg_rewind, so a standby or a restored copy never
 * inherits a primary's batch.
 *
 * The owner holds an flock() on its file for its whole life.  Any worker
 * of the database that can take the lock of a file that is not empty (its
 * owner is not running) counts the attempts it lists (worker.c turns them
 * into expired leases, which the lease path then records as failed); a
 * worker starting meanwhile waits for the lock.  An entry counts only if
 * the message is still ready with the same number of attempts and no lease,
 * so counting twice (a crash between the commit and emptying the file)
 * changes nothing.  The file also names the database and pacelc.messages
 * by OID, and the WAL timeline: one left by a dropped database or
 * extension whose OID came back, or by a server that has since been
 * rewound and promoted (its batch was on another history), is recognised
 * as stale and emptied.
 *
 * This file calls no other pacelc file.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#include "inflight.h"

#define INFLIGHT_MAGIC	0x50434632	/* "PCF2" */

/* Longest wait for the lock of its own file (see pacelc_inflight_open). */
#define INFLIGHT_LOCK_WAIT_MS	30000

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

typedef struct InflightHeader
{
	uint32		magic;
	Oid			dbid;
	Oid			relid;			/* pacelc.messages */
	TimeLineID	tli;			/* the WAL timeline it was written on */
	int32		n;
	int32		started;		/* the first "started" entries count (see
								 * pacelc_inflight_settle) */
} InflightHeader;

static int	own_fd = -1;
static char own_path[MAXPGPATH];
static bool own_pending = false;	/* the file is not empty */
static bool own_collected = false;
static bool write_warned = false;
static int32 own_n = 0;			/* entries the file lists */
static int32 own_reached = 0;	/* of which the handlers started */

/* other workers' files, locked while their attempts are being counted */
static int *held_fds = NULL;
static int	nheld = 0;
static int	maxheld = 0;

/* What a worker does without its file, said with each warning about it. */
static int
errdetail_without_file(void)
{
	return errdetail("The pacelc worker will commit a lease per message before running handlers.");
}

/* Closes this worker's file (and with it its lock): it goes on without. */
static void
drop_own_file(void)
{
	close(own_fd);
	own_fd = -1;
}

static void
inflight_path(char *path, Oid dbid, int index)
{
	snprintf(path, MAXPGPATH, "%s/pacelc.%u.%d.inflight", PG_STAT_TMP_DIR, dbid, index);
}

/*
 * Opens this worker's file and takes its lock, waiting while another worker
 * counts what the file lists.  Without a file (pg_stat_tmp unwritable) the
 * worker still runs: pacelc_inflight_write() then returns false and the
 * worker commits a lease per message instead.
 */
void
pacelc_inflight_open(Oid dbid, int index)
{
	struct stat st;
	int			waited_ms = 0;

	inflight_path(own_path, dbid, index);
	/* not inherited by a program a handler starts, which would keep the lock */
	own_fd = BasicOpenFile(own_path, O_RDWR | O_CREAT | O_CLOEXEC | PG_BINARY);
	if (own_fd < 0)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", own_path),
				 errdetail_without_file()));
		return;
	}

	/*
	 * Another worker counting what it lists holds the lock for one short
	 * transaction; anything longer (a process that should not have the
	 * file) must not keep this worker from its work.
	 */
	while (flock(own_fd, LOCK_EX | LOCK_NB) != 0)
	{
		/* (past the wait, errno is EWOULDBLOCK: "temporarily unavailable") */
		if ((errno != EWOULDBLOCK && errno != EINTR) ||
			waited_ms >= INFLIGHT_LOCK_WAIT_MS)
		{
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not lock file \"%s\": %m", own_path),
					 errdetail_without_file()));
			drop_own_file();
			return;
		}
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
		waited_ms += 10;
	}
	if (fstat(own_fd, &st) != 0)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", own_path),
				 errdetail_without_file()));
		drop_own_file();
		return;
	}
	own_pending = st.st_size > 0;
}

/*
 * At exit (while the worker still holds its pool slot, so no worker of the
 * same index runs yet): an empty file is removed, one that lists a batch
 * stays for whoever counts it; either way its lock goes.
 */
void
pacelc_inflight_close(void)
{
	if (own_fd < 0)
		return;
	if (!own_pending)
		(void) unlink(own_path);
	drop_own_file();
}

/* Does this worker's file list a batch whose attempts are not counted yet? */
bool
pacelc_inflight_pending(void)
{
	return own_pending;
}

/*
 * Records the batch about to run, in one write.  False (warned once) when
 * it cannot: the caller then leases the messages the old way.  Called only
 * with the file empty (the caller counts what it listed first).
 */
bool
pacelc_inflight_write(Oid relid, const PacelcInflightEntry *entries, int n)
{
	InflightHeader hdr;
	Size		size = sizeof(hdr) + sizeof(PacelcInflightEntry) * n;
	char	   *buf;
	ssize_t		rc;

	if (own_fd < 0 || own_pending)
		return false;
	hdr.magic = INFLIGHT_MAGIC;
	hdr.dbid = MyDatabaseId;
	hdr.relid = relid;
	hdr.tli = GetWALInsertionTimeLine();
	hdr.n = n;
	hdr.started = n;			/* a crash: no telling which started */
	buf = palloc(size);
	memcpy(buf, &hdr, sizeof(hdr));
	memcpy(buf + sizeof(hdr), entries, sizeof(PacelcInflightEntry) * n);
	errno = 0;
	rc = pwrite(own_fd, buf, size, 0);
	pfree(buf);
	if (rc == (ssize_t) size)
	{
		own_pending = true;
		own_n = n;
		own_reached = 0;
		return true;
	}
	if (!write_warned)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", own_path),
				 errdetail_without_file()));
	write_warned = true;
	/* a partial write is stale (its size does not match): empty it */
	own_pending = rc > 0;
	pacelc_inflight_clear();
	return false;
}

/*
 * The handler of the k-th entry (from 1) is about to run.  A plain store:
 * the file learns it only from pacelc_inflight_settle().
 */
void
pacelc_inflight_reached(int k)
{
	own_reached = k;
}

/*
 * The batch will not commit (the worker exits, or its transaction failed):
 * only the entries whose handler started are attempts to count.  The file
 * says so with one 4-byte write (it cannot be torn by the process dying);
 * without it (a crash: no callback runs) every entry counts, which is what
 * the file says from the start.  None started: the file is emptied.
 */
void
pacelc_inflight_settle(void)
{
	int32		started = own_reached;

	if (own_fd < 0 || !own_pending || own_reached >= own_n)
		return;
	if (started == 0)
	{
		pacelc_inflight_clear();
		return;
	}
	if (pwrite(own_fd, &started, sizeof(started),
			   offsetof(InflightHeader, started)) == (ssize_t) sizeof(started))
		own_n = started;
}

/* The batch committed (or its attempts were counted): empty the file. */
void
pacelc_inflight_clear(void)
{
	if (own_fd < 0 || !own_pending)
		return;
	if (ftruncate(own_fd, 0) != 0)
	{
		/* counted again later, which changes nothing (see the top) */
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not truncate file \"%s\": %m", own_path)));
		return;
	}
	own_pending = false;
}

/*
 * Appends the entries of the file open at fd to *entries (*n used, *max
 * allocated).  A file that is not whole, or that is another database's or
 * another incarnation of pacelc.messages, adds nothing.
 */
static void
read_entries(int fd, const char *path, Oid dbid, Oid relid,
			 PacelcInflightEntry **entries, int *n, int *max)
{
	struct stat st;
	InflightHeader hdr;
	Size		body;

	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	if (st.st_size < (off_t) sizeof(hdr))
		return;
	body = st.st_size - sizeof(hdr);
	if (pread(fd, &hdr, sizeof(hdr), 0) != (ssize_t) sizeof(hdr) ||
		hdr.magic != INFLIGHT_MAGIC || hdr.dbid != dbid || hdr.relid != relid ||
		hdr.tli != GetWALInsertionTimeLine() ||
		hdr.n <= 0 || hdr.n > MaxAllocSize / (int) sizeof(PacelcInflightEntry) / 2 ||
		body != sizeof(PacelcInflightEntry) * (Size) hdr.n ||
		hdr.started < 0 || hdr.started > hdr.n)
		return;
	/* the entries after those whose handler started were never attempted */
	hdr.n = hdr.started;
	body = sizeof(PacelcInflightEntry) * (Size) hdr.n;
	if (hdr.n == 0)
		return;
	if (*n + hdr.n > *max)
	{
		int			newmax = Max(*max * 2, *n + hdr.n);

		*entries = *entries ? repalloc(*entries, sizeof(PacelcInflightEntry) * newmax)
			: palloc(sizeof(PacelcInflightEntry) * newmax);
		*max = newmax;
	}
	if (pread(fd, *entries + *n, body, sizeof(hdr)) != (ssize_t) body)
		return;
	*n += hdr.n;
}

/* Keeps fd, locked, until pacelc_inflight_release(). */
static void
hold_fd(int fd)
{
	if (nheld == maxheld)
	{
		int			newmax = Max(8, maxheld * 2);

		held_fds = held_fds ? repalloc(held_fds, sizeof(int) * newmax)
			: MemoryContextAlloc(TopMemoryContext, sizeof(int) * newmax);
		maxheld = newmax;
	}
	held_fds[nheld++] = fd;
}

/*
 * The attempts to count: this worker's file if it is not empty and, with
 * others, the files of the database's workers that are not running (whose
 * lock it can take; it keeps them locked).  Returns how many entries it put
 * in *entries (palloc'd).  The caller records them, commits, then calls
 * pacelc_inflight_release(true); on an error, release(false) (or the next
 * collect) lets the files go as they are.
 *
 * With others, also the entries of the files whose owner runs, in *busy
 * (*nbusy of them; read without the lock, the files left as they are).
 * Those are the owner's batch in progress (its rows locked), or what it
 * has still to count after a crash or a failed batch: an owner that has
 * just started may not have counted yet when another worker takes a batch,
 * and a message taken then would run with that attempt uncounted.  The
 * caller counts the busy entries whose rows nobody has locked.
 */
int
pacelc_inflight_collect(Oid dbid, Oid relid, bool others,
						PacelcInflightEntry **entries,
						PacelcInflightEntry **busy, int *nbusy)
{
	int			n = 0,
				max = 0,
				maxbusy = 0;

	pacelc_inflight_release(false);
	*entries = NULL;
	*busy = NULL;
	*nbusy = 0;
	if (own_fd >= 0 && own_pending)
	{
		read_entries(own_fd, own_path, dbid, relid, entries, &n, &max);
		own_collected = true;
	}
	if (others)
	{
		DIR		   *dir = AllocateDir(PG_STAT_TMP_DIR);
		struct dirent *de;

		while ((de = ReadDir(dir, PG_STAT_TMP_DIR)) != NULL)
		{
			Oid			fdb;
			int			index;
			char		path[MAXPGPATH];
			int			fd;
			struct stat st;

			if (sscanf(de->d_name, "pacelc.%u.%d.inflight", &fdb, &index) != 2 ||
				fdb != dbid || index < 0)
				continue;
			inflight_path(path, fdb, index);
			if (strcmp(path, own_path) == 0 ||
				strcmp(path + strlen(PG_STAT_TMP_DIR) + 1, de->d_name) != 0)
				continue;
			fd = BasicOpenFile(path, O_RDWR | O_CLOEXEC | PG_BINARY);
			if (fd < 0)
				continue;
			if (flock(fd, LOCK_EX | LOCK_NB) != 0)
			{
				/* its owner runs: see above */
				read_entries(fd, path, dbid, relid, busy, nbusy, &maxbusy);
				close(fd);
				continue;
			}
			if (fstat(fd, &st) != 0 || st.st_size == 0)
			{
				close(fd);
				continue;
			}
			hold_fd(fd);
			read_entries(fd, path, dbid, relid, entries, &n, &max);
		}
		FreeDir(dir);
	}
	return n;
}

/*
 * Lets go of what pacelc_inflight_collect() took; recorded: its attempts
 * are counted and committed, so the files are emptied (stale ones too).
 */
void
pacelc_inflight_release(bool recorded)
{
	int			i;

	for (i = 0; i < nheld; i++)
	{
		if (recorded && ftruncate(held_fds[i], 0) != 0)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not truncate a pacelc worker's file in \"%s\": %m",
							PG_STAT_TMP_DIR)));
		close(held_fds[i]);		/* and with it the lock */
	}
	nheld = 0;
	if (own_collected && recorded)
		pacelc_inflight_clear();
	own_collected = false;
}
