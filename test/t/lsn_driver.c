/*
 * lsn_driver: a line-driven libpq client for pacelc's LSN-token tests.
 *
 * The TAP tests build it with the server's libpq and talk to it through
 * stdin/stdout, one command per line, one answer line per command, so that
 * they can pause and resume replay between the protocol messages of one
 * session.  Commands (fields separated by a single TAB):
 *
 *   Q <sql>                 simple query protocol (PQexec); COPY OUT is read
 *   P <name> <sql>          Parse a named prepared statement (PQprepare)
 *   E <name> [<param>]      Bind/Execute it (PQexecPrepared)
 *   X <sql> [<param>]       extended protocol, unnamed statement (PQexecParams)
 *   PIPE <name> <token> [<param>]  pipeline mode: set_config(
 *                           'pacelc.read_after', $1, false) then the named
 *                           statement, one Sync
 *   S <parameter>           the last reported value (PQparameterStatus)
 *   QUIT
 *
 * Answers: "OK <values>" (first column of every row, comma separated; for
 * COPY the number of data lines), "ERR <SQLSTATE> <message>", or for S the
 * value ("(null)" if never reported).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libpq-fe.h"

static void
print_result(PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
	{
		int			i;

		printf("OK ");
		for (i = 0; i < PQntuples(res); i++)
			printf("%s%s", i ? "," : "", PQgetisnull(res, i, 0) ? "NULL" : PQgetvalue(res, i, 0));
		printf("\n");
	}
	else
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		printf("ERR %s %s\n", state ? state : "?????", msg ? msg : "");
	}
}

/* Runs one PQexec; reads COPY OUT data; prints the last result. */
static void
simple_query(PGconn *conn, const char *sql)
{
	PGresult   *res;
	PGresult   *last = NULL;
	int			copied = -1;

	if (!PQsendQuery(conn, sql))
	{
		printf("ERR 08000 %s", PQerrorMessage(conn));
		return;
	}
	while ((res = PQgetResult(conn)) != NULL)
	{
		if (PQresultStatus(res) == PGRES_COPY_OUT)
		{
			char	   *buf;

			copied = 0;
			while (PQgetCopyData(conn, &buf, 0) > 0)
			{
				copied++;
				PQfreemem(buf);
			}
			PQclear(res);
			continue;
		}
		if (last)
		{
			/* keep the first error of a multi-statement string */
			if (PQresultStatus(last) == PGRES_FATAL_ERROR)
			{
				PQclear(res);
				continue;
			}
			PQclear(last);
		}
		last = res;
	}
	if (last && copied >= 0 && PQresultStatus(last) == PGRES_COMMAND_OK)
		printf("OK %d\n", copied);
	else if (last)
		print_result(last);
	else
		printf("OK \n");
	if (last)
		PQclear(last);
}

static void
pipeline(PGconn *conn, const char *name, const char *token, const char *param)
{
	const char *params[1] = {token};
	const char *sparams[1] = {param};
	PGresult   *res;
	PGresult   *last = NULL;
	int			syncs = 0;

	if (!PQenterPipelineMode(conn))
	{
		printf("ERR 08000 cannot enter pipeline mode\n");
		return;
	}
	PQsendQueryParams(conn, "SELECT set_config('pacelc.read_after', $1, false)",
					  1, NULL, params, NULL, NULL, 0);
	PQsendQueryPrepared(conn, name, param ? 1 : 0, sparams, NULL, NULL, 0);
	PQpipelineSync(conn);
	while (syncs < 1)
	{
		res = PQgetResult(conn);
		if (res == NULL)
			continue;			/* end of one query's results */
		if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
		{
			syncs++;
			PQclear(res);
			continue;
		}
		if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
		{
			PQclear(res);
			continue;
		}
		if (last && PQresultStatus(last) == PGRES_FATAL_ERROR)
			PQclear(res);
		else
		{
			if (last)
				PQclear(last);
			last = res;
		}
	}
	PQexitPipelineMode(conn);
	if (last)
	{
		print_result(last);
		PQclear(last);
	}
	else
		printf("OK \n");
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	char		line[65536];

	if (argc < 2)
	{
		fprintf(stderr, "usage: lsn_driver conninfo\n");
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "connection failed: %s", PQerrorMessage(conn));
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("READY\n");
	while (fgets(line, sizeof(line), stdin))
	{
		char	   *f[4] = {NULL};
		int			n = 0;
		char	   *p = line;

		line[strcspn(line, "\n")] = '\0';
		while (n < 4 && p)
		{
			f[n++] = p;
			p = strchr(p, '\t');
			if (p)
				*p++ = '\0';
		}
		if (strcmp(f[0], "QUIT") == 0)
			break;
		else if (strcmp(f[0], "Q") == 0 && f[1])
			simple_query(conn, f[1]);
		else if (strcmp(f[0], "P") == 0 && f[2])
		{
			PGresult   *res = PQprepare(conn, f[1], f[2], 0, NULL);

			print_result(res);
			PQclear(res);
		}
		else if (strcmp(f[0], "E") == 0 && f[1])
		{
			const char *params[1] = {f[2]};
			PGresult   *res = PQexecPrepared(conn, f[1], f[2] ? 1 : 0, params, NULL, NULL, 0);

			print_result(res);
			PQclear(res);
		}
		else if (strcmp(f[0], "X") == 0 && f[1])
		{
			const char *params[1] = {f[2]};
			PGresult   *res = PQexecParams(conn, f[1], f[2] ? 1 : 0, NULL, params, NULL, NULL, 0);

			print_result(res);
			PQclear(res);
		}
		else if (strcmp(f[0], "PIPE") == 0 && f[2])
			pipeline(conn, f[1], f[2], f[3]);
		else if (strcmp(f[0], "S") == 0 && f[1])
		{
			const char *v = PQparameterStatus(conn, f[1]);

			printf("%s\n", v ? v : "(null)");
		}
		else
			printf("ERR 42601 bad driver command\n");
		if (PQstatus(conn) != CONNECTION_OK)
		{
			printf("ERR 08006 connection lost\n");
			break;
		}
	}
	PQfinish(conn);
	return 0;
}
