SELECT pgmq.send('bench', jsonb_build_object('i', :client_id::bigint, 't', clock_timestamp()));
\sleep 20 ms
