/* pacelc 0.2 -> 0.3 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pacelc UPDATE TO '0.3'" to load this file. \quit

/*
 * Every function of pacelc pins search_path = pg_catalog, pacelc, pg_temp
 * (pg_temp last, explicitly: otherwise the caller's temporary schema is
 * searched first for relation and type names).
 */

/* ======================================================================
 * Section A: privileges and isolation between applications (issue 10)
 * ====================================================================== */




/* -------------------------- end of section A -------------------------- */




/* ======================================================================
 * Section B: long-lived clusters (issue 13)
 * ====================================================================== */




/* -------------------------- end of section B -------------------------- */




/* ======================================================================
 * Section C: one worker, many tenants (issue 12)
 * ====================================================================== */




/* -------------------------- end of section C -------------------------- */




/* ======================================================================
 * Section D: read-your-writes (issue 11)
 * ====================================================================== */




/* -------------------------- end of section D -------------------------- */
