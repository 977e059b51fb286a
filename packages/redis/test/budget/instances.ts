/**
 * Budget instances for tests: each with a Redis client of its own (as
 * separate processes would have), over one real `redis-server`, optionally
 * with the test build of the script so `TestClock` decides expiry.
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import type { Redis } from "ioredis"
import type * as ClusterBudget from "../../src/ClusterBudget.js"
import * as internal from "../../src/internal/budget.js"
import { budgetKeys } from "../../src/internal/budgetClient.js"
import * as RedisClient from "../../src/RedisClient.js"

export const makeInstance = (
  url: string,
  options: ClusterBudget.Options,
  settings: { readonly testClock?: boolean; readonly commandTimeout?: Duration.DurationInput } = {}
): Effect.Effect<ClusterBudget.Service, never, Scope.Scope> =>
  Effect.flatMap(
    RedisClient.make({ url, commandTimeout: settings.commandTimeout ?? "300 millis", reconnectMax: "100 millis" }),
    (client) =>
      internal
        .make(options, { testClock: settings.testClock ?? true })
        .pipe(Effect.provideService(RedisClient.RedisClient, client))
  )

/** What Redis counts for a budget: in total, per tenant and per instance. */
export const counted = (raw: Redis, name: string, prefix = "cistern:budget:") =>
  Effect.promise(async () => {
    const keys = budgetKeys(prefix, name).keys
    const used = await raw.hgetall(keys[3]!)
    const total = Number(used["*"] ?? 0)
    return { total, fields: used, permits: await raw.hlen(keys[2]!) }
  })

/**
 * Moves `TestClock` in steps (heartbeats and retries run at each) until
 * `check` holds, within `maxSteps`; the I/O each step starts is real, so
 * every step waits a moment of real time for it.
 */
export const tickUntil = <E, R>(
  check: Effect.Effect<boolean, E, R>,
  what: string,
  options: { readonly step?: Duration.DurationInput; readonly maxSteps?: number } = {}
) =>
  Effect.gen(function* () {
    for (let i = 0; i < (options.maxSteps ?? 40); i++) {
      if (yield* check) return i
      yield* TestClock.adjust(options.step ?? "250 millis")
      yield* Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 20)))
    }
    if (yield* check) return options.maxSteps ?? 40
    return yield* Effect.dieMessage(`not within ${options.maxSteps ?? 40} steps: ${what}`)
  })
