import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { SessionSchemaError } from "../SessionError.js"
import * as SessionMetrics from "../SessionMetrics.js"
import type { SessionStats } from "../SessionStats.js"
import type { Found, MemoryOptions, SessionStore, TypeId as SessionStoreTypeId, TtlOptions } from "../SessionStore.js"
import { CacheImpl, type Entry } from "./cache.js"

/** @internal */
export const TypeId: SessionStoreTypeId = Symbol.for("@cistern/session/SessionStore") as SessionStoreTypeId

/** @internal */
export const positiveMillis = (name: string, input: Duration.DurationInput): number => {
  const millis = Duration.toMillis(Duration.decode(input))
  if (!(millis > 0)) throw new RangeError(`${name} must be a positive duration, got ${String(input)}`)
  return millis
}

/** @internal */
export const ttlMillis = (defaultMillis: number, options: TtlOptions | undefined): number =>
  options?.ttl === undefined ? defaultMillis : positiveMillis("ttl", options.ttl)

/** @internal */
export const found = <A>(entry: Entry<A>): Found<A> => ({
  id: entry.id,
  value: entry.value,
  expiresAt: entry.expiresAt
})

/** @internal */
export const make = <A, I extends string = never>(
  options: MemoryOptions<A, I>
): Effect.Effect<SessionStore<A, I>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const name = options.name ?? "sessions"
    const defaultTtl = positiveMillis("ttl", options.ttl ?? "1 hour")
    const cleanupInterval = positiveMillis("cleanupInterval", options.cleanupInterval ?? "1 minute")
    const capacity = options.capacity ?? 10_000
    const cache = new CacheImpl<A>(capacity, (options.indexes ?? {}) as Record<string, (a: A) => string | undefined>)
    const encode = Schema.encodeEither(options.schema)
    let hits = 0
    let misses = 0
    let schemaErrors = 0

    /** Validates a value on its way in; the memory store keeps the value itself. */
    const check = (id: string, value: A): SessionSchemaError | undefined => {
      const result = encode(value)
      if (Either.isRight(result)) return undefined
      schemaErrors++
      return new SessionSchemaError({ id, direction: "encode", detail: result.left.message })
    }

    const write = (id: string, value: A, ttl: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const error = check(id, value)
        if (error !== undefined) return Effect.fail(error)
        cache.set(id, value, now + ttl, Number.POSITIVE_INFINITY)
        return Effect.void
      })

    const lookup = (id: string, now: number): Option.Option<A> => {
      const entry = cache.get(id, now)
      if (entry === undefined) {
        misses++
        return Option.none()
      }
      hits++
      return Option.some(entry.value)
    }

    const stats = Effect.sync(
      (): SessionStats => ({
        name,
        backend: "memory",
        live: cache.size,
        capacity,
        hits,
        misses,
        evictions: cache.evictions,
        expired: cache.expired,
        schemaErrors,
        storeErrors: 0,
        fallback: false,
        pendingWrites: 0,
        droppedWrites: 0,
        replayedWrites: 0,
        flushes: 0
      })
    )

    const store: SessionStore<A, I> = {
      [TypeId]: TypeId,
      get: (id) => Effect.map(Clock.currentTimeMillis, (now) => lookup(id, now)),
      getOrCreate: (id, create, callOptions) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const existing = lookup(id, now)
          if (Option.isSome(existing)) return Effect.succeed(existing.value)
          return Effect.flatMap(create, (value) =>
            Effect.flatMap(Clock.currentTimeMillis, (later) => {
              // Another fiber may have created it while `create` ran: the first one stays.
              const raced = cache.get(id, later)
              if (raced !== undefined) return Effect.succeed(raced.value)
              return Effect.as(write(id, value, ttlMillis(defaultTtl, callOptions)), value)
            })
          )
        }),
      set: (id, value, callOptions) => write(id, value, ttlMillis(defaultTtl, callOptions)),
      update: (id, f, callOptions) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          // Read, apply and write with no yield in between: atomic within the process.
          const entry = cache.get(id, now)
          if (entry === undefined) return Effect.succeed(Option.none())
          const next = f(entry.value)
          const error = check(id, next)
          if (error !== undefined) return Effect.fail(error)
          const expiresAt = callOptions?.ttl === undefined ? entry.expiresAt : now + ttlMillis(defaultTtl, callOptions)
          cache.set(id, next, expiresAt, Number.POSITIVE_INFINITY)
          return Effect.succeed(Option.some(next))
        }),
      touch: (id, callOptions) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          const entry = cache.get(id, now)
          if (entry === undefined) return false
          cache.set(id, entry.value, now + ttlMillis(defaultTtl, callOptions), entry.freshUntil, entry.indexValues)
          return true
        }),
      delete: (id) =>
        Effect.sync(() => {
          cache.delete(id)
        }),
      findBy: (index, value) =>
        Effect.map(Clock.currentTimeMillis, (now) => cache.findBy(index, value, now).map(found)),
      stats
    }

    yield* Clock.currentTimeMillis.pipe(
      Effect.map((now) => cache.sweep(now)),
      Effect.repeat(Schedule.spaced(cleanupInterval)),
      Effect.catchAllCause(Effect.logWarning),
      Effect.annotateLogs({ package: "@cistern/session", module: "SessionStore", store: name }),
      Effect.forkScoped
    )
    yield* SessionMetrics.report(stats, options.metricsInterval)
    return store
  })
