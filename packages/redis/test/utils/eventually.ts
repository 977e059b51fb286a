/**
 * Waits for real I/O to land: polls `check` every 10 ms of real time (Node
 * timers, so it works the same under `TestClock`) until it holds, failing
 * after `withinMs`. For I/O only: timing rules are tested with `TestClock`.
 */
import * as Effect from "effect/Effect"

const pause = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

export const eventually = <E, R>(
  check: Effect.Effect<boolean, E, R>,
  what: string,
  withinMs = 10_000
): Effect.Effect<void, E | Error, R> =>
  Effect.gen(function* () {
    const deadline = performance.now() + withinMs
    while (!(yield* check)) {
      if (performance.now() > deadline) return yield* Effect.fail(new Error(`not within ${withinMs} ms: ${what}`))
      yield* pause(10)
    }
  })

/** Real milliseconds since `start` (from `performance.now()`). */
export const since = (start: number): number => performance.now() - start
