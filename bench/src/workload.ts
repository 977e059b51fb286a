/**
 * The one workload every library runs: `callers` concurrent loops, each doing
 * `opsPerCaller` leases, with the same body inside each lease. It is written
 * once per style (a fiber per caller for Effect pools, an async function per
 * caller for promise pools); the two loops do the same steps in the same order.
 */
import * as Effect from "effect/Effect"
import type { EffectSubject, PromiseSubject, Subject } from "./subject.js"

/** What runs while an item is held: nothing, or one `setImmediate` hop (an I/O turn). */
export type Work = "noop" | "immediate"

/** One run of the workload. */
export interface Plan {
  readonly callers: number
  readonly opsPerCaller: number
  /** The key of op `i` of caller `c` at `keys[c * opsPerCaller + i]`; key 0 when absent. */
  readonly keys?: Uint32Array | undefined
  readonly work: Work
  /** Record each op's wait (request to item in hand); costs two clock reads per op. */
  readonly recordWaits: boolean
}

/** What a run measured. Times are milliseconds. */
export interface Outcome {
  readonly elapsedMs: number
  /** Per op, when `recordWaits`. */
  readonly waitsMs: Float64Array | undefined
  /** Per caller: when it finished its last op, since the start. */
  readonly doneAtMs: Float64Array
}

const hopEffect: Effect.Effect<void> = Effect.async<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

const hopPromise = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve))

/** Runs `plan` against `subject` and measures it. */
export const runPlan = (subject: Subject, plan: Plan): Promise<Outcome> =>
  subject.style === "effect" ? runEffect(subject, plan) : runPromise(subject, plan)

const runEffect = async (subject: EffectSubject, plan: Plan): Promise<Outcome> => {
  const { callers, opsPerCaller, keys } = plan
  const waits = plan.recordWaits ? new Float64Array(callers * opsPerCaller) : undefined
  const doneAt = new Float64Array(callers)
  const work = plan.work === "noop" ? Effect.void : hopEffect
  const untimed = () => work
  let start = 0

  const op = (index: number): Effect.Effect<void, unknown> => {
    const key = keys === undefined ? 0 : keys[index]!
    if (waits === undefined) return subject.lease(key, untimed)
    const requested = performance.now()
    return subject.lease(key, () => {
      waits[index] = performance.now() - requested
      return work
    })
  }

  const caller = (c: number): Effect.Effect<void, unknown> => {
    let i = 0
    return Effect.whileLoop({
      while: () => i < opsPerCaller,
      body: () => op(c * opsPerCaller + i),
      step: () => {
        i++
      }
    }).pipe(
      Effect.andThen(() => {
        doneAt[c] = performance.now() - start
      })
    )
  }

  const all =
    callers === 1
      ? caller(0)
      : Effect.forEach(
          Array.from({ length: callers }, (_, c) => c),
          caller,
          { concurrency: "unbounded", discard: true }
        )
  start = performance.now()
  await Effect.runPromise(all)
  return { elapsedMs: performance.now() - start, waitsMs: waits, doneAtMs: doneAt }
}

const runPromise = async (subject: PromiseSubject, plan: Plan): Promise<Outcome> => {
  const { callers, opsPerCaller, keys } = plan
  const waits = plan.recordWaits ? new Float64Array(callers * opsPerCaller) : undefined
  const doneAt = new Float64Array(callers)
  const hop = plan.work === "immediate"
  let start = 0

  const caller = async (c: number): Promise<void> => {
    for (let i = 0; i < opsPerCaller; i++) {
      const index = c * opsPerCaller + i
      const key = keys === undefined ? 0 : keys[index]!
      const requested = waits === undefined ? 0 : performance.now()
      const item = await subject.acquire(key)
      if (waits !== undefined) waits[index] = performance.now() - requested
      try {
        if (hop) await hopPromise()
      } finally {
        subject.release(key, item)
      }
    }
    doneAt[c] = performance.now() - start
  }

  start = performance.now()
  if (callers === 1) await caller(0)
  else await Promise.all(Array.from({ length: callers }, (_, c) => caller(c)))
  return { elapsedMs: performance.now() - start, waitsMs: waits, doneAtMs: doneAt }
}
