/** Turns measurements into markdown tables: median (min–max) and the ratio to the scenario's baseline. */
import { adapters } from "./adapters/index.js"
import * as format from "./format.js"
import { type Summary, summarize } from "./measure.js"
import type { Measured, Scenario } from "./scenarios/scenario.js"

/** What one scenario measured, by adapter id. */
export type Results = ReadonlyMap<string, Measured | Error>

const cell = (show: (n: number) => string, s: Summary | undefined, base: Summary | undefined): string => {
  if (s === undefined) return "—"
  const spread = s.min === s.max ? "" : ` (${show(s.min)}–${show(s.max)})`
  const ratio = base === undefined || base.median === 0 ? "" : ` ${format.ratio(s.median / base.median)}`
  return `${show(s.median)}${spread}${ratio}`
}

/** The markdown section for one scenario. */
export const table = (scenario: Scenario, results: Results, quick: boolean, repetitions: number): string => {
  const baseline = results.get(scenario.baseline)
  const base = (metric: string) => (baseline instanceof Error ? undefined : summarize(baseline?.values[metric] ?? []))
  const lines = [
    `### ${scenario.title(quick)}`,
    "",
    `Median (min–max) of ${repetitions} timed repetition${repetitions === 1 ? "" : "s"} (fewer where marked); ` +
      `×: ratio to ${adapters[scenario.baseline].label} in this run.`,
    "",
    `| library | ${scenario.metrics.map((m) => m.label).join(" | ")} |`,
    `|---|${scenario.metrics.map(() => "---:").join("|")}|`
  ]
  const notes: Array<string> = []
  for (const [id, measured] of results) {
    const label = adapters[id as keyof typeof adapters].label
    if (measured instanceof Error) {
      lines.push(`| ${label} | ${scenario.metrics.map(() => "failed").join(" | ")} |`)
      notes.push(`${label}: ${measured.message}`)
      continue
    }
    const cells = scenario.metrics.map((m) => cell(m.format, summarize(measured.values[m.id] ?? []), base(m.id)))
    const fewer =
      measured.repetitions < repetitions ? ` (${measured.repetitions} rep${measured.repetitions === 1 ? "" : "s"})` : ""
    lines.push(`| ${label}${fewer} | ${cells.join(" | ")} |`)
    notes.push(...measured.notes)
  }
  if (notes.length > 0) lines.push("", ...notes.map((n) => `- ${n}`))
  const footer = scenario.footer?.(results, { quick, repetitions }) ?? []
  if (footer.length > 0) lines.push("", ...footer)
  return `${lines.join("\n")}\n`
}
