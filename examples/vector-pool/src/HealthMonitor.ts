/**
 * The health monitor: on a `Schedule`, asks the vector store its version
 * through the pool and records the result — healthy with the version, or
 * unhealthy with the error — together with the pool's stats at that moment.
 * The last `keep` results (default 100) are kept, oldest first. A change of
 * state is logged. The monitor's fiber lives in the scope that made it.
 */
import { Clock, Duration, Effect, Option, Ref, type Schedule, Schema, type Scope } from "effect"
import { Stats } from "./VectorPool.js"

/** One check. */
export const Check = Schema.Struct({
  /** When the check started, epoch milliseconds (the monitor's `Clock`). */
  at: Schema.Number,
  status: Schema.Literal("healthy", "unhealthy"),
  /** The server's version; `null` when the check failed. */
  version: Schema.NullOr(Schema.String),
  /** Why it failed. */
  error: Schema.optional(Schema.String),
  /** How long the check took. */
  millis: Schema.Number,
  /** The pool's stats when the check started. */
  stats: Stats
})

/** One check. */
export interface Check extends Schema.Schema.Type<typeof Check> {}

/** A running monitor. */
export interface HealthMonitor {
  /** The last `limit` results (default: all kept), oldest first. */
  readonly history: (limit?: number) => Effect.Effect<ReadonlyArray<Check>>
  /** The newest result, if there is one. */
  readonly latest: Effect.Effect<Option.Option<Check>>
  /** Runs a check now and records it (what the schedule does). */
  readonly checkNow: Effect.Effect<Check>
}

/** How the monitor checks. */
export interface Options<E> {
  /** Asks the store its version (through a pooled connection). */
  readonly probe: Effect.Effect<string, E>
  /** The pool's stats, recorded with each check. */
  readonly stats: Effect.Effect<Stats>
  /** When to check after the first check, which runs at once. */
  readonly schedule: Schedule.Schedule<unknown, unknown>
  /** A check that takes longer fails. Default 5 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
  /** Results kept. Default 100. */
  readonly keep?: number | undefined
}

const describe = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error && typeof error.message === "string"
    ? error.message
    : String(error)

/** Starts the monitor in the current scope; its first check runs at once. */
export const make = <E>(options: Options<E>): Effect.Effect<HealthMonitor, never, Scope.Scope> =>
  Effect.gen(function* () {
    const keep = options.keep ?? 100
    if (!Number.isInteger(keep) || keep < 1) throw new RangeError(`keep must be a positive integer, got ${keep}`)
    const timeout = Duration.decode(options.timeout ?? "5 seconds")
    const results = yield* Ref.make<ReadonlyArray<Check>>([])

    const record = (check: Check) =>
      Ref.modify(results, (all) => {
        const previous = all.at(-1)
        const next = all.length < keep ? [...all, check] : [...all.slice(all.length - keep + 1), check]
        return [previous, next] as const
      }).pipe(
        Effect.tap((previous) => {
          if (previous?.status === check.status) return Effect.void
          return check.status === "healthy"
            ? Effect.logInfo(`vector store healthy (PostgreSQL ${check.version})`)
            : Effect.logWarning(`vector store unhealthy: ${check.error}`)
        }),
        Effect.as(check)
      )

    const checkNow = Effect.gen(function* () {
      const at = yield* Clock.currentTimeMillis
      const stats = yield* options.stats
      const outcome = yield* options.probe.pipe(
        Effect.timeoutFail({ duration: timeout, onTimeout: () => `no answer within ${Duration.format(timeout)}` }),
        Effect.either
      )
      const millis = (yield* Clock.currentTimeMillis) - at
      const check: Check =
        outcome._tag === "Right"
          ? { at, status: "healthy", version: outcome.right, millis, stats }
          : { at, status: "unhealthy", version: null, error: describe(outcome.left), millis, stats }
      return yield* record(check)
    })

    yield* checkNow.pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("a health check could not run", cause)),
      Effect.repeat(options.schedule),
      Effect.annotateLogs({ module: "HealthMonitor" }),
      Effect.forkScoped
    )

    return {
      history: (limit) =>
        Effect.map(Ref.get(results), (all) => (limit === undefined ? all : all.slice(Math.max(0, all.length - limit)))),
      latest: Effect.map(Ref.get(results), (all) => Option.fromNullable(all.at(-1))),
      checkNow
    }
  })
