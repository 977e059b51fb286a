/**
 * The gateway's core: MCP connections pooled per `userId:mcpName` in one
 * Cistern `KeyedPool`, and tool calls forwarded over them.
 *
 * - A key is a user, a server and the user's current credential for it. The
 *   key's fingerprint is a hash of that credential: while it is unchanged the
 *   user's connection is reused; once it changes, old connections are never
 *   handed out again and are closed as soon as their calls return.
 * - The user is the key's tenant group: `MAX_CONNECTIONS_PER_USER` limits a
 *   user across all their servers, `MAX_TOTAL_CONNECTIONS` all users
 *   together. At a limit, the pool closes the least recently used idle
 *   connection (the user's own first) to make room, or the call waits.
 * - A connection carries up to `MAX_CALLS_PER_CONNECTION` calls at once (the
 *   SDK client runs concurrent requests over one transport); a user's next
 *   connection is opened only when their connections are all that busy.
 * - Connections idle longer than `CONNECTION_TIMEOUT` are closed by the
 *   cleanup that runs every `CLEANUP_INTERVAL`.
 * - A connection that breaks (its process exits, its session is gone, a call
 *   outlives `TOOL_CALL_TIMEOUT`) is closed, and a closed one found idle is
 *   replaced before use: the next call opens a new one.
 */
import { AdminHttp } from "@cistern/platform"
import { HealthCheck, KeyedPool, type PoolError, type PoolRegistry } from "@cistern/pool"
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js"
import { Context, Data, Duration, Effect, Layer, Option, Redacted, type Scope } from "effect"
import { fingerprint } from "./Credential.js"
import { type ConnectFailed, isConnectionFailure, type McpError } from "./GatewayError.js"
import * as McpConnection from "./McpConnection.js"
import type { McpServer } from "./McpServers.js"
import type { PoolSettings } from "./Settings.js"
import { Users } from "./Users.js"

/** The gateway has no MCP server of that name. */
export class UnknownServer extends Data.TaggedError("UnknownServer")<{ readonly server: string }> {
  override get message() {
    return `no MCP server named ${this.server}`
  }
}

/** The user has no credential for that server. */
export class NoCredential extends Data.TaggedError("NoCredential")<{
  readonly userId: string
  readonly server: string
}> {
  override get message() {
    return `${this.userId} has no credential for ${this.server}`
  }
}

/** A pool key: whose connection, to which server, opened with which credential. */
export interface McpKey {
  readonly userId: string
  readonly server: string
  readonly credential: Redacted.Redacted<string>
}

/** Everything a call through the gateway can fail with. */
export type CallError = UnknownServer | NoCredential | McpError | PoolError.PoolError

/** The gateway. */
export interface Service {
  readonly servers: ReadonlyArray<McpServer>
  readonly settings: PoolSettings
  /** Calls `tool` of `server` with `args` as `userId`, over one of the user's pooled connections. */
  readonly callTool: (
    userId: string,
    server: string,
    tool: string,
    args: Readonly<Record<string, unknown>>
  ) => Effect.Effect<CallToolResult, CallError>
  /** The tools of `server`, as `userId` sees them. */
  readonly listTools: (
    userId: string,
    server: string
  ) => Effect.Effect<ReadonlyArray<McpConnection.ToolInfo>, CallError>
  /** The connection pool (stats, items, cleanup). */
  readonly pool: KeyedPool.KeyedPool<McpKey, McpConnection.McpConnection, ConnectFailed>
  /** `GET /api/mcp/pool-status`'s body. */
  readonly poolStatus: Effect.Effect<AdminHttp.PoolStatusResponse>
  /** Closes idle connections past `CONNECTION_TIMEOUT` now; `POST /api/mcp/cleanup-connections`'s body. */
  readonly cleanupConnections: Effect.Effect<AdminHttp.CleanupConnectionsResponse>
}

/** The gateway service. */
export class Gateway extends Context.Tag("example/Gateway")<Gateway, Service>() {}

