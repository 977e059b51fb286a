/**
 * A strict reading of the Prometheus text format 0.0.4. The line grammar and
 * the family rules are checked here (every line is a HELP, TYPE or sample
 * line; one TYPE line per family, before its samples, which are contiguous;
 * histogram buckets cumulative and ending with `+Inf` equal to `_count`); the
 * `parse-prometheus-text-format` parser reads it as well, as a second opinion
 * on names, types, help texts and values.
 */
import parse, { type Family } from "parse-prometheus-text-format"

const name = "[a-zA-Z_:][a-zA-Z0-9_:]*"
const labelValue = '"((?:[^"\\\\\\n]|\\\\[\\\\"n])*)"'
const label = `([a-zA-Z_][a-zA-Z0-9_]*)=${labelValue}`
const value = "(?:[+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?|[+-]Inf|NaN)"
const labelsPart = `\\{(?:${label.replace(/\((?!\?)/g, "(?:")}(?:,${label.replace(/\((?!\?)/g, "(?:")})*)?\\}`
const sampleLine = new RegExp(`^(${name})(${labelsPart})? (${value})$`)
const labelPattern = new RegExp(label, "g")
const helpLine = new RegExp(`^# HELP (${name}) (?:[^\\\\\\n]|\\\\[\\\\n])*$`)
const typeLine = new RegExp(`^# TYPE (${name}) (counter|gauge|histogram|summary|untyped)$`)

export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface Exposition {
  readonly families: Array<Family>
  readonly types: ReadonlyMap<string, string>
  readonly samples: ReadonlyArray<Sample>
}

const unescapeLabel = (v: string) => v.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c))

const parseValue = (v: string) =>
  v === "+Inf" ? Number.POSITIVE_INFINITY : v === "-Inf" ? Number.NEGATIVE_INFINITY : Number(v)

const familyOf = (sample: string, types: ReadonlyMap<string, string>): string => {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (sample.endsWith(suffix)) {
      const base = sample.slice(0, -suffix.length)
      const type = types.get(base)
      if (type === "histogram" || (type === "summary" && suffix !== "_bucket")) return base
    }
  }
  return sample
}

const withoutLe = (labels: Readonly<Record<string, string>>) =>
  JSON.stringify(Object.entries(labels).filter(([k]) => k !== "le"))

/** Parses exposition text, throwing on the first thing that breaks the format. */
export const parseStrict = (text: string): Exposition => {
  if (text !== "" && !text.endsWith("\n")) throw new Error("the exposition must end with a line feed")
  const types = new Map<string, string>()
  const closed = new Set<string>()
  const samples: Array<Sample> = []
  let current: string | undefined
  const lines = text === "" ? [] : text.slice(0, -1).split("\n")
  lines.forEach((line, i) => {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`
    const type = typeLine.exec(line)
    if (type !== null) {
      if (types.has(type[1])) throw new Error(`${where}: a second TYPE line for ${type[1]}`)
      types.set(type[1], type[2])
      return
    }
    if (helpLine.test(line)) return
    const sample = sampleLine.exec(line)
    if (sample === null) throw new Error(`${where}: not a HELP, TYPE or sample line`)
    const family = familyOf(sample[1], types)
    if (!types.has(family)) throw new Error(`${where}: a sample before the TYPE line of ${family}`)
    if (family !== current) {
      if (current !== undefined) closed.add(current)
      if (closed.has(family)) throw new Error(`${where}: the samples of ${family} are not contiguous`)
      current = family
    }
    const labels: Record<string, string> = {}
    for (const [, k, v] of (sample[2] ?? "").matchAll(labelPattern)) {
      if (k in labels) throw new Error(`${where}: label ${k} twice`)
      labels[k] = unescapeLabel(v)
    }
    samples.push({ name: sample[1], labels, value: parseValue(sample[3]) })
  })
  for (const [family, type] of types) {
    if (type !== "histogram") continue
    const series = new Map<string, Array<Sample>>()
    for (const s of samples.filter((s) => s.name === `${family}_bucket`)) {
      const id = withoutLe(s.labels)
      series.set(id, [...(series.get(id) ?? []), s])
    }
    for (const [id, buckets] of series) {
      const sorted = buckets.map((b) => [parseValue(b.labels.le), b.value] as const).sort(([a], [b]) => a - b)
      const count = samples.find((s) => s.name === `${family}_count` && withoutLe(s.labels) === id)
      if (sorted.at(-1)?.[0] !== Number.POSITIVE_INFINITY) throw new Error(`${family}${id}: no +Inf bucket`)
      if (count === undefined || sorted.at(-1)?.[1] !== count.value) {
        throw new Error(`${family}${id}: the +Inf bucket is not _count`)
      }
      sorted.forEach(([, n], i) => {
        if (i > 0 && n < sorted[i - 1][1]) throw new Error(`${family}${id}: buckets are not cumulative`)
      })
    }
  }
  return { families: parse(text), types, samples }
}

/** The value of the sample `metric` with exactly these labels. */
export const sampleValue = (
  exposition: Exposition,
  metric: string,
  labels: Record<string, string> = {}
): number | undefined =>
  exposition.samples.find(
    (s) =>
      s.name === metric &&
      Object.keys(s.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  )?.value
