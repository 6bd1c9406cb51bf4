#!/usr/bin/python3
"""psycopg 3 and pacelc's LSN tokens, driven by 023_lsn_drivers.pl.

psycopg 3 prepares statements on the server (here on every execution:
prepare_threshold=0), so each standby read is a Bind/Execute of a named
statement; the token arrives in a ParameterStatus message after COMMIT
(conn.info.parameter_status) and is set with set_config(), since SET takes
no bind parameters.

usage: lsn_psycopg3.py <primary dsn> <standby dsn> <trials>
"""
import json
import sys

import psycopg


def main(primary_dsn, standby_dsn, n):
    p = psycopg.connect(primary_dsn, autocommit=True)
    s = psycopg.connect(standby_dsn, autocommit=True, prepare_threshold=0)
    stale = errors = reported = 0
    for i in range(n):
        note = 'pg3-%d' % i
        before = p.info.parameter_status('pacelc.commit_lsn')
        p.execute("INSERT INTO t (note) VALUES (%s)", (note,))
        token = p.info.parameter_status('pacelc.commit_lsn')
        if token != before:
            reported += 1
        try:
            s.execute("SELECT set_config('pacelc.read_after', %s, false)", (token,))
            seen = s.execute("SELECT count(*) FROM t WHERE note = %s", (note,)).fetchone()[0]
            if seen != 1:
                stale += 1
        except psycopg.errors.SerializationFailure:
            errors += 1
    print(json.dumps({"trials": n, "stale": stale, "errors": errors, "reported": reported}))


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
