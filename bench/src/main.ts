/**
 * `pnpm bench`: runs every (scenario, library) pair in a fresh
 * `node --expose-gc` process and prints the results as markdown.
 *
 *   pnpm bench                  full run (5 timed repetitions each)
 *   pnpm bench -- --quick       smoke run: small sizes, 1 repetition, one process per scenario; checks that it runs, not its numbers
 *   pnpm bench -- --only keyed,idle
 *   pnpm bench -- --only vector  the vector-store example's pooled vs connect-per-request run (needs postgresql)
 */
import { execFileSync, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import * as os from "node:os"
import { fileURLToPath } from "node:url"
import { adapters } from "./adapters/index.js"
import { table } from "./report.js"
import { scenarios } from "./scenarios/index.js"
import type { Measured, Scenario } from "./scenarios/scenario.js"

const benchDir = fileURLToPath(new URL("..", import.meta.url))
const childPath = fileURLToPath(new URL("child.ts", import.meta.url))

const args = process.argv.slice(2)
const quick = args.includes("--quick")
const onlyAt = args.indexOf("--only")
const only = onlyAt < 0 ? undefined : args[onlyAt + 1]?.split(",")
const repetitions = quick ? 1 : 5
/**
 * A pair that runs longer than this is stopped and reported as failed. Generous: on a loaded
 * machine Effect's `Pool` needs over 4 minutes for the contended scenario's 3 repetitions.
 */
const childTimeoutMs = quick ? 60_000 : 600_000

const versionOf = (pkg: string): string =>
  JSON.parse(readFileSync(new URL(`../node_modules/${pkg}/package.json`, import.meta.url), "utf8")).version

/** HEAD, and whether the engine measured differs from it (the bench runs the working tree's sources). */
const commit = (): string => {
  try {
    const git = (...args: Array<string>) => execFileSync("git", args, { cwd: benchDir, encoding: "utf8" }).trim()
    const dirty = git("status", "--porcelain", "--", "../packages") !== ""
    return `${git("rev-parse", "--short", "HEAD")}${dirty ? " + uncommitted changes to packages/" : ""}`
  } catch {
    return "unknown"
  }
}

/**
 * Runs pairs of one scenario in a child process — one pair, or in a smoke run
 * all of them (see `child.ts`); resolves with what each measured, or the
 * reason it failed.
 */
const runChild = (scenario: Scenario, adapterIds: ReadonlyArray<string>): Promise<Map<string, Measured | Error>> =>
  new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        "--expose-gc",
        "--max-old-space-size=8192",
        "--import",
        "tsx",
        childPath,
        scenario.id,
        adapterIds.join(","),
        String(repetitions),
        ...(quick ? ["--quick"] : [])
      ],
      { cwd: benchDir, stdio: ["ignore", "pipe", "inherit"] }
    )
    let stdout = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk
    })
    const timeoutMs = childTimeoutMs * adapterIds.length
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      const results = new Map<string, Measured | Error>()
      for (const line of stdout.split("\n")) {
        if (!line.startsWith("{")) continue
        const { adapter, ...measured } = JSON.parse(line) as Measured & { readonly adapter: string }
        results.set(adapter, measured)
      }
      const failure =
        signal === "SIGKILL"
          ? new Error(`stopped after ${timeoutMs / 1000} s`)
          : new Error(`exited with ${code ?? signal} before reporting`)
      for (const id of adapterIds) if (!results.has(id)) results.set(id, failure)
      resolve(results)
    })
  })

const started = Date.now()
const heading = [
  `## Results${quick ? " (quick smoke run: sizes and repetitions too small to mean anything)" : ""}`,
  "",
  `- date: ${new Date().toISOString().slice(0, 10)}, commit ${commit()}`,
  `- machine: ${os.availableParallelism()} cores (${os.cpus()[0]?.model.trim() ?? "unknown cpu"}), ` +
    `${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}, Node ${process.version}`,
  `- versions: effect ${versionOf("effect")}, @cistern/pool ${versionOf("@cistern/pool")}, ` +
    `generic-pool ${versionOf("generic-pool")}, tarn ${versionOf("tarn")}`,
  `- method: each ${quick ? "scenario" : "(scenario, library)"} in a fresh \`node --expose-gc\` process; a warm-up run, then ` +
    `${repetitions} timed repetition${repetitions === 1 ? "" : "s"}, each on a fresh pool` +
    `${quick ? "" : " (at least 3 where 5 would take over 45 s)"}`,
  `- load average at start: ${os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(", ")}`,
  ""
]
console.log(heading.join("\n"))

let failed = false
for (const scenario of scenarios) {
  if (only !== undefined && !only.includes(scenario.id)) continue
  const results = new Map<string, Measured | Error>()
  // A full run gives each pair a fresh process; a smoke run, each scenario (see `child.ts`).
  const batches = quick ? [scenario.adapters] : scenario.adapters.map((id) => [id])
  for (const batch of batches) {
    const batchStarted = Date.now()
    const measured = await runChild(scenario, batch)
    const what = batch.length === 1 ? adapters[batch[0]!].label : `${batch.length} libraries`
    process.stderr.write(`bench: ${scenario.id} / ${what}: ${(Date.now() - batchStarted) / 1000} s\n`)
    for (const id of batch) {
      const result = measured.get(id)!
      if (result instanceof Error) failed = true
      results.set(id, result)
    }
  }
  console.log(table(scenario, results, quick, repetitions))
}
// A service-level row: a fixed pool of PostgreSQL connections against a new connection per request, from
// the vector-store example (it starts its own throwaway cluster, so it needs Debian's postgresql package).
if (only === undefined || only.includes("vector")) {
  const vectorDir = fileURLToPath(new URL("../../examples/vector-pool/", import.meta.url))
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/bench.ts", ...(quick ? ["--quick"] : [])], {
      cwd: vectorDir,
      stdio: ["ignore", "inherit", "inherit"]
    })
    child.on("exit", resolve)
  })
  if (code !== 0) {
    failed = true
    console.log(`vector-store benchmark failed (exit ${code})`)
  }
}

console.log(
  `Total time: ${Math.round((Date.now() - started) / 1000)} s; ` +
    `load average at the end: ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(", ")}`
)
process.exitCode = failed ? 1 : 0