/** Options of {@link make}. */
export interface Options {
  readonly servers: ReadonlyArray<McpServer>
  readonly settings: PoolSettings
  /** Extra pool options (for tests and later features), applied last. */
  readonly pool?: Partial<KeyedPool.Options<McpKey, McpConnection.McpConnection, ConnectFailed, never>> | undefined
}

const keyId = (key: McpKey) => `${key.userId}:${key.server}`

/** Makes the gateway (its pool lives as long as the scope). */
export const make = (options: Options): Effect.Effect<Service, never, Scope.Scope | Users> =>
  Effect.gen(function* () {
    const users = yield* Users
    const { settings } = options
    const servers = new Map(options.servers.map((server) => [server.name, server]))

    const acquire = (key: McpKey) =>
      Effect.gen(function* () {
        const server = servers.get(key.server)
        if (server === undefined) return yield* Effect.dieMessage(`no MCP server named ${key.server}`)
        const connection = yield* McpConnection.connect(server, key.credential, settings.connectTimeout)
        yield* Effect.logInfo(`MCP connection opened: ${keyId(key)} (${connection.id})`)
        yield* Effect.addFinalizer(() => Effect.logInfo(`MCP connection closed: ${keyId(key)} (${connection.id})`))
        return connection
      }).pipe(Effect.annotateLogs({ module: "Gateway" }))

    const pool = yield* KeyedPool.make({
      name: "mcp",
      acquire,
      keyId,
      describeKey: keyId,
      fingerprint: (key) => fingerprint(Redacted.value(key.credential)),
      group: (key) => key.userId,
      maxPerGroup: settings.maxConnectionsPerUser,
      maxPerKey: settings.maxConnectionsPerUser,
      maxTotal: settings.maxTotalConnections,
      // the SDK client matches answers to requests by id: one connection carries several calls at once
      maxLeasesPerItem: settings.maxCallsPerConnection,
      idleTimeout: settings.connectionTimeout,
      cleanupInterval: settings.cleanupInterval,
      acquireTimeout: settings.acquireTimeout,
      createTimeout: settings.connectTimeout,
      // a connection whose process or session is gone is replaced before a call gets it
      validate: (connection) => connection.ensureOpen,
      isConnectionError: (error) => isConnectionFailure(error) || HealthCheck.isConnectionError(error),
      ...options.pool
    })

    const keyOf = (userId: string, server: string) =>
      Effect.gen(function* () {
        if (!servers.has(server)) return yield* new UnknownServer({ server })
        const credential = yield* users.credential(userId, server)
        if (Option.isNone(credential)) return yield* new NoCredential({ userId, server })
        return { userId, server, credential: credential.value } satisfies McpKey
      })

    const entry: PoolRegistry.Entry = { name: "mcp", stats: pool.stats, items: pool.items, cleanup: pool.cleanup }
    const statusConfig = {
      maxConnectionsPerUser: settings.maxConnectionsPerUser,
      maxTotalConnections: settings.maxTotalConnections,
      connectionTimeout: Duration.toMillis(settings.connectionTimeout),
      cleanupInterval: Duration.toMillis(settings.cleanupInterval)
    }

    return Gateway.of({
      servers: options.servers,
      settings,
      callTool: (userId, server, tool, args) =>
        Effect.flatMap(keyOf(userId, server), (key) =>
          pool.use(key, (connection) => connection.callTool(tool, args, settings.callTimeout))
        ).pipe(Effect.withSpan("Gateway.callTool", { attributes: { user: userId, server, tool } })),
      listTools: (userId, server) =>
        Effect.flatMap(keyOf(userId, server), (key) =>
          pool.use(key, (connection) => connection.listTools(settings.callTimeout))
        ),
      pool,
      poolStatus: AdminHttp.poolStatusResponse(entry, { config: statusConfig }),
      cleanupConnections: AdminHttp.cleanupConnectionsResponse(entry)
    })
  })

/** The gateway as a layer. */
export const layer = (options: Options): Layer.Layer<Gateway, never, Users> => Layer.scoped(Gateway, make(options))
