/**
 * One PostgreSQL connection (a `pg.Client`) as a scoped resource, and queries
 * on it as Effects with typed errors. The pool owns connections through this
 * module's `connect`: its finalizer is the only place a client is ended.
 */
import { Data, Effect, type Scope } from "effect"
import pg from "pg"

/** Where and how to connect. */
export interface ConnectOptions {
  /** A `postgres://` URL. */
  readonly url: string
  /** Shown in `pg_stat_activity.application_name`, so the server can count this service's sessions. */
  readonly applicationName?: string | undefined
}

/**
 * The connection could not be opened, or was lost (the server restarted, the
 * socket was reset): the connection is gone and a new one may work.
 */
export class ConnectionError extends Data.TaggedError("ConnectionError")<{
  readonly reason: string
  readonly code?: string | undefined
}> {
  override get message(): string {
    return this.code === undefined ? this.reason : `${this.reason} (${this.code})`
  }
}

/** The server refused a statement (a caller fault or a bug): the connection is fine. */
export class QueryError extends Data.TaggedError("QueryError")<{
  readonly reason: string
  readonly code: string
}> {
  override get message(): string {
    return `${this.reason} (SQLSTATE ${this.code})`
  }
}

/** A pooled connection. */
export interface Connection {
  /** A number unique in this process, for logs and tests. */
  readonly id: number
  readonly client: pg.Client
  /** Set once the client reported an error or its socket ended: it will not serve again. */
  readonly lost: () => string | undefined
}

/**
 * SQLSTATE classes that mean the session is gone: 08 (connection exception),
 * 57P01–57P03 (the server is shutting down, crashed, or not accepting
 * connections yet). Any other SQLSTATE is the statement's fault.
 */
const sessionGone = (code: string) => code.startsWith("08") || /^57P0[123]$/.test(code)

const toError = (cause: unknown, what: string): ConnectionError | QueryError => {
  const e = cause as { code?: unknown; message?: unknown } | null
  const code = typeof e?.code === "string" ? e.code : undefined
  const reason = `${what}: ${typeof e?.message === "string" ? e.message : String(cause)}`
  // A 5-character SQLSTATE outside the session-gone classes came from the server, about the statement.
  if (code !== undefined && /^[0-9A-Z]{5}$/.test(code) && !sessionGone(code)) return new QueryError({ reason, code })
  return new ConnectionError({ reason, code })
}

let serial = 0

/** Ends the client, bounded: `end` on a client whose socket already died may never settle. */
const end = (client: pg.Client) =>
  Effect.tryPromise(() => client.end()).pipe(Effect.timeout("2 seconds"), Effect.ignore)

/**
 * Opens a connection. Its finalizer (in the provided scope) ends the client,
 * also when opening fails or is interrupted halfway.
 */
export const connect = (options: ConnectOptions): Effect.Effect<Connection, ConnectionError, Scope.Scope> =>
  Effect.gen(function* () {
    let lost: string | undefined
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const client = new pg.Client({ connectionString: options.url, application_name: options.applicationName })
        // Without a listener, an error on an idle client (a server restart) would crash the process.
        client.on("error", (error) => {
          lost ??= error.message
        })
        client.on("end", () => {
          lost ??= "the connection ended"
        })
        return client
      }),
      end
    )
    yield* Effect.tryPromise({
      try: () => client.connect(),
      catch: (cause) => {
        const error = toError(cause, "connect")
        return error._tag === "ConnectionError"
          ? error
          : new ConnectionError({ reason: error.reason, code: error.code })
      }
    })
    return { id: ++serial, client, lost: () => lost }
  })

/** Runs one statement and returns its rows. */
export const query = <Row extends object = Record<string, unknown>>(
  connection: Connection,
  text: string,
  values?: ReadonlyArray<unknown>
): Effect.Effect<ReadonlyArray<Row>, ConnectionError | QueryError> =>
  Effect.suspend(() => {
    const lost = connection.lost()
    if (lost !== undefined) return Effect.fail(new ConnectionError({ reason: `connection lost: ${lost}` }))
    return Effect.tryPromise({
      try: () => connection.client.query<Row & pg.QueryResultRow>(text, values as Array<unknown> | undefined),
      catch: (cause) => toError(cause, "query")
    }).pipe(Effect.map((result) => result.rows))
  })

/** `SELECT 1`: the check run on a connection before it is lent out. */
export const ping = (connection: Connection): Effect.Effect<void, ConnectionError | QueryError> =>
  Effect.asVoid(query(connection, "SELECT 1"))

/** The server's version (`SHOW server_version`). */
export const serverVersion = (connection: Connection): Effect.Effect<string, ConnectionError | QueryError> =>
  Effect.map(query<{ server_version: string }>(connection, "SHOW server_version"), (rows) => rows[0].server_version)

/** Whether an error means the connection is gone (as the pool's `isConnectionError` wants it). */
export const isConnectionError = (error: unknown): boolean =>
  error instanceof ConnectionError ||
  (typeof error === "object" && error !== null && "_tag" in error && error._tag === "TimeoutException")
