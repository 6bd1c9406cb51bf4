// node-postgres and pacelc's LSN tokens, driven by 023_lsn_drivers.pl.
//
// The token arrives in a ParameterStatus message after COMMIT; node-postgres
// emits it as the connection's 'parameterStatus' event.  The standby read
// uses the extended protocol: set_config() with a bind parameter (SET takes
// none), then a named prepared statement that is re-executed every trial.
//
// The postgres.js variant: one pool per node, the token from the
// onparameter callback (the maximum, since the pool's connections share
// it), set_config(..., true) inside sql.begin() so the token and the read
// use one connection; postgres.js prepares every statement (named).
//
// usage: node lsn_node.js pg|postgresjs <socket dir> <primary port> <standby port> <trials>
'use strict';

const lsnNum = (l) => { const [h, lo] = l.split('/'); return parseInt(h, 16) * 2 ** 32 + parseInt(lo, 16); };

async function postgresjs(host, pport, sport, trials) {
  const postgres = require('postgres');
  let token = null;
  let reported = 0;
  const onparameter = (k, v) => {
    if ((k === 'pacelc.commit_lsn' || k === 'pacelc.seen_lsn') && v && (!token || lsnNum(v) > lsnNum(token))) {
      token = v;
      if (k === 'pacelc.commit_lsn') reported++;
    }
  };
  const opts = (port) => ({ host, port: +port, database: 'postgres', username: 'postgres', max: 4, onparameter, onnotice: () => {} });
  const p = postgres(opts(pport));
  const s = postgres(opts(sport));
  let stale = 0, errors = 0;
  for (let i = 0; i < +trials; i++) {
    const note = `pjs-${process.pid}-${i}`;
    await p`INSERT INTO t (note) VALUES (${note})`;
    try {
      const n = await s.begin(async (sql) => {
        await sql`SELECT set_config('pacelc.read_after', ${token}, true)`;
        const r = await sql`SELECT count(*)::int AS n FROM t WHERE note = ${note}`;
        return r[0].n;
      });
      if (n !== 1) stale++;
    } catch (e) {
      errors++;
      if (!['40001', 'PC010'].includes(e.code)) throw e;
    }
  }
  await p.end();
  await s.end();
  console.log(JSON.stringify({ trials: +trials, stale, errors, reported }));
}

async function main() {
  const [mode, host, pport, sport, trials] = process.argv.slice(2);
  if (mode === 'postgresjs') return postgresjs(host, pport, sport, trials);
  const { Client } = require('pg');
  const primary = new Client({ host, port: +pport, database: 'postgres', user: 'postgres' });
  const standby = new Client({ host, port: +sport, database: 'postgres', user: 'postgres' });
  await primary.connect();
  await standby.connect();

  // the application's token: the maximum it has seen from any connection
  let token = null;
  const keep = (msg) => {
    if ((msg.parameterName === 'pacelc.commit_lsn' || msg.parameterName === 'pacelc.seen_lsn') &&
        msg.parameterValue && (!token || lsnNum(msg.parameterValue) > lsnNum(token)))
      token = msg.parameterValue;
  };
  primary.connection.on('parameterStatus', keep);
  standby.connection.on('parameterStatus', keep);

  let stale = 0, errors = 0, reported = 0;
  for (let i = 0; i < +trials; i++) {
    const note = `node-${process.pid}-${i}`;
    const before = token;
    await primary.query('INSERT INTO t (note) VALUES ($1)', [note]);
    if (token !== before) reported++;
    try {
      await standby.query("SELECT set_config('pacelc.read_after', $1, false)", [token]);
      const r = await standby.query({ name: 'count_note', text: 'SELECT count(*)::int AS n FROM t WHERE note = $1', values: [note] });
      if (r.rows[0].n !== 1) stale++;
    } catch (e) {
      errors++;
      if (!['40001', 'PC010'].includes(e.code)) throw e;
    }
  }
  await primary.end();
  await standby.end();
  console.log(JSON.stringify({ trials: +trials, stale, errors, reported }));
}

main().catch((e) => { console.error(e); process.exit(1); });
