import type * as PoolRegistry from "@cistern/pool/PoolRegistry"
import type { ItemDetails, PoolStats } from "@cistern/pool/PoolStats"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import type {
  CleanupConnectionsResponse,
  ConnectionCounts,
  KeyParts,
  PoolStatusConfig,
  PoolStatusOptions,
  PoolStatusResponse
} from "../AdminHttp.js"

/** @internal */
export const splitAtColon = (key: string): KeyParts => {
  const colon = key.indexOf(":")
  return colon === -1 ? { userId: key, name: key } : { userId: key.slice(0, colon), name: key.slice(colon + 1) }
}

const iso = (millis: number): string => DateTime.formatIso(DateTime.unsafeMake(millis))

const counts = (items: ReadonlyArray<ItemDetails>, split: (key: string) => KeyParts): ConnectionCounts => {
  const userConnectionCounts: Record<string, number> = {}
  for (const item of items) {
    const { userId } = split(item.key)
    userConnectionCounts[userId] = (userConnectionCounts[userId] ?? 0) + 1
  }
  return { totalConnections: items.length, userConnectionCounts }
}

const config = (stats: PoolStats, overrides: PoolStatusOptions["config"]): PoolStatusConfig => ({
  maxConnectionsPerUser: stats.config.maxPerKey,
  maxTotalConnections: stats.config.maxTotal,
  connectionTimeout: stats.config.idleTimeoutMillis,
  cleanupInterval: stats.config.cleanupIntervalMillis,
  ...overrides
})

/** @internal */
export const poolStatusResponse = (
  entry: PoolRegistry.Entry,
  options?: PoolStatusOptions
): Effect.Effect<PoolStatusResponse> =>
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
  options?: Pick<PoolStatusOptions, "splitKey">
): Effect.Effect<CleanupConnectionsResponse> =>
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
