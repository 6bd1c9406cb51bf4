-- Queue benchmark schema: one sink table that every contender's handler
-- writes one small row into, recording when the handler started.
CREATE EXTENSION pacelc;
CREATE ROLE bench_owner LOGIN;
GRANT USAGE ON SCHEMA pacelc TO bench_owner;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pacelc TO bench_owner;
CREATE TABLE sink (design text, msg bigint, enq timestamptz, started timestamptz DEFAULT clock_timestamp());
GRANT INSERT ON sink TO bench_owner;
-- pacelc: a handler doing one small insert, run by the worker as bench_owner.
-- PL/pgSQL keeps its plan across calls; PostgreSQL 15 re-plans a LANGUAGE
-- sql function in every subtransaction, i.e. for every message.
CREATE FUNCTION sink_handler(p jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.sink (design, msg, enq) VALUES ('pacelc', (p->>'i')::bigint, (p->>'t')::timestamptz);
END $$;
ALTER FUNCTION sink_handler(jsonb) OWNER TO bench_owner;
SET ROLE bench_owner;
SELECT pacelc.create_queue('bench', 'public.sink_handler(jsonb)'::regprocedure);
RESET ROLE;
-- the plain SKIP LOCKED baseline
CREATE TABLE bq (id bigserial PRIMARY KEY, payload jsonb NOT NULL);
-- enqueue's floor: a plain table with pacelc.messages' columns and its primary key
CREATE TABLE plain_insert (
	id			bigserial PRIMARY KEY,
	queue		text NOT NULL,
	payload		jsonb NOT NULL,
	state		text NOT NULL DEFAULT 'ready',
	attempts	integer NOT NULL DEFAULT 0,
	run_at		timestamptz NOT NULL DEFAULT now(),
	leased_until timestamptz,
	idempotency_key text,
	enqueued_at timestamptz NOT NULL DEFAULT now(),
	done_at		timestamptz,
	last_error	text,
	last_sqlstate text,
	last_error_at timestamptz
);
