/**
 * The relay's circuit breaker per upstream account: `failures` connection
 * failures within `window` (3 in 60 seconds by default) open the account's
 * circuit for `reset`; then one request is let through to probe it: its
 * success closes the circuit, its failure opens it again for `reset`.
 *
 * A rate over a time window, not failures in a row: an account that fails
 * every other request is failing, though successes come between. (The pool's
 * own breaker counts failures in a row; the relay keeps this one instead.)
 * All time is the `Clock`'s, so `TestClock` drives it.
 */

import { Clock, Data, Duration, Effect } from "effect"

/** The account's circuit is open: no request is sent to it before `retryAfterMillis`. */
export class AccountOpen extends Data.TaggedError("AccountOpen")<{
  readonly account: string
  readonly retryAfterMillis: number
}> {
  override get message(): string {
    return `the circuit of ${this.account} is open; retry in ${this.retryAfterMillis} ms`
  }
}

/** `closed`: requests go; `open`: none before its reset; `half-open`: past its reset, one probe goes. */
export type Circuit = "closed" | "open" | "half-open"

export interface BreakerOptions {
  readonly failures: number
  readonly window: Duration.DurationInput
  readonly reset: Duration.DurationInput
}

interface State {
  /** Times of the failures inside the window, oldest first; at most `failures` kept. */
  readonly recent: Array<number>
  /** When the circuit may be probed again, while it is open. */
  retryAt: number | null
  /** A probe is in flight: other requests wait for its outcome (they are turned away). */
  probing: boolean
}

export interface AccountBreaker {
  /** Lets a request to `account` go, or fails with `AccountOpen`. Past the reset, exactly one probe goes. */
  readonly admit: (account: string) => Effect.Effect<void, AccountOpen>
  /** The account answered: a probe's success closes its circuit. */
  readonly success: (account: string) => Effect.Effect<void>
  /** A connection failure: counted in the window; a probe's failure opens the circuit again. */
  readonly failure: (account: string) => Effect.Effect<void>
  /** A request that was admitted ended with neither (interrupted, refused by the pool): a probe may go again. */
  readonly settle: (account: string) => Effect.Effect<void>
  /** Each account's circuit now. */
  readonly circuits: Effect.Effect<ReadonlyMap<string, { readonly circuit: Circuit; readonly retryAt: number | null }>>
}

export const make = (accounts: ReadonlyArray<string>, options: BreakerOptions): AccountBreaker => {
  const windowMillis = Duration.toMillis(options.window)
  const resetMillis = Duration.toMillis(options.reset)
  const states = new Map<string, State>(accounts.map((a) => [a, { recent: [], retryAt: null, probing: false }]))
  const stateOf = (account: string): State => {
    let state = states.get(account)
    if (state === undefined) {
      state = { recent: [], retryAt: null, probing: false }
      states.set(account, state)
    }
    return state
  }
  const circuit = (state: State, now: number): Circuit =>
    state.retryAt === null ? "closed" : now < state.retryAt || state.probing ? "open" : "half-open"
  const open = (state: State, now: number) => {
    state.retryAt = now + resetMillis
    state.recent.length = 0
  }

  return {
    admit: (account) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const state = stateOf(account)
        if (state.retryAt === null) return Effect.void
        if (now >= state.retryAt && !state.probing) {
          state.probing = true
          return Effect.void
        }
        return Effect.fail(new AccountOpen({ account, retryAfterMillis: Math.max(0, state.retryAt - now) }))
      }),
    success: (account) =>
      Effect.sync(() => {
        const state = stateOf(account)
        if (state.probing) {
          state.probing = false
          state.retryAt = null
          state.recent.length = 0
        }
      }),
    failure: (account) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const state = stateOf(account)
        if (state.probing) {
          state.probing = false
          open(state, now)
          return
        }
        if (state.retryAt !== null) return
        const recent = state.recent
        while (recent.length > 0 && recent[0]! <= now - windowMillis) recent.shift()
        recent.push(now)
        if (recent.length > options.failures) recent.shift()
        if (recent.length >= options.failures) open(state, now)
      }),
    settle: (account) =>
      Effect.sync(() => {
        stateOf(account).probing = false
      }),
    circuits: Effect.map(Clock.currentTimeMillis, (now) => {
      const out = new Map<string, { circuit: Circuit; retryAt: number | null }>()
      for (const [account, state] of states) out.set(account, { circuit: circuit(state, now), retryAt: state.retryAt })
      return out
    })
  }
}
