import { SessionCache, SessionError, SessionMetrics, SessionStore } from "@cistern/session"
import type { SessionStats } from "@cistern/session/SessionStats"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type { Redis } from "ioredis"
import type * as RedisClient from "../RedisClient.js"
import type { RedisError } from "../RedisError.js"
import * as RedisErrors from "../RedisError.js"
import type { Options } from "../RedisSessionStore.js"
import type { Stored } from "./envelope.js"
import * as Envelope from "./envelope.js"
import { commandName, type WriteMode, writeScript } from "./script.js"

type Write = (key: string, ...args: Array<string>) => Promise<number>

/** A write waiting for Redis; `replay` marks one made while Redis was unreachable. */
type Pending<A> =
  | {
      readonly op: "set"
      readonly value: A
      readonly expiresAt: number
      readonly envelope: string
      readonly indexArgs: ReadonlyArray<string>
      readonly replay: boolean
    }
  | { readonly op: "del"; readonly replay: boolean }

const positive = (name: string, input: Duration.DurationInput): number => {
  const millis = Duration.toMillis(Duration.decode(input))
  if (!(millis > 0)) throw new RangeError(`${name} must be a positive duration, got ${String(input)}`)
  return millis
}

const positiveInt = (name: string, n: number): number => {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name} must be a positive integer, got ${n}`)
  return n
}

/** @internal */
export const make = <A, I extends string>(options: Options<A, I>, client: RedisClient.Service) =>
  Effect.gen(function* () {
    const name = options.name ?? "sessions"
    const prefix = options.prefix ?? "cistern:session:"
    const sessionPrefix = `${prefix}s:`
    const indexPrefix = `${prefix}i:`
    const defaultTtl = positive("ttl", options.ttl ?? "1 hour")
    const cacheTtl = positive("cacheTtl", options.cacheTtl ?? "5 seconds")
    const capacity = positiveInt("cacheCapacity", options.cacheCapacity ?? 10_000)
    const batchSize = positiveInt("batchSize", options.batchSize ?? 100)
    const maxPending = positiveInt("maxPending", options.maxPending ?? 10_000)
    const writeThrough = options.writeMode === "write-through"
    const flushSchedule = options.flushSchedule ?? Schedule.spaced(options.flushInterval ?? "1 second")
    const probeInterval = options.probeInterval ?? "1 second"
    const cleanupInterval = options.cleanupInterval ?? "1 minute"
    const indexes = (options.indexes ?? {}) as Record<string, (a: A) => string | undefined>
    const cache = SessionCache.make<A>({ capacity, indexes })
    const indexNames = cache.indexList
    const encode = Schema.encodeEither(options.schema)
    const decode = Schema.decodeUnknownEither(options.schema)
    const redis: Redis = client.redis
    redis.defineCommand(commandName, { numberOfKeys: 1, lua: writeScript })
    const write = (target: unknown): Write => (target as Record<string, Write>)[commandName]!.bind(target)
    const annotations = { package: "@cistern/redis", module: "RedisSessionStore", store: name }

    const pending = new Map<string, Pending<A>>()
    // Writes of the batch being flushed: still this instance's newest word until Redis has them.
    const flushing = new Map<string, Pending<A>>()
    const unsent = (id: string): Pending<A> | undefined => pending.get(id) ?? flushing.get(id)
    const flushSignal = yield* Queue.sliding<void>(1)
    const fallbackSignal = yield* Queue.sliding<void>(1)
    let fallback = !(yield* client.isReady)
    let hits = 0
    let misses = 0
    let schemaErrors = 0
    let storeErrors = 0
    let droppedWrites = 0
    let replayedWrites = 0
    let flushes = 0

    const stats = Effect.sync(
      (): SessionStats => ({
        name,
        backend: "redis",
        live: cache.size,
        capacity,
        hits,
        misses,
        evictions: cache.evictions,
        expired: cache.expired,
        schemaErrors,
        storeErrors,
        fallback,
        pendingWrites: pending.size + flushing.size,
        droppedWrites,
        replayedWrites,
        flushes
      })
    )
    const sampleMetrics = yield* SessionMetrics.report(stats, options.metricsInterval)

    // ---- outage state: one log line per transition ----------------------------------------

    const enterFallback = (error: RedisError) =>
      Effect.suspend(() => {
        if (fallback) return Effect.void
        fallback = true
        fallbackSignal.unsafeOffer(undefined)
        return Effect.zipRight(
          Effect.logWarning("Redis unreachable: sessions are served from this instance's memory").pipe(
            Effect.annotateLogs({ ...annotations, reason: error.reason, error: error.detail, pending: pending.size })
          ),
          sampleMetrics
        )
      })

    /** Runs a command; a failure is counted and, when Redis is unreachable, switches to memory. */
    const command = <X>(label: string, f: (redis: Redis) => Promise<X>) =>
      Effect.tapError(client.run(label, f), (error) => {
        storeErrors++
        return error.reason === "command"
          ? Effect.logWarning("Redis refused a session command").pipe(
              Effect.annotateLogs({ ...annotations, command: label, error: error.detail })
            )
          : enterFallback(error)
      })

    // ---- encoding ----------------------------------------------------------------------------

    const encodeValue = (id: string, value: A) => {
      const result = encode(value)
      if (Either.isRight(result)) return Either.right(result.right)
      schemaErrors++
      return Either.left(new SessionError.SessionSchemaError({ id, direction: "encode", detail: result.left.message }))
    }

    const indexArgsOf = (indexValues: ReadonlyArray<string | undefined>) => Envelope.indexArgs(indexNames, indexValues)

    const envelopeOf = Envelope.write

    const parse = (id: string, raw: string): Either.Either<Stored<A>, SessionError.SessionSchemaError> =>
      Either.mapLeft(Envelope.read(decode, raw), (detail) => invalid(id, detail))

    const invalid = (id: string, detail: string) => {
      schemaErrors++
      return new SessionError.SessionSchemaError({ id, direction: "decode", detail })
    }

    const logInvalid = (error: SessionError.SessionSchemaError) =>
      Effect.logWarning("a stored session does not match the schema").pipe(
        Effect.annotateLogs({ ...annotations, session: error.id, error: error.detail })
      )

    // ---- the write-behind queue --------------------------------------------------------------

    const enqueue = (id: string, write: Pending<A>) => {
      if (pending.has(id)) pending.delete(id)
      else if (pending.size >= maxPending) {
        // The oldest write goes: it is the likeliest to have been superseded by now in someone's eyes.
        pending.delete(pending.keys().next().value!)
        droppedWrites++
      }
      pending.set(id, write)
      if (!fallback && pending.size >= batchSize) flushSignal.unsafeOffer(undefined)
    }

    const argsOf = (id: string, mode: WriteMode, p: Pending<A> | undefined, expected: string | null, now: number) =>
      p === undefined || p.op === "del"
        ? [sessionPrefix + id, mode, "0", "", "1", indexPrefix, id, "0"]
        : [
            sessionPrefix + id,
            mode,
            expected === null ? "0" : `1${expected}`,
            p.envelope,
            String(Math.max(1, Math.ceil(p.expiresAt - now))),
            indexPrefix,
            id,
            String(p.expiresAt),
            ...p.indexArgs
          ]

    const flushLock = yield* Effect.makeSemaphore(1)

    /** Writes one batch; false when Redis is unreachable (the batch is put back). */
    const flushBatch = (now: number): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        const batch: Array<[string, Pending<A>]> = []
        for (const entry of pending) {
          batch.push(entry)
          if (batch.length >= batchSize) break
        }
        for (const [id, p] of batch) {
          pending.delete(id)
          flushing.set(id, p)
        }
        const settled = () => {
          for (const [id, p] of batch) if (flushing.get(id) === p) flushing.delete(id)
        }
        const pipeline = redis.pipeline()
        const send = write(pipeline)
        for (const [id, p] of batch) {
          const [key, ...args] = argsOf(id, p.op === "del" ? "del" : "set", p, null, now)
          void send(key!, ...args)
        }
        // Back in the queue (unless a newer write of the session is there), to be replayed.
        const putBack = () => {
          for (const [id, p] of batch) if (!pending.has(id)) pending.set(id, { ...p, replay: true })
        }
        return command("flush", () => pipeline.exec()).pipe(
          Effect.flatMap((results) => {
            flushes++
            let unreachable: RedisError | undefined
            const refused: Array<RedisError> = []
            batch.forEach(([id, p], i) => {
              const failure = results?.[i]?.[0]
              if (failure === null || failure === undefined) {
                if (p.replay) replayedWrites++
                return
              }
              const error = RedisErrors.fromUnknown("flush", failure)
              storeErrors++
              if (error.reason === "command") refused.push(error)
              else {
                unreachable = error
                if (!pending.has(id)) pending.set(id, { ...p, replay: true })
              }
            })
            const logRefused =
              refused.length === 0
                ? Effect.void
                : Effect.logWarning("Redis refused session writes; they were dropped").pipe(
                    Effect.annotateLogs({ ...annotations, count: refused.length, error: refused[0]!.detail })
                  )
            return Effect.zipRight(
              logRefused,
              unreachable === undefined ? Effect.succeed(true) : Effect.as(enterFallback(unreachable), false)
            )
          }),
          Effect.catchAll(() => Effect.sync(putBack).pipe(Effect.as(false))),
          Effect.ensuring(Effect.sync(settled))
        )
      })

    /** Waits for the flush carrying a write of `id`, so a later write to Redis cannot land before it. */
    const afterFlushOf = (id: string) =>
      Effect.suspend(() => (flushing.has(id) ? flushLock.withPermits(1)(Effect.void) : Effect.void))

    /** Flushes everything pending, in batches, while Redis answers. */
    const flushAll: Effect.Effect<void> = flushLock.withPermits(1)(
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.whileLoop({
          while: () => !fallback && pending.size > 0,
          body: () => flushBatch(now),
          step: () => {}
        })
      )
    )

    // ---- reads --------------------------------------------------------------------------------

    /** What this instance knows of `id` without asking Redis: a pending write, else the cache. */
    const local = (id: string, now: number, stale: boolean): Option.Option<Option.Option<Stored<A>>> => {
      const p = unsent(id)
      if (p !== undefined) {
        return Option.some(
          p.op === "del" || p.expiresAt <= now ? Option.none() : Option.some({ value: p.value, expiresAt: p.expiresAt })
        )
      }
      const entry = cache.get(id, now)
      if (entry !== undefined && (stale || entry.freshUntil > now)) return Option.some(Option.some(entry))
      return Option.none()
    }

    interface Read {
      readonly raw: string | null
      readonly stored: Option.Option<Stored<A>>
    }

    /** What a raw Redis value says: nothing, an expired session, a live one, or a value failing the schema. */
    const interpret = (
      id: string,
      raw: string | null,
      now: number
    ): Effect.Effect<Read, SessionError.SessionSchemaError> => {
      if (raw === null) return Effect.succeed({ raw, stored: Option.none() })
      const parsed = parse(id, raw)
      if (Either.isLeft(parsed)) {
        cache.delete(id)
        return Effect.zipRight(logInvalid(parsed.left), Effect.fail(parsed.left))
      }
      return Effect.succeed({ raw, stored: parsed.right.expiresAt <= now ? Option.none() : Option.some(parsed.right) })
    }

    const readRedis = (id: string, now: number) =>
      Effect.flatMap(
        command("GET", (r) => r.get(sessionPrefix + id)),
        (raw) => interpret(id, raw, now)
      )

    const get = (id: string) =>
      Effect.flatMap(
        Clock.currentTimeMillis,
        (now): Effect.Effect<Option.Option<A>, SessionError.SessionSchemaError> => {
          const known = local(id, now, fallback)
          if (Option.isSome(known)) {
            hits++
            return Effect.succeed(Option.map(known.value, (s) => s.value))
          }
          misses++
          if (fallback) return Effect.succeed(Option.none())
          const before = cache.peek(id, now)
          return readRedis(id, now).pipe(
            Effect.map(({ stored }) => {
              // A local write that landed while the read was in flight is newer than what Redis said.
              const racing = local(id, now, true)
              if (unsent(id) !== undefined || cache.peek(id, now) !== before) {
                return Option.flatMap(racing, (s) => Option.map(s, (x) => x.value))
              }
              if (Option.isNone(stored)) {
                cache.delete(id)
                return Option.none()
              }
              cache.set(id, stored.value.value, stored.value.expiresAt, now + cacheTtl)
              return Option.some(stored.value.value)
            }),
            Effect.catchTag("RedisError", () =>
              Effect.succeed(Option.map(Option.fromNullable(cache.peek(id, now)), (e) => e.value))
            )
          )
        }
      )

    // ---- writes -------------------------------------------------------------------------------

    const prepare = (id: string, value: A, expiresAt: number) =>
      Either.map(encodeValue(id, value), (encoded) => {
        const indexArgs = indexArgsOf(cache.indexValuesOf(value))
        return {
          op: "set" as const,
          value,
          expiresAt,
          envelope: envelopeOf(encoded, expiresAt, indexArgs),
          indexArgs,
          replay: fallback
        }
      })

    /** Keeps a write in memory and sends it now (write-through) or with the next batch. */
    const store = (id: string, p: Pending<A> & { op: "set" }, now: number, through: boolean) => {
      cache.set(id, p.value, p.expiresAt, now + cacheTtl)
      if (!through || fallback) {
        enqueue(id, p)
        return Effect.void
      }
      // This write supersedes any older one still waiting.
      pending.delete(id)
      const [key, ...args] = argsOf(id, "set", p, null, now)
      return afterFlushOf(id).pipe(
        Effect.zipRight(command("write", (r) => write(r)(key!, ...args))),
        Effect.asVoid,
        Effect.catchAll(() => Effect.sync(() => enqueue(id, { ...p, replay: true })))
      )
    }

    const set = (id: string, value: A, callOptions?: SessionStore.TtlOptions) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const ttl = callOptions?.ttl === undefined ? defaultTtl : positive("ttl", callOptions.ttl)
        const p = prepare(id, value, now + ttl)
        if (Either.isLeft(p)) return Effect.fail(p.left)
        return store(id, p.right, now, writeThrough)
      })

    const remove = (id: string) =>
      Effect.suspend(() => {
        cache.delete(id)
        if (!writeThrough || fallback) {
          enqueue(id, { op: "del", replay: fallback })
          return Effect.void
        }
        pending.delete(id)
        const [key, ...args] = argsOf(id, "del", undefined, null, 0)
        return afterFlushOf(id).pipe(
          Effect.zipRight(command("delete", (r) => write(r)(key!, ...args))),
          Effect.asVoid,
          Effect.catchAll(() => Effect.sync(() => enqueue(id, { op: "del", replay: true })))
        )
      })

    /** `update` against this instance's memory (while Redis is unreachable). */
    const updateLocal = (id: string, f: (a: A) => A, now: number, ttl: number | undefined) => {
      const current = Option.flatten(local(id, now, true))
      if (Option.isNone(current)) return Effect.succeed(Option.none<A>())
      const next = f(current.value.value)
      const p = prepare(id, next, ttl === undefined ? current.value.expiresAt : now + ttl)
      if (Either.isLeft(p)) return Effect.fail(p.left)
      cache.set(id, next, p.right.expiresAt, now + cacheTtl)
      enqueue(id, { ...p.right, replay: true })
      return Effect.succeed(Option.some(next))
    }

    // Updates of one session within this instance take turns, so their compare-and-set
    // conflicts only with other instances instead of with each other.
    const locks = new Map<string, { readonly lock: Effect.Semaphore; users: number }>()
    const serialized = <X, E>(id: string, effect: Effect.Effect<X, E>): Effect.Effect<X, E> =>
      Effect.acquireUseRelease(
        Effect.sync(() => {
          let held = locks.get(id)
          if (held === undefined) locks.set(id, (held = { lock: Effect.unsafeMakeSemaphore(1), users: 0 }))
          held.users++
          return held
        }),
        (held) => held.lock.withPermits(1)(effect),
        (held) =>
          Effect.sync(() => {
            if (--held.users === 0) locks.delete(id)
          })
      )

    const update = (
      id: string,
      f: (a: A) => A,
      callOptions?: SessionStore.TtlOptions
    ): Effect.Effect<Option.Option<A>, SessionError.SessionSchemaError> =>
      serialized(
        id,
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const ttl = callOptions?.ttl === undefined ? undefined : positive("ttl", callOptions.ttl)
          if (fallback) return updateLocal(id, f, now, ttl)
          type Outcome = { readonly done: Option.Option<A> } | { readonly conflict: string | null }
          const attempt = (
            read: Effect.Effect<Read, SessionError.SessionSchemaError | RedisError>
          ): Effect.Effect<Outcome, SessionError.SessionSchemaError | RedisError> =>
            Effect.flatMap(
              read,
              ({ raw, stored }): Effect.Effect<Outcome, SessionError.SessionSchemaError | RedisError> => {
                const mine = unsent(id)
                const current =
                  mine === undefined
                    ? stored
                    : mine.op === "del" || mine.expiresAt <= now
                      ? Option.none()
                      : Option.some({ value: mine.value, expiresAt: mine.expiresAt })
                if (Option.isNone(current)) {
                  if (mine === undefined) cache.delete(id)
                  return Effect.succeed({ done: Option.none() })
                }
                const next = f(current.value.value)
                const p = prepare(id, next, ttl === undefined ? current.value.expiresAt : now + ttl)
                if (Either.isLeft(p)) return Effect.fail(p.left)
                const [key, ...args] = argsOf(id, "cas", p.right, raw, now)
                return Effect.map(
                  command("update", (r) => write(r)(key!, ...args)),
                  (reply): Outcome => {
                    // Another writer got there first: the script sent back what it wrote.
                    if (reply !== 1) return { conflict: (reply as unknown as [0, string | null])[1] ?? null }
                    if (pending.get(id) === mine) pending.delete(id)
                    cache.set(id, next, p.right.expiresAt, now + cacheTtl)
                    return { done: Option.some(next) }
                  }
                )
              }
            )
          const loop = (
            read: Effect.Effect<Read, SessionError.SessionSchemaError | RedisError>
          ): Effect.Effect<Option.Option<A>, SessionError.SessionSchemaError> =>
            attempt(read).pipe(
              Effect.catchTag("RedisError", () => Effect.map(updateLocal(id, f, now, ttl), (done) => ({ done }))),
              Effect.flatMap((outcome) =>
                "done" in outcome ? Effect.succeed(outcome.done) : loop(interpret(id, outcome.conflict, now))
              )
            )
          return loop(Effect.zipRight(afterFlushOf(id), readRedis(id, now)))
        })
      )

    const getOrCreate = <E, R>(id: string, create: Effect.Effect<A, E, R>, callOptions?: SessionStore.TtlOptions) =>
      Effect.flatMap(
        get(id),
        Option.match({
          onSome: (value) => Effect.succeed(value) as Effect.Effect<A, SessionError.SessionSchemaError | E, R>,
          onNone: () =>
            Effect.flatMap(create, (value) =>
              Effect.flatMap(Clock.currentTimeMillis, (now) => {
                const ttl = callOptions?.ttl === undefined ? defaultTtl : positive("ttl", callOptions.ttl)
                const p = prepare(id, value, now + ttl)
                if (Either.isLeft(p)) return Effect.fail(p.left)
                if (fallback || unsent(id) !== undefined) return Effect.as(store(id, p.right, now, false), value)
                // Created at once, only if nobody else did: two instances agree on one session.
                const [key, ...args] = argsOf(id, "nx", p.right, null, now)
                return command("create", (r) => write(r)(key!, ...args)).pipe(
                  Effect.flatMap((written) => {
                    if (written === 1) {
                      cache.set(id, value, p.right.expiresAt, now + cacheTtl)
                      return Effect.succeed(value)
                    }
                    return Effect.flatMap(
                      get(id),
                      Option.match({
                        onSome: Effect.succeed,
                        onNone: () => Effect.as(store(id, p.right, now, writeThrough), value)
                      })
                    )
                  }),
                  Effect.catchTag("RedisError", () =>
                    Effect.as(store(id, { ...p.right, replay: true }, now, false), value)
                  )
                )
              })
            )
        })
      )

    const touch = (id: string, callOptions?: SessionStore.TtlOptions) =>
      Effect.map(
        update(id, (a) => a, { ttl: callOptions?.ttl ?? Duration.millis(defaultTtl) }),
        Option.isSome
      )

    // ---- indexes ------------------------------------------------------------------------------

    const findLocal = (index: string, value: string, now: number): Array<SessionStore.Found<A>> =>
      cache.findBy(index, value, now).map((e) => ({ id: e.id, value: e.value, expiresAt: e.expiresAt }))

    const findBy = (index: I, value: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now): Effect.Effect<ReadonlyArray<SessionStore.Found<A>>> => {
        if (!cache.hasIndex(index)) return Effect.succeed([])
        if (fallback) return Effect.succeed(findLocal(index, value, now))
        const key = `${indexPrefix}${index}:${value}`
        return Effect.gen(function* () {
          const replies = yield* command("findBy", (r) =>
            r.multi().zremrangebyscore(key, "-inf", now).zrangebyscore(key, `(${now}`, "+inf").exec()
          )
          const ids = (replies?.[1]?.[1] ?? []) as Array<string>
          // This instance's own writes still on their way to Redis are newer than what Redis holds.
          const remote = ids.filter((id) => unsent(id) === undefined)
          const raws =
            remote.length === 0 ? [] : yield* command("MGET", (r) => r.mget(remote.map((id) => sessionPrefix + id)))
          const found = new Map<string, SessionStore.Found<A>>()
          const position = indexNames.indexOf(index)
          for (let i = 0; i < remote.length; i++) {
            const id = remote[i]!
            const raw = raws[i]
            if (raw === null || raw === undefined) continue
            const parsed = parse(id, raw)
            if (Either.isLeft(parsed)) {
              yield* logInvalid(parsed.left)
              continue
            }
            const s = parsed.right
            if (s.expiresAt <= now || cache.indexValuesOf(s.value)[position] !== value) continue
            found.set(id, { id, value: s.value, expiresAt: s.expiresAt })
          }
          for (const e of findLocal(index, value, now)) if (unsent(e.id) !== undefined) found.set(e.id, e)
          return Array.from(found.values())
        }).pipe(Effect.catchTag("RedisError", () => Effect.succeed(findLocal(index, value, now))))
      })

    // ---- background fibers --------------------------------------------------------------------

    const background = <X, E>(effect: Effect.Effect<X, E>) =>
      effect.pipe(Effect.catchAllCause(Effect.logWarning), Effect.annotateLogs(annotations), Effect.forkScoped)

    yield* background(Effect.schedule(flushAll, flushSchedule))
    yield* background(Effect.forever(Effect.zipRight(Queue.take(flushSignal), flushAll)))
    yield* background(
      Effect.repeat(
        Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => cache.sweep(now))),
        Schedule.spaced(cleanupInterval)
      )
    )
    // Sleeps until the store falls back, then probes until Redis answers.
    const probe = client
      .run("PING", (r) => r.ping())
      .pipe(
        Effect.retry(Schedule.spaced(probeInterval)),
        Effect.zipRight(
          Effect.suspend(() => {
            fallback = false
            return Effect.logInfo("Redis reachable again: replaying writes kept in memory").pipe(
              Effect.annotateLogs({ ...annotations, pending: pending.size }),
              Effect.zipRight(sampleMetrics),
              Effect.zipRight(flushAll)
            )
          })
        )
      )
    yield* background(Effect.forever(Effect.zipRight(Queue.take(fallbackSignal), probe)))
    if (fallback) {
      fallbackSignal.unsafeOffer(undefined)
      yield* Effect.logWarning("Redis unreachable: sessions are served from this instance's memory").pipe(
        Effect.annotateLogs({ ...annotations, reason: "connection" })
      )
    }
    // Last writes go out before the client closes (each batch bounded by the command timeout).
    yield* Effect.addFinalizer(() => flushAll)

    const service: SessionStore.SessionStore<A, I> = {
      [SessionStore.TypeId]: SessionStore.TypeId,
      get,
      getOrCreate,
      set,
      update,
      touch,
      delete: remove,
      findBy,
      stats
    }
    return service
  })
