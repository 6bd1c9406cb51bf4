#!/usr/bin/python3
"""Client-side checks of pacelc's LSN tokens, driven by 020_lsn_standby.pl.

Uses psycopg2 the way an application would: the token arrives in a
ParameterStatus message after COMMIT and is read with get_parameter_status(),
without any extra query.
"""
import json
import sys
import time

import psycopg2


def connect(dsn):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def token_arrives(primary_dsn):
    """The commit token is there right after COMMIT, with no extra query."""
    p = connect(primary_dsn)
    p.autocommit = False
    cur = p.cursor()
    before = p.get_parameter_status('pacelc.commit_lsn')
    cur.execute("INSERT INTO orders (note) VALUES ('token test')")
    p.commit()
    reported = p.get_parameter_status('pacelc.commit_lsn')
    cur.execute("SELECT pacelc.commit_lsn()::text, pg_current_wal_lsn() >= pacelc.commit_lsn()")
    actual, sane = cur.fetchone()
    p.commit()
    # a read-only transaction reports nothing new
    cur.execute("SELECT 1")
    p.commit()
    after_read = p.get_parameter_status('pacelc.commit_lsn')
    print(json.dumps({"before": before, "reported": reported, "actual": actual,
                      "sane": sane, "after_read": after_read}))


def trials(primary_dsn, standby_dsn, n, use_token, isolation):
    """Write on the primary, read at once on the standby: count stale reads."""
    p = connect(primary_dsn)
    s = connect(standby_dsn)
    pc = p.cursor()
    sc = s.cursor()
    stale = 0
    waited = []
    for i in range(n):
        pc.execute("INSERT INTO orders (note) VALUES ('trial') RETURNING id")
        oid = pc.fetchone()[0]
        token = p.get_parameter_status('pacelc.commit_lsn')
        t0 = time.perf_counter()
        if use_token:
            sc.execute("SET pacelc.read_after = %s", (token,))
        if isolation != 'read committed':
            sc.execute("BEGIN ISOLATION LEVEL " + isolation)
        sc.execute("SELECT count(*) FROM orders WHERE id = %s", (oid,))
        seen = sc.fetchone()[0]
        if isolation != 'read committed':
            sc.execute("COMMIT")
        waited.append((time.perf_counter() - t0) * 1000)
        if seen != 1:
            stale += 1
    sc.execute("RESET pacelc.read_after")
    waited.sort()
    print(json.dumps({"trials": n, "stale": stale,
                      "p50_ms": round(waited[len(waited) // 2], 3),
                      "p99_ms": round(waited[int(len(waited) * 0.99) - 1], 3)}))


def monotonic(primary_dsn, fast_dsn, slow_dsn, rounds):
    """A client carrying max(commit_lsn, seen_lsn) never goes back in time."""
    p = connect(primary_dsn)
    nodes = [connect(fast_dsn), connect(slow_dsn)]
    token = '0/0'
    back_in_time = 0
    last_seen = 0
    for r in range(rounds):
        p.cursor().execute("INSERT INTO orders (note) VALUES ('mono')")
        for conn in nodes:
            c = conn.cursor()
            c.execute("SET pacelc.read_after = %s", (token,))
            c.execute("SELECT max(id) FROM orders")
            seen_max = c.fetchone()[0]
            if seen_max < last_seen:
                back_in_time += 1
            last_seen = max(last_seen, seen_max)
            seen = conn.get_parameter_status('pacelc.seen_lsn')
            if seen and lsn(seen) > lsn(token):
                token = seen
    print(json.dumps({"rounds": rounds, "back_in_time": back_in_time, "max_seen": last_seen}))


def lsn(text):
    hi, lo = text.split('/')
    return (int(hi, 16) << 32) | int(lo, 16)


if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'token':
        token_arrives(sys.argv[2])
    elif cmd == 'trials':
        trials(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == 'token', sys.argv[6])
    elif cmd == 'monotonic':
        monotonic(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
