/**
 * Contended: 1,000 callers × 100 leases on a pool of 10, a `setImmediate` hop
 * inside each lease, so 990 callers wait at any time. Measures throughput,
 * how long a lease waits (p50 / p99 / max) and fairness: when the first
 * caller finished its 100 leases, as a share of the whole run (a FIFO pool
 * finishes everyone near the end; an unfair one lets some callers finish
 * early while others starve).
 */
import * as format from "../format.js"
import { quantiles } from "../measure.js"
import { runPlan } from "../workload.js"
import { Recorder, repeat, type Scenario, withPool } from "./scenario.js"

const sizes = (quick: boolean) => (quick ? { callers: 50, ops: 10 } : { callers: 1_000, ops: 100 })

/** The contended scenario. */
export const contended: Scenario = {
  id: "contended",
  title: (quick) => {
    const { callers, ops } = sizes(quick)
    return `Contended: ${format.integer(callers)} callers × ${ops} leases on a pool of 10, a setImmediate hop inside each use`
  },
  baseline: "effect-pool",
  adapters: ["effect-pool", "cistern-pool-use", "generic-pool", "tarn", "floor-array"],
  metrics: [
    { id: "opsPerSec", label: "leases/s", format: format.count },
    { id: "waitP50", label: "wait p50", format: format.millis },
    { id: "waitP99", label: "wait p99", format: format.millis },
    { id: "waitMax", label: "wait max", format: format.millis },
    { id: "maxOverP50", label: "max ÷ p50", format: format.count },
    { id: "firstDone", label: "first caller done", format: format.percent }
  ],
  run: async (_id, adapter, { quick, repetitions }) => {
    const recorder = new Recorder()
    const { callers, ops } = sizes(quick)
    const plan = { callers, opsPerCaller: ops, work: "immediate", recordWaits: true } as const
    const warmUp = { ...plan, opsPerCaller: Math.max(1, ops / 10) }
    await withPool(adapter, { maxPerKey: 10 }, (subject) => runPlan(subject, warmUp))
    recorder.repetitions = await repeat(repetitions, async () => {
      const outcome = await withPool(adapter, { maxPerKey: 10 }, (subject) => runPlan(subject, plan))
      const [p50, p99, max] = quantiles(outcome.waitsMs!, [0.5, 0.99, 1])
      recorder.record({
        opsPerSec: (callers * ops * 1000) / outcome.elapsedMs,
        waitP50: p50,
        waitP99: p99,
        waitMax: max,
        maxOverP50: max! / p50!,
        firstDone: (100 * Math.min(...outcome.doneAtMs)) / outcome.elapsedMs
      })
    })
    return recorder.measured
  }
}
