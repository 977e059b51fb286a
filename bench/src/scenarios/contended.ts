/**
 * Contended: 1,000 callers × 100 leases on a pool of 10, a `setImmediate` hop
 * inside each lease, so 990 callers wait at any time. Measures throughput,
 * how long a lease waits (p50 / p99 / max) and fairness: when the first
 * caller finished its 100 leases, as a share of the whole run (a FIFO pool
 * finishes everyone near the end; an unfair one lets some callers finish
 * early while others starve).
 *
 * The wake-up floors (`adapters/handoff.ts`) run instead as many hand-offs
 * between two fibers as the workload has leases: with 990 callers parked,
 * every lease but the first ten reaches its caller through one hand-off, so
 * no Effect pool can lease faster than the floor hands off. The footer puts
 * Cistern's throughput against that bound and against Effect's `Pool`.
 */
import type { AdapterId } from "../adapters/index.js"
import * as format from "../format.js"
import { quantiles, summarize } from "../measure.js"
import { runPlan } from "../workload.js"
import { type Measured, Recorder, repeat, type Scenario, withPool } from "./scenario.js"

const sizes = (quick: boolean) => (quick ? { callers: 50, ops: 10 } : { callers: 1_000, ops: 100 })

/** The row the footer measures against the bounds. */
const cistern: AdapterId = "cistern-pool-use"
const handOffFloors: ReadonlyArray<AdapterId> = ["floor-handoff-deferred", "floor-handoff-async"]

const median = (measured: Measured | Error | undefined, metric: string): number | undefined =>
  measured === undefined || measured instanceof Error ? undefined : summarize(measured.values[metric] ?? [])?.median

/** The contended scenario. */
export const contended: Scenario = {
  id: "contended",
  title: (quick) => {
    const { callers, ops } = sizes(quick)
    return `Contended: ${format.integer(callers)} callers × ${ops} leases on a pool of 10, a setImmediate hop inside each use`
  },
  baseline: "effect-pool",
  adapters: [
    "effect-pool",
    "cistern-pool-use",
    "generic-pool",
    "tarn",
    "floor-async-fifo",
    "floor-array",
    ...handOffFloors
  ],
  metrics: [
    { id: "opsPerSec", label: "leases/s (floors: hand-offs/s)", format: format.count },
    { id: "micros", label: "µs per lease (hand-off)", format: format.micros },
    { id: "waitP50", label: "wait p50", format: format.millis },
    { id: "waitP99", label: "wait p99", format: format.millis },
    { id: "waitMax", label: "wait max", format: format.millis },
    { id: "maxOverP50", label: "max ÷ p50", format: format.count },
    { id: "firstDone", label: "first caller done", format: format.percent }
  ],
  run: async (_id, adapter, { quick, repetitions }) => {
    const recorder = new Recorder()
    const { callers, ops } = sizes(quick)
    const leases = callers * ops
    const handOff = adapter.handOff
    if (handOff !== undefined) {
      await handOff(leases / 10)
      recorder.repetitions = await repeat(repetitions, async () => {
        const elapsedMs = await handOff(leases)
        recorder.record({ opsPerSec: (leases * 1000) / elapsedMs, micros: (elapsedMs * 1000) / leases })
      })
      return recorder.measured
    }
    const plan = { callers, opsPerCaller: ops, work: "immediate", recordWaits: true } as const
    const warmUp = { ...plan, opsPerCaller: Math.max(1, ops / 10) }
    await withPool(adapter, { maxPerKey: 10 }, (subject) => runPlan(subject, warmUp))
    recorder.repetitions = await repeat(repetitions, async () => {
      const outcome = await withPool(adapter, { maxPerKey: 10 }, (subject) => runPlan(subject, plan))
      const [p50, p99, max] = quantiles(outcome.waitsMs!, [0.5, 0.99, 1])
      recorder.record({
        opsPerSec: (leases * 1000) / outcome.elapsedMs,
        micros: (outcome.elapsedMs * 1000) / leases,
        waitP50: p50,
        waitP99: p99,
        waitMax: max,
        maxOverP50: max! / p50!,
        firstDone: (100 * Math.min(...outcome.doneAtMs)) / outcome.elapsedMs
      })
    })
    return recorder.measured
  },
  footer: (results) => {
    const ours = median(results.get(cistern), "opsPerSec")
    const effect = median(results.get("effect-pool"), "opsPerSec")
    if (ours === undefined) return []
    const lines = [
      "**Cistern `Pool` against its bounds** (medians of this run). Effect `Pool` is the peer; each wake-up floor " +
        "bounds what any Effect pool can do here: every lease but the first ten reaches a parked caller through one " +
        "hand-off, so leases/s ≤ hand-offs/s (and ≤ half of it counting the wake-up after each lease's " +
        "`setImmediate` hop too). Bound ÷ Cistern ≤ 1.3 is the target.",
      "",
      "| measured against | its figure | Cistern leases/s | ratio |",
      "|---|---:|---:|---:|"
    ]
    if (effect !== undefined) {
      lines.push(
        `| Effect \`Pool\` (leases/s) | ${format.count(effect)} | ${format.count(ours)} | Cistern ÷ Effect ${format.ratio(ours / effect)} |`
      )
    }
    for (const id of handOffFloors) {
      const bound = median(results.get(id), "opsPerSec")
      if (bound === undefined) continue
      const label = id === "floor-handoff-deferred" ? "`Deferred`" : "`Effect.async`"
      lines.push(
        `| ${label} hand-off: 1 per lease | ${format.count(bound)} | ${format.count(ours)} | bound ÷ Cistern ${format.ratio(bound / ours)} |`,
        `| ${label} hand-off: 2 per lease | ${format.count(bound / 2)} | ${format.count(ours)} | bound ÷ Cistern ${format.ratio(bound / 2 / ours)} |`
      )
    }
    return lines
  }
}
