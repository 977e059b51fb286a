import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"

/** @internal */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

/** @internal */
export interface Options {
  readonly frequencyLabel?: string | undefined
}

type FamilyType = "counter" | "gauge" | "histogram" | "summary"

interface Family {
  readonly name: string
  readonly type: FamilyType
  readonly help: string | undefined
  /** Series by their label set, so the same series is written once. */
  readonly series: Map<string, ReadonlyArray<string>>
}

type Labels = ReadonlyArray<readonly [string, string]>

/** @internal */
export const metricName = (name: string): string => {
  const clean = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return clean === "" || /^[0-9]/.test(clean) ? `_${clean}` : clean
}

/** @internal */
export const labelName = (name: string): string => {
  const clean = name.replace(/[^a-zA-Z0-9_]/g, "_")
  if (clean === "" || /^[0-9]/.test(clean)) return `_${clean}`
  // `__` is reserved for Prometheus' own labels.
  return clean.startsWith("__") ? `tag${clean}` : clean
}

/** @internal */
export const escapeLabelValue = (value: string): string =>
  value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")

/** @internal */
export const escapeHelp = (help: string): string => help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

/** @internal */
export const formatValue = (value: number | bigint): string => {
  if (typeof value === "bigint") return value.toString()
  if (Number.isNaN(value)) return "NaN"
  if (value === Number.POSITIVE_INFINITY) return "+Inf"
  if (value === Number.NEGATIVE_INFINITY) return "-Inf"
  return String(value)
}

const formatLabels = (labels: Labels): string =>
  labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")}}`

const sample = (name: string, labels: Labels, value: number | bigint): string =>
  `${name}${formatLabels(labels)} ${formatValue(value)}`

/**
 * The metric's own tags as Prometheus labels: names made valid, the first of
 * two tags with the same name kept, and tags named like a label the type
 * reserves (`le`, `quantile`) renamed so the series stays valid.
 */
const tagLabels = (tags: ReadonlyArray<{ readonly key: string; readonly value: string }>, reserved: string) => {
  const seen = new Set<string>()
  const labels: Array<readonly [string, string]> = []
  for (const tag of tags) {
    let name = labelName(tag.key)
    if (name === reserved) name = `tag_${name}`
    if (seen.has(name)) continue
    seen.add(name)
    labels.push([name, tag.value])
  }
  return labels.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
}

/** @internal */
export const encode = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>, options?: Options): string => {
  const frequencyLabel = labelName(options?.frequencyLabel ?? "key")
  const families = new Map<string, Family>()

  const add = (name: string, type: FamilyType, help: string | undefined, labels: Labels, lines: Array<string>) => {
    let family = families.get(name)
    if (family === undefined) {
      family = { name, type, help, series: new Map() }
      families.set(name, family)
    } else if (family.type !== type) {
      // Two metrics of different types under one name cannot share a family; the first one stays.
      return
    }
    const id = formatLabels(labels)
    if (!family.series.has(id)) family.series.set(id, lines)
  }

  for (const pair of pairs) {
    const key = pair.metricKey
    const state: unknown = pair.metricState
    const name = metricName(key.name)
    const help = Option.getOrUndefined(key.description)
    if (MetricState.isCounterState(state)) {
      const labels = tagLabels(key.tags, "")
      add(name, "counter", help, labels, [sample(name, labels, state.count)])
    } else if (MetricState.isGaugeState(state)) {
      const labels = tagLabels(key.tags, "")
      add(name, "gauge", help, labels, [sample(name, labels, state.value)])
    } else if (MetricState.isHistogramState(state)) {
      const labels = tagLabels(key.tags, "le")
      const lines: Array<string> = []
      for (const [bound, count] of state.buckets) {
        if (bound === Number.POSITIVE_INFINITY) continue
        lines.push(sample(`${name}_bucket`, [...labels, ["le", formatValue(bound)]], count))
      }
      lines.push(sample(`${name}_bucket`, [...labels, ["le", "+Inf"]], state.count))
      lines.push(sample(`${name}_sum`, labels, state.sum))
      lines.push(sample(`${name}_count`, labels, state.count))
      add(name, "histogram", help, labels, lines)
    } else if (MetricState.isSummaryState(state)) {
      const labels = tagLabels(key.tags, "quantile")
      const lines: Array<string> = []
      for (const [quantile, value] of state.quantiles) {
        lines.push(
          sample(
            name,
            [...labels, ["quantile", formatValue(quantile)]],
            Option.getOrElse(value, () => Number.NaN)
          )
        )
      }
      lines.push(sample(`${name}_sum`, labels, state.sum))
      lines.push(sample(`${name}_count`, labels, state.count))
      add(name, "summary", help, labels, lines)
    } else if (MetricState.isFrequencyState(state)) {
      // Prometheus has no frequency type: each observed word is a counter series.
      const labels = tagLabels(key.tags, frequencyLabel)
      const words = Array.from(state.occurrences.entries()).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      for (const [word, count] of words) {
        const wordLabels: Labels = [...labels, [frequencyLabel, word]]
        add(name, "counter", help, wordLabels, [sample(name, wordLabels, count)])
      }
      if (words.length === 0) add(name, "counter", help, labels, [])
    }
  }

  const out: Array<string> = []
  const names = Array.from(families.keys()).sort()
  for (const name of names) {
    const family = families.get(name)!
    if (family.help !== undefined) out.push(`# HELP ${name} ${escapeHelp(family.help)}`)
    out.push(`# TYPE ${name} ${family.type}`)
    const ids = Array.from(family.series.keys()).sort()
    for (const id of ids) out.push(...family.series.get(id)!)
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`
}

/** @internal */
export const scrape = (options?: Options): Effect.Effect<string> =>
  Effect.map(Metric.snapshot, (pairs) => encode(pairs, options))
