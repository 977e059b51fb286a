/**
 * Idle: 100,000 distinct keys, each leased once (so each holds one idle item),
 * then left alone. Measures the heap each idle key costs, how busy the event
 * loop is while nothing happens (before any item is due to expire), and —
 * after the pool's idle expiry has run, in real time, checked every 500 ms —
 * how many items and keys are left and how close the heap is to where it
 * started (the fresh pool).
 *
 * The idle timeout must outlast the first leases, or expiry would start while
 * "idle" is being measured: each library gets 1.25 × its own time to lease
 * all keys (estimated from the warm-up, which leases a tenth of them) plus
 * the idle window and 2 s, kept between 3 s and 10 s. Effect's `KeyedPool` takes longer than that
 * (its per-key TTL fibers keep the event loop saturated), so it gets 10 s and
 * one repetition (about a minute).
 */
import { performance } from "node:perf_hooks"
import type { AdapterId } from "../adapters/index.js"
import * as format from "../format.js"
import { settledHeap, sleep } from "../measure.js"
import type { Shape } from "../subject.js"
import { type Plan, runPlan } from "../workload.js"
import { primedHeap, Recorder, repeat, type Scenario, withPool } from "./scenario.js"

const sizes = (quick: boolean) =>
  quick
    ? { keys: 2_000, callers: 20, checkMs: 50, windowMs: 150, minTimeoutMs: 500, maxTimeoutMs: 1_000 }
    : { keys: 100_000, callers: 100, checkMs: 500, windowMs: 500, minTimeoutMs: 3_000, maxTimeoutMs: 10_000 }

/** The floor has no idle expiry: only its heap and idle cost are measured. */
const neverExpire: ReadonlySet<AdapterId> = new Set(["floor-array-map"])

/** Too slow at this size for more than one repetition (see above). */
const once: ReadonlySet<AdapterId> = new Set(["effect-keyed"])

const distinctPlan = (keys: number, callers: number): Plan => ({
  callers,
  opsPerCaller: keys / callers,
  keys: Uint32Array.from({ length: keys }, (_, i) => i),
  work: "noop",
  recordWaits: false
})

/** The idle scenario. */
export const idle: Scenario = {
  id: "idle",
  title: (quick) => {
    const { keys, checkMs } = sizes(quick)
    return (
      `Idle: ${format.integer(keys)} distinct keys leased once each, then idle; ` +
      `idle expiry checked every ${format.millis(checkMs)}`
    )
  },
  baseline: "effect-keyed",
  adapters: ["effect-keyed", "cistern-keyed", "generic-pool-map", "tarn-map", "floor-array-map"],
  metrics: [
    { id: "timeout", label: "idle timeout", format: format.millis },
    { id: "opsPerSec", label: "first leases/s", format: format.count },
    { id: "heapPerKey", label: "heap per idle key", format: format.bytes },
    { id: "items", label: "live items", format: format.count },
    { id: "busy", label: "event loop busy while idle", format: format.percent },
    { id: "itemsAfter", label: "items after expiry", format: format.count },
    { id: "keysAfter", label: "keys after expiry", format: format.count },
    { id: "heapAfter", label: "heap after expiry vs start", format: (p) => `${p >= 0 ? "+" : ""}${format.percent(p)}` },
    { id: "expiredIn", label: "all expired, after the last lease", format: format.millis }
  ],
  run: async (id, adapter, { quick, repetitions }) => {
    const recorder = new Recorder()
    const { keys, callers, checkMs, windowMs, minTimeoutMs, maxTimeoutMs } = sizes(quick)
    const plan = distinctPlan(keys, callers)
    const warmUp = await withPool(adapter, { maxPerKey: 1, idle: { timeoutMs: 60_000, checkMs } }, (subject) =>
      runPlan(subject, distinctPlan(keys / 10, callers))
    )
    const estimatedMs = 1.25 * 10 * warmUp.elapsedMs + windowMs + 2_000
    const timeoutMs = Math.round(Math.min(maxTimeoutMs, Math.max(minTimeoutMs, estimatedMs)))
    const shape: Shape = { maxPerKey: 1, idle: { timeoutMs, checkMs } }
    const wanted = once.has(id) && !quick ? 1 : repetitions
    recorder.repetitions = await repeat(wanted, () =>
      withPool(adapter, shape, async (subject, ledger) => {
        const start = await primedHeap(subject, keys)
        const outcome = await runPlan(subject, plan)
        const touchedAt = performance.now()
        const items = ledger.alive
        const elu = performance.eventLoopUtilization()
        await sleep(windowMs)
        const busy = 100 * performance.eventLoopUtilization(elu).utilization
        const touched = settledHeap()
        if (ledger.alive < items) recorder.note(`${adapter.label}: expiry began before the idle heap was read`)
        recorder.record({
          timeout: timeoutMs,
          opsPerSec: (keys * 1000) / outcome.elapsedMs,
          heapPerKey: (touched - start) / keys,
          items,
          busy
        })
        if (neverExpire.has(id)) return
        const patienceMs = timeoutMs + 8 * checkMs + 1_000
        while (ledger.alive > 0 && performance.now() < touchedAt + patienceMs) await sleep(checkMs / 5)
        const expiredIn = ledger.alive === 0 ? performance.now() - touchedAt : undefined
        if (expiredIn === undefined) {
          recorder.note(`${adapter.label}: items still alive ${format.millis(patienceMs)} after the last first lease`)
        }
        // Keys are dropped by the same check that expires their last item, or never.
        const keysBy = performance.now() + 2 * checkMs
        while ((subject.keys() ?? 0) > 0 && performance.now() < keysBy) await sleep(checkMs / 5)
        recorder.record({
          itemsAfter: ledger.alive,
          keysAfter: subject.keys(),
          heapAfter: (100 * (settledHeap() - start)) / start,
          expiredIn
        })
      })
    )
    return recorder.measured
  }
}
