/* pacelc 0.5 -> 0.6 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pacelc UPDATE TO '0.6'" to load this file. \quit

/*
 * 0.6 changes only the library (issue 15): the worker no longer commits a
 * lease per message before it runs a batch's handlers.  It locks the batch
 * and runs it in one transaction, and records the batch in a file of its
 * own (pg_stat_tmp/pacelc.<database>.<worker>.inflight, src/inflight.c) so
 * that an attempt that never finishes still counts.  No SQL object
 * changes; this update only names the version that has it.
 */
