-- The Citus entry points on a server without Citus (every version): clear
-- errors; and what works on any server: confirm/release with the SKU, the
-- node token and pacelc.read_after with one.  (On Citus: test/t/050_citus.pl.)
CREATE EXTENSION pacelc;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\set filename :abs_srcdir '/sql/include/err.sql'
\i :filename
SELECT pacelc.set_stock('cit-a', 10), pacelc.set_stock('cit-b', 10);
SELECT pacelc.reserve('cit-a', 2) AS id \gset

-- confirm/release with the SKU: a reservation of another SKU "does not exist"
SELECT pg_temp.err(format('SELECT pacelc.confirm(%s, %L)', :id, 'cit-b'));
SELECT pg_temp.err(format('SELECT pacelc.release(%s, %L)', :id, 'cit-b'));
SELECT state FROM pacelc.reservations WHERE id = :id;
SELECT pg_temp.err(format('SELECT pacelc.confirm(%s, NULL)', :id));
SELECT pg_temp.err(format('SELECT pacelc.confirm(%s, %L)', :id, ''));
SELECT pg_temp.err(format('SELECT pacelc.confirm(NULL, %L)', 'cit-a'));
SELECT pacelc.release(:id, 'cit-a');
SELECT state FROM pacelc.reservations WHERE id = :id;
SELECT pacelc.confirm(pacelc.reserve('cit-b', 1), 'cit-b');
SELECT pacelc.available('cit-a'), pacelc.available('cit-b');
-- an id of another node group (high bits) is not here either
SELECT pg_temp.err('SELECT pacelc.confirm(562949953421313, ''cit-a'')');
SELECT pg_temp.err('SELECT pacelc.confirm(562949953421313)');

-- the node token: "system identifier:LSN"
SELECT split_part(pacelc.node_token(), ':', 1) = (SELECT system_identifier::text FROM pg_control_system()) AS names_this_server,
	   split_part(pacelc.node_token(), ':', 2)::pg_lsn >= pacelc.commit_lsn() AS covers_the_last_commit;
BEGIN;
SELECT pacelc.reserve('cit-a', 1) IS NOT NULL AS reserved;
SELECT pacelc.node_token();
ROLLBACK;
BEGIN;
SELECT pacelc.node_token() IS NOT NULL AS before_writing;
ROLLBACK;
SELECT pacelc.node_token() AS token \gset
SET pacelc.read_after = :'token';
SELECT pacelc.available('cit-a');
RESET pacelc.read_after;
SET pacelc.read_after = '1:0/0';
SET pacelc.read_after = ':0/0';
SET pacelc.read_after = 'x1:0/0';
SET pacelc.read_after = '0:0/0';
SET pacelc.read_after = '99999999999999999999999:0/0';
SHOW pacelc.read_after;

-- no Citus here: the Citus functions say so
SELECT pg_temp.err('SELECT * FROM pacelc.citus_setup()');
SELECT pg_temp.err('SELECT pacelc.citus_reserve_all(''{cit-a}'', ''{1}'')');
SELECT pg_temp.err('SELECT * FROM pacelc.citus_tokens()');
SELECT pg_temp.err('SELECT * FROM pacelc.citus_verify()');
-- the routed forms work anywhere (they only route on Citus)
SELECT array_length(pacelc.reserve_all_at('cit-a', '{cit-a,cit-b}', '{1,1}'), 1);
SELECT pacelc.citus_token('cit-a') = pacelc.node_token() AS same_token;
-- the colocation anchor never has a row; the shard-move guard leaves other tables alone
SELECT pg_temp.err('INSERT INTO pacelc.sku_home VALUES (''cit-a'')');
CREATE TABLE public.sku_home_1 (a int);
DROP TABLE public.sku_home_1;
SELECT * FROM pacelc.verify();
DROP EXTENSION pacelc;
