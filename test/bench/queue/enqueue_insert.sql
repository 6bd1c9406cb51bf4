-- The floor for enqueue: a plain INSERT of a row as wide as a message.
INSERT INTO plain_insert (queue, payload) VALUES ('bench', jsonb_build_object('i', :client_id::bigint, 't', clock_timestamp()));
