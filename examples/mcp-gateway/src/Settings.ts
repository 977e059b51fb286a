/**
 * The gateway's settings, read from its environment with the multi-user MCP
 * gateway's own variable names, defaults and units: connection counts, and
 * times in milliseconds (`CONNECTION_TIMEOUT=1800000` is 30 minutes; a value
 * such as `"30 minutes"` works too). An invalid value stops the gateway with
 * an error naming the variable and the value.
 */

import { fileURLToPath } from "node:url"
import { AdminAuth } from "@cistern/platform"
import { PoolConfig } from "@cistern/pool"
import { Config, Duration, type Redacted } from "effect"

/** The limits and times of the connection pool. */
export interface PoolSettings {
  /** `MAX_CONNECTIONS_PER_USER`: one user's connections across all their servers. Default 10. */
  readonly maxConnectionsPerUser: number
  /** `MAX_TOTAL_CONNECTIONS`: connections of all users together. Default 100. */
  readonly maxTotalConnections: number
  /** `MAX_CALLS_PER_CONNECTION`: tool calls one connection carries at once (1: one call at a time). Default 10. */
  readonly maxCallsPerConnection: number
  /** `CONNECTION_TIMEOUT` (ms): a connection idle this long is closed by the next cleanup. Default 30 minutes. */
  readonly connectionTimeout: Duration.Duration
  /** `CLEANUP_INTERVAL` (ms): how often idle connections are looked for. Default 5 minutes. */
  readonly cleanupInterval: Duration.Duration
  /** `ACQUIRE_TIMEOUT` (ms): how long a call waits for a connection, opening it included. Default 10 seconds. */
  readonly acquireTimeout: Duration.Duration
  /** `MCP_CONNECT_TIMEOUT` (ms): how long opening one connection may take. Default 10 seconds. */
  readonly connectTimeout: Duration.Duration
  /** `TOOL_CALL_TIMEOUT` (ms): how long a tool call may take; a connection that outlives it is closed. Default 30 seconds. */
  readonly callTimeout: Duration.Duration
}

/** Everything the gateway needs to start. */
export interface Settings extends PoolSettings {
  /** `PORT`: where the gateway listens on 127.0.0.1 (0: any free port). Default 8790. */
  readonly port: number
  /** `ADMIN_TOKEN`: the bearer token of the admin endpoints. Required. */
  readonly adminToken: Redacted.Redacted<string>
  /** `GATEWAY_USERS_FILE`: the users, their tokens and credentials. Default: the example's `users.json`. */
  readonly usersFile: string
}

/** The multi-user MCP gateway's defaults. */
export const defaults: PoolSettings = {
  maxConnectionsPerUser: 10,
  maxTotalConnections: 100,
  maxCallsPerConnection: 10,
  connectionTimeout: Duration.millis(1_800_000),
  cleanupInterval: Duration.millis(300_000),
  acquireTimeout: Duration.seconds(10),
  connectTimeout: Duration.seconds(10),
  callTimeout: Duration.seconds(30)
}

/** The bundled demo users. */
export const defaultUsersFile = fileURLToPath(new URL("../users.json", import.meta.url))

const millis = (name: string, fallback: Duration.Duration) =>
  Config.withDefault(PoolConfig.duration(name, { positive: true, unit: "millis" }), fallback)
const limit = (name: string, fallback: number) => Config.withDefault(PoolConfig.limit(name), fallback)

/**
 * The pool's settings from `MAX_CONNECTIONS_PER_USER`, `MAX_TOTAL_CONNECTIONS`, `CONNECTION_TIMEOUT`, …
 * Only the gateway's own variables are read: one of the pool's generic names (`RETRY`, `MAX_PER_KEY`)
 * set for another program in the same environment cannot stop the gateway.
 */
export const poolSettings: Config.Config<PoolSettings> = Config.all({
  maxConnectionsPerUser: limit("MAX_CONNECTIONS_PER_USER", defaults.maxConnectionsPerUser),
  maxTotalConnections: limit("MAX_TOTAL_CONNECTIONS", defaults.maxTotalConnections),
  maxCallsPerConnection: limit("MAX_CALLS_PER_CONNECTION", defaults.maxCallsPerConnection),
  connectionTimeout: millis("CONNECTION_TIMEOUT", defaults.connectionTimeout),
  cleanupInterval: millis("CLEANUP_INTERVAL", defaults.cleanupInterval),
  acquireTimeout: millis("ACQUIRE_TIMEOUT", defaults.acquireTimeout),
  connectTimeout: millis("MCP_CONNECT_TIMEOUT", defaults.connectTimeout),
  callTimeout: millis("TOOL_CALL_TIMEOUT", defaults.callTimeout)
})

/** Every setting; fails without `ADMIN_TOKEN`. */
export const settings: Config.Config<Settings> = Config.all({
  pool: poolSettings,
  port: Config.integer("PORT").pipe(
    Config.validate({ message: "PORT must be 0 (any free port) to 65535", validation: (n) => n >= 0 && n <= 65535 }),
    Config.withDefault(8790)
  ),
  adminToken: AdminAuth.token("ADMIN_TOKEN"),
  usersFile: Config.string("GATEWAY_USERS_FILE").pipe(Config.withDefault(defaultUsersFile))
}).pipe(Config.map(({ pool, ...rest }) => ({ ...pool, ...rest })))
