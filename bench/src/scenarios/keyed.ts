/**
 * Keyed: 10,000 keys × at most 2 items, 200,000 leases with a no-op body on
 * uniformly random keys by 100 concurrent callers. Measures throughput and
 * the heap each live key costs: the heap after the run (every key live) minus
 * the heap of the fresh pool, over the keys touched.
 */
import * as format from "../format.js"
import { random, settledHeap } from "../measure.js"
import { type Plan, runPlan } from "../workload.js"
import { primedHeap, Recorder, repeat, type Scenario, withPool } from "./scenario.js"

const sizes = (quick: boolean) =>
  quick ? { keys: 500, callers: 20, ops: 100 } : { keys: 10_000, callers: 100, ops: 2_000 }

const randomPlan = (keys: number, callers: number, ops: number, seed: number): Plan => {
  const next = random(seed)
  const sequence = new Uint32Array(callers * ops)
  for (let i = 0; i < sequence.length; i++) sequence[i] = Math.floor(next() * keys)
  return { callers, opsPerCaller: ops, keys: sequence, work: "noop", recordWaits: false }
}

const distinct = (keys: Uint32Array): number => new Set(keys).size

/** The keyed scenario. */
export const keyed: Scenario = {
  id: "keyed",
  title: (quick) => {
    const { keys, callers, ops } = sizes(quick)
    return (
      `Keyed: ${format.integer(keys)} keys × 2 items, ${format.integer(callers * ops)} leases (no-op use) ` +
      `on random keys by ${callers} concurrent callers`
    )
  },
  baseline: "effect-keyed",
  adapters: ["effect-keyed", "cistern-keyed", "generic-pool-map", "tarn-map", "floor-semaphore-map", "floor-array-map"],
  metrics: [
    { id: "opsPerSec", label: "leases/s", format: format.count },
    { id: "heapPerKey", label: "heap per live key", format: format.bytes },
    { id: "keys", label: "live keys (pool's count)", format: format.count },
    { id: "items", label: "live items", format: format.count }
  ],
  run: async (_id, adapter, { quick, repetitions }) => {
    const recorder = new Recorder()
    const { keys, callers, ops } = sizes(quick)
    const plan = randomPlan(keys, callers, ops, 5)
    const touched = distinct(plan.keys!)
    const warmUp = randomPlan(Math.ceil(keys / 10), callers, Math.ceil(ops / 10), 7)
    await withPool(adapter, { maxPerKey: 2 }, (subject) => runPlan(subject, warmUp))
    recorder.repetitions = await repeat(repetitions, () =>
      withPool(adapter, { maxPerKey: 2 }, async (subject, ledger) => {
        const before = await primedHeap(subject, keys)
        const outcome = await runPlan(subject, plan)
        const after = settledHeap()
        recorder.record({
          opsPerSec: (callers * ops * 1000) / outcome.elapsedMs,
          heapPerKey: (after - before) / touched,
          keys: subject.keys(),
          items: ledger.alive
        })
      })
    )
    return recorder.measured
  }
}
