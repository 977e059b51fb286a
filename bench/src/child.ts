/**
 * Runs one (scenario, adapter) pair and prints what it measured as one JSON
 * line. Started by `main.ts` in a fresh `node --expose-gc` process, so no
 * library inherits another's heap, JIT state or timers.
 *
 * The smoke run (`--quick`) passes all of a scenario's adapters at once,
 * comma-separated, and gets one line per adapter: starting a process (tsx,
 * effect, the pool's sources) costs about 3 s of CPU, far more than a
 * quick pair's work, and a smoke run checks that everything runs, not the figures.
 *
 *   node --expose-gc --import tsx src/child.ts <scenario> <adapter>[,<adapter>…] <repetitions> [--quick]
 */
import { type AdapterId, adapters } from "./adapters/index.js"
import { scenarios } from "./scenarios/index.js"

const [scenarioId, adapterIds, repetitions] = process.argv.slice(2)
const scenario = scenarios.find((s) => s.id === scenarioId)
const ids = (adapterIds ?? "").split(",")
if (scenario === undefined || ids.some((id) => !(id in adapters))) {
  throw new Error(`unknown scenario or adapter: ${scenarioId} ${adapterIds}`)
}
for (const id of ids as Array<AdapterId>) {
  const measured = await scenario.run(id, adapters[id], {
    quick: process.argv.includes("--quick"),
    repetitions: Number(repetitions)
  })
  process.stdout.write(`${JSON.stringify({ adapter: id, ...measured })}\n`)
}
// Some libraries leave timers behind (tarn's reaper, generic-pool's evictor); the result is out.
process.exit(0)
