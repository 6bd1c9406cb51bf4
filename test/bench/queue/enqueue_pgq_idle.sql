SELECT pgq.insert_event('bench', 'msg', jsonb_build_object('i', :client_id::bigint, 't', clock_timestamp())::text);
\sleep 20 ms
