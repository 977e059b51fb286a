/**
 * Waiting for real I/O to settle (a server noticing a closed socket, a child
 * process answering) by polling, with a bound.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

/**
 * The condition did not hold before the deadline; `last` is the last value
 * read.
 *
 * @since 0.1.0
 * @category errors
 */
export class NotYet extends Data.TaggedError("NotYet")<{
  readonly label: string
  readonly waited: Duration.Duration
  readonly last: unknown
}> {
  override get message(): string {
    return `${this.label}: still not true after ${Duration.format(this.waited)} (last value: ${JSON.stringify(this.last)})`
  }
}

/**
 * Runs `self` every `interval` (default 10 millis) until `predicate` holds for
 * its value, and returns that value; fails with {@link NotYet} after
 * `timeout` (default 5 seconds). For real I/O under the live clock
 * (`it.live`, `it.scopedLive`), never for timing rules.
 *
 * @since 0.1.0
 * @category combinators
 */
export const eventually = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  predicate: (a: A) => boolean,
  options?: {
    readonly label?: string | undefined
    readonly timeout?: Duration.DurationInput | undefined
    readonly interval?: Duration.DurationInput | undefined
  }
): Effect.Effect<A, E | NotYet, R> =>
  Effect.suspend(() => {
    const waited = Duration.decode(options?.timeout ?? "5 seconds")
    let last: A | undefined
    return self.pipe(
      Effect.tap((a) => {
        last = a
      }),
      Effect.repeat({ until: predicate, schedule: Schedule.spaced(options?.interval ?? "10 millis") }),
      Effect.map(() => last as A),
      // Interruptible, so the deadline holds inside finalizers too.
      Effect.interruptible,
      Effect.timeoutFail({
        duration: waited,
        onTimeout: () => new NotYet({ label: options?.label ?? "eventually", waited, last })
      })
    )
  })
