// node-postgres and pacelc's LSN tokens, driven by 023_lsn_drivers.pl.
//
// The token arrives in a ParameterStatus message after COMMIT; node-postgres
// emits it as the connection's 'parameterStatus' event.  The standby read
// uses the extended protocol: set_config() with a bind parameter (SET takes
// none), then a named prepared statement that is re-executed every trial.
//
// usage: node lsn_node.js <socket dir> <primary port> <standby port> <trials>
'use strict';
const { Client } = require('pg');

async function main() {
  const [host, pport, sport, trials] = process.argv.slice(2);
  const primary = new Client({ host, port: +pport, database: 'postgres', user: 'postgres' });
  const standby = new Client({ host, port: +sport, database: 'postgres', user: 'postgres' });
  await primary.connect();
  await standby.connect();

  // the application's token: the maximum it has seen from any connection
  let token = null;
  const lsnNum = (l) => { const [h, lo] = l.split('/'); return parseInt(h, 16) * 2 ** 32 + parseInt(lo, 16); };
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
