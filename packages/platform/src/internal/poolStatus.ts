import type * as PoolRegistry from "@cistern/pool/PoolRegistry"
import type { ItemDetails, PoolStats } from "@cistern/pool/PoolStats"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

/** @internal */
export const ConnectionCounts = Schema.Struct({
  totalConnections: Schema.Number,
  userConnectionCounts: Schema.Record({ key: Schema.String, value: Schema.Number })
})

/** @internal */
export const ConnectionDetail = Schema.Struct({
  key: Schema.String,
  name: Schema.String,
  userId: Schema.String,
  lastUsed: Schema.String,
  createTime: Schema.String,
  idleMinutes: Schema.Number
})

/** @internal */
export const PoolStatusConfig = Schema.Struct({
  maxConnectionsPerUser: Schema.NullOr(Schema.Number),
  maxTotalConnections: Schema.NullOr(Schema.Number),
  connectionTimeout: Schema.NullOr(Schema.Number),
  cleanupInterval: Schema.NullOr(Schema.Number)
})

/** @internal */
export const PoolStatusResponse = Schema.Struct({
  success: Schema.Literal(true),
  data: Schema.Struct({
    totalConnections: Schema.Number,
    userConnectionCounts: Schema.Record({ key: Schema.String, value: Schema.Number }),
    connectionDetails: Schema.Array(ConnectionDetail),
    config: PoolStatusConfig
  })
}).annotations({ identifier: "PoolStatusResponse" })

/** @internal */
export const CleanupConnectionsResponse = Schema.Struct({
  success: Schema.Literal(true),
  data: Schema.Struct({
    message: Schema.String,
    before: ConnectionCounts,
    after: ConnectionCounts,
    cleanedConnections: Schema.Number
  })
}).annotations({ identifier: "CleanupConnectionsResponse" })

/** @internal */
export interface KeyParts {
  readonly userId: string
  readonly name: string
}

/** @internal */
export interface Options {
  readonly splitKey?: ((key: string) => KeyParts) | undefined
  readonly config?: Partial<Schema.Schema.Type<typeof PoolStatusConfig>> | undefined
}

/** @internal */
export const splitAtColon = (key: string): KeyParts => {
  const colon = key.indexOf(":")
  return colon === -1 ? { userId: key, name: key } : { userId: key.slice(0, colon), name: key.slice(colon + 1) }
}

const iso = (millis: number): string => DateTime.formatIso(DateTime.unsafeMake(millis))

const counts = (items: ReadonlyArray<ItemDetails>, split: (key: string) => KeyParts) => {
  const userConnectionCounts: Record<string, number> = {}
  for (const item of items) {
    const { userId } = split(item.key)
    userConnectionCounts[userId] = (userConnectionCounts[userId] ?? 0) + 1
  }
  return { totalConnections: items.length, userConnectionCounts }
}

const config = (stats: PoolStats, overrides: Options["config"]): Schema.Schema.Type<typeof PoolStatusConfig> => ({
  maxConnectionsPerUser: stats.config.maxPerKey,
  maxTotalConnections: stats.config.maxTotal,
  connectionTimeout: stats.config.idleTimeoutMillis,
  cleanupInterval: stats.config.cleanupIntervalMillis,
  ...overrides
})

/** @internal */
export const poolStatusResponse = (
  entry: PoolRegistry.Entry,
  options?: Options
): Effect.Effect<Schema.Schema.Type<typeof PoolStatusResponse>> =>
  Effect.map(Effect.all([entry.stats, entry.items]), ([stats, items]) => {
    const split = options?.splitKey ?? splitAtColon
    return {
      success: true as const,
      data: {
        ...counts(items, split),
        connectionDetails: items.map((item) => {
          const { name, userId } = split(item.key)
          return {
            key: item.key,
            name,
            userId,
            lastUsed: iso(item.lastUsed),
            createTime: iso(item.createdAt),
            idleMinutes: Math.floor(item.idleMillis / 60_000)
          }
        }),
        config: config(stats, options?.config)
      }
    }
  })

/** @internal */
export const cleanupConnectionsResponse = (
  entry: PoolRegistry.Entry,
  options?: Pick<Options, "splitKey">
): Effect.Effect<Schema.Schema.Type<typeof CleanupConnectionsResponse>> =>
  Effect.gen(function* () {
    const split = options?.splitKey ?? splitAtColon
    const before = counts(yield* entry.items, split)
    const report = yield* entry.cleanup
    const after = counts(yield* entry.items, split)
    return {
      success: true as const,
      data: { message: "Cleanup completed", before, after, cleanedConnections: report.cleaned }
    }
  })
