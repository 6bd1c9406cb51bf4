/* pacelc--0.1.sql: install script of pacelc 0.1 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pacelc" to load this file. \quit

/*
 * Every object lives in schema pacelc (created by CREATE EXTENSION from the
 * control file).  Tables are private to the extension: applications change
 * them only through the functions below, which are SECURITY DEFINER with a
 * pinned search_path.  Nothing is granted to PUBLIC; see the README section
 * "Privileges" for the grants an application role needs.
 */
REVOKE ALL ON SCHEMA pacelc FROM PUBLIC;

CREATE FUNCTION pacelc._assert_loaded() RETURNS void
	LANGUAGE c STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pacelc_assert_loaded';


/* ======================================================================
 * Section 1: stock reservation (escrow).  src/stock.c
 * ====================================================================== */

/* ---------------------------- end of section 1 ---------------------------- */




/* ======================================================================
 * Section 2: session LSN tokens.  src/session_lsn.c
 * ====================================================================== */

/* ---------------------------- end of section 2 ---------------------------- */




/* ======================================================================
 * Section 3: compensation queue.  src/queue.c, src/worker.c
 * ====================================================================== */

/* ---------------------------- end of section 3 ---------------------------- */




/* Functions are granted explicitly, never to PUBLIC. */
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pacelc FROM PUBLIC;
