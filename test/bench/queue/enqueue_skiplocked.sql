INSERT INTO bq (payload) VALUES (jsonb_build_object('i', :client_id::bigint, 't', clock_timestamp()));
