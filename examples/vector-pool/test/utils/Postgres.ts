/**
 * The real PostgreSQL the tests run against: a throwaway cluster per test
 * file (see `src/PgServer.ts`), and an observer connection that counts
 * sessions on the server.
 */
import { Context, Effect, Layer, Ref, Schedule, type Scope } from "effect"
import type * as Duration from "effect/Duration"
import * as Connection from "../../src/Connection.js"
import * as PgServer from "../../src/PgServer.js"

/** Under CI a missing PostgreSQL fails the tests (they start it) instead of skipping them. */
export const ci = ["true", "1"].includes((process.env.CI ?? "").toLowerCase())

/** Whether the real-server tests run: PostgreSQL is installed, or this is CI (where it must be). */
export const runs = PgServer.isInstalled() || ci

/** A cluster for a whole test file. */
export class Postgres extends Context.Tag("test/Postgres")<Postgres, PgServer.PgServer>() {
  static readonly layer = Layer.scoped(Postgres, PgServer.make())
}

const countSql = "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1"

/** The sessions the server has open for `applicationName`, asked on a connection opened for the question. */
export const sessions = (url: string, applicationName: string) =>
  Effect.scoped(
    Effect.flatMap(Connection.connect({ url, applicationName: "test-observer" }), (observer) =>
      Effect.map(Connection.query<{ n: number }>(observer, countSql, [applicationName]), (rows) => rows[0].n)
    )
  )

/** The backend process ids of the sessions open for `applicationName`. */
export const backendPids = (url: string, applicationName: string) =>
  Effect.scoped(
    Effect.flatMap(Connection.connect({ url, applicationName: "test-observer" }), (observer) =>
      Effect.map(
        Connection.query<{ pid: number }>(
          observer,
          "SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid",
          [applicationName]
        ),
        (rows) => rows.map((row) => row.pid)
      )
    )
  )

/**
 * Counts, from a connection of its own, the sessions the server has open for
 * `applicationName` (`pg_stat_activity`), every few milliseconds in the
 * background; `max` is the largest count seen, `samples` how many were taken.
 */
export const sessionCounter = (url: string, applicationName: string) =>
  Effect.gen(function* () {
    const observer = yield* Connection.connect({ url, applicationName: "test-observer" })
    const count = Effect.map(
      Connection.query<{ n: number }>(observer, countSql, [applicationName]),
      (rows) => rows[0].n
    )
    const max = yield* Ref.make(0)
    const samples = yield* Ref.make(0)
    yield* count.pipe(
      Effect.tap((n) =>
        Effect.zipRight(
          Ref.update(max, (m) => Math.max(m, n)),
          Ref.update(samples, (s) => s + 1)
        )
      ),
      Effect.ignore,
      Effect.repeat(Schedule.spaced("2 millis")),
      Effect.forkScoped
    )
    return { count, max: Ref.get(max), samples: Ref.get(samples) }
  }) satisfies Effect.Effect<unknown, unknown, Scope.Scope>

/**
 * Reads `self` every 20 ms until `predicate` holds and returns that value;
 * fails with the last value read after `within` (default 10 seconds). For
 * real I/O settling (a backend exiting), never for timing rules.
 */
export const eventually = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  predicate: (a: A) => boolean,
  within: Duration.DurationInput = "10 seconds"
): Effect.Effect<A, E | { readonly _tag: "NotYet"; readonly last: A }, R> =>
  self.pipe(
    Effect.filterOrFail(predicate, (last) => ({ _tag: "NotYet" as const, last })),
    Effect.retry({
      while: (e) => typeof e === "object" && e !== null && "_tag" in e && e._tag === "NotYet",
      schedule: Schedule.spaced("20 millis").pipe(Schedule.upTo(within))
    })
  )
