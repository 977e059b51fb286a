/**
 * Runs one (scenario, adapter) pair and prints what it measured as one JSON
 * line. Started by `main.ts` in a fresh `node --expose-gc` process, so no
 * library inherits another's heap, JIT state or timers.
 *
 *   node --expose-gc --import tsx src/child.ts <scenario> <adapter> <repetitions> [--quick]
 */
import { type AdapterId, adapters } from "./adapters/index.js"
import { scenarios } from "./scenarios/index.js"

const [scenarioId, adapterId, repetitions] = process.argv.slice(2)
const scenario = scenarios.find((s) => s.id === scenarioId)
if (scenario === undefined || !(adapterId! in adapters)) {
  throw new Error(`unknown scenario or adapter: ${scenarioId} ${adapterId}`)
}
const id = adapterId as AdapterId
const measured = await scenario.run(id, adapters[id], {
  quick: process.argv.includes("--quick"),
  repetitions: Number(repetitions)
})
process.stdout.write(`${JSON.stringify(measured)}\n`)
// Some libraries leave timers behind (tarn's reaper, generic-pool's evictor); the result is out.
process.exit(0)
