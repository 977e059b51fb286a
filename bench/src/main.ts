/**
 * `pnpm bench`: runs every (scenario, library) pair in a fresh
 * `node --expose-gc` process and prints the results as markdown.
 *
 *   pnpm bench                  full run (5 timed repetitions each)
 *   pnpm bench -- --quick       smoke run: small sizes, 1 repetition; checks that it runs, not its numbers
 *   pnpm bench -- --only keyed,idle
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
/** A pair that runs longer than this is stopped and reported as failed. */
const childTimeoutMs = quick ? 60_000 : 240_000

const versionOf = (pkg: string): string =>
  JSON.parse(readFileSync(new URL(`../node_modules/${pkg}/package.json`, import.meta.url), "utf8")).version

const commit = (): string => {
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: benchDir, encoding: "utf8" }).trim()
  } catch {
    return "unknown"
  }
}

/** Runs one pair in a child process; resolves with what it measured, or the reason it failed. */
const runChild = (scenario: Scenario, adapterId: string): Promise<Measured | Error> =>
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
        adapterId,
        String(repetitions),
        ...(quick ? ["--quick"] : [])
      ],
      { cwd: benchDir, stdio: ["ignore", "pipe", "inherit"] }
    )
    let stdout = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk
    })
    const timer = setTimeout(() => child.kill("SIGKILL"), childTimeoutMs)
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      const last = stdout.trim().split("\n").pop() ?? ""
      if (code === 0 && last.startsWith("{")) resolve(JSON.parse(last) as Measured)
      else if (signal === "SIGKILL") resolve(new Error(`stopped after ${childTimeoutMs / 1000} s`))
      else resolve(new Error(`exited with ${code ?? signal}`))
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
  `- method: each (scenario, library) in a fresh \`node --expose-gc\` process; a warm-up run, then ` +
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
  for (const id of scenario.adapters) {
    const pairStarted = Date.now()
    const measured = await runChild(scenario, id)
    process.stderr.write(`bench: ${scenario.id} / ${adapters[id].label}: ${(Date.now() - pairStarted) / 1000} s\n`)
    if (measured instanceof Error) failed = true
    results.set(id, measured)
  }
  console.log(table(scenario, results, quick, repetitions))
}
console.log(
  `Total time: ${Math.round((Date.now() - started) / 1000)} s; ` +
    `load average at the end: ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(", ")}`
)
process.exitCode = failed ? 1 : 0
