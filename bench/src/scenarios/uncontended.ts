/**
 * Uncontended: one caller, leases one after another from a pool of 10, so
 * nobody ever waits. Measures the bare cost of acquire → use → release, with
 * a no-op body and with a `setImmediate` hop (an I/O turn) inside the lease;
 * each repetition runs both, each on a fresh pool.
 */
import type { AdapterId } from "../adapters/index.js"
import * as format from "../format.js"
import { type Plan, runPlan } from "../workload.js"
import { Recorder, repeat, type Scenario, withPool } from "./scenario.js"

const sizes = (quick: boolean) => (quick ? { noop: 1_000, hop: 1_000 } : { noop: 20_000, hop: 10_000 })

const plans = (quick: boolean) => {
  const { noop, hop } = sizes(quick)
  const noopPlan: Plan = { callers: 1, opsPerCaller: noop, work: "noop", recordWaits: false }
  const hopPlan: Plan = { callers: 1, opsPerCaller: hop, work: "immediate", recordWaits: false }
  return { noopPlan, hopPlan }
}

/** The uncontended scenario. */
export const uncontended: Scenario = {
  id: "uncontended",
  title: (quick) => {
    const { noop, hop } = sizes(quick)
    return (
      `Uncontended: 1 caller, leases in a row from a pool of 10 — ${format.integer(noop)} with a no-op use, ` +
      `${format.integer(hop)} with a setImmediate hop inside each use`
    )
  },
  baseline: "effect-pool",
  adapters: [
    "effect-pool",
    "cistern-pool-use",
    "cistern-pool-get",
    "cistern-keyed",
    "generic-pool",
    "tarn",
    "floor-semaphore",
    "floor-semaphore-scoped",
    "floor-scoped",
    "floor-none",
    "floor-array"
  ] satisfies ReadonlyArray<AdapterId>,
  metrics: [
    { id: "noopPerSec", label: "no-op: leases/s", format: format.count },
    { id: "noopMicros", label: "no-op: µs per lease", format: format.micros },
    { id: "hopPerSec", label: "hop: leases/s", format: format.count },
    { id: "hopMicros", label: "hop: µs per lease", format: format.micros }
  ],
  run: async (_id, adapter, { quick, repetitions }) => {
    const recorder = new Recorder()
    const { noopPlan, hopPlan } = plans(quick)
    const timed = (plan: Plan) => withPool(adapter, { maxPerKey: 10 }, (subject) => runPlan(subject, plan))
    await timed({ ...noopPlan, opsPerCaller: Math.ceil(noopPlan.opsPerCaller / 5) })
    await timed({ ...hopPlan, opsPerCaller: Math.ceil(hopPlan.opsPerCaller / 5) })
    recorder.repetitions = await repeat(repetitions, async () => {
      const noop = await timed(noopPlan)
      const hop = await timed(hopPlan)
      recorder.record({
        noopPerSec: (noopPlan.opsPerCaller * 1000) / noop.elapsedMs,
        noopMicros: (noop.elapsedMs * 1000) / noopPlan.opsPerCaller,
        hopPerSec: (hopPlan.opsPerCaller * 1000) / hop.elapsedMs,
        hopMicros: (hop.elapsedMs * 1000) / hopPlan.opsPerCaller
      })
    })
    return recorder.measured
  }
}
