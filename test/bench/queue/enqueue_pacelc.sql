SELECT pacelc.enqueue('bench', jsonb_build_object('i', :client_id::bigint, 't', clock_timestamp()));
