import { Chunk, Duration, Effect, Logger, LogLevel, Redacted, TestClock } from "effect"
import * as MemoryClient from "../src/MemoryClient.js"
import type { Settings } from "../src/Settings.js"
import * as MemoryService from "../src/service/MemoryService.js"

export const apiKey = "test-key-alice"
export const account = "alice@example.com"

/** Only warnings and errors from the code under test. */
export const quiet = Logger.minimumLogLevel(LogLevel.Error)

/** A memory service on a free port of 127.0.0.1 that accepts {@link apiKey}, stopped with the scope. */
export const service = MemoryService.make({ apiKeys: new Map([[apiKey, account]]) })

/** Settings for tests: the note's intervals, short retries. */
export const testSettings = (overrides: Partial<Settings> = {}): Settings => ({
  healthCheckInterval: Duration.seconds(30),
  heartbeatInterval: Duration.seconds(45),
  autoRebuild: true,
  connectionTimeout: Duration.seconds(5),
  requestTimeout: Duration.seconds(5),
  maxRetries: 6,
  retryDelay: Duration.millis(50),
  backoffFactor: 2,
  maxConcurrentCalls: 32,
  ...overrides
})

/** A client of `svc` with `key`, closed with the scope. */
export const client = (svc: MemoryService.MemoryService, settings: Settings, key = apiKey) =>
  MemoryClient.make({ url: svc.host.url, apiKey: Redacted.make(key), settings })

/** One turn of the event loop: lets socket callbacks run. Not a timed sleep. */
const turn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/**
 * Repeats `self` until `predicate` holds, giving the event loop a turn between
 * tries (real I/O completes on its own; the `TestClock` does not move).
 */
export const eventually = <A, E, R>(self: Effect.Effect<A, E, R>, predicate: (a: A) => boolean, what: string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 20_000; i++) {
      const a = yield* self
      if (predicate(a)) return a
      yield* turn
    }
    return yield* Effect.dieMessage(`never happened: ${what}`)
  })

/** Waits until some fiber sleeps until `at` (ms on the TestClock): the next step of a schedule is armed. */
export const armed = (at: number) =>
  eventually(
    Effect.map(TestClock.sleeps(), (sleeps) => Chunk.toReadonlyArray(sleeps)),
    (sleeps) => sleeps.includes(at),
    `a sleep until ${at} ms`
  )
