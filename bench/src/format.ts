/** How figures are printed: three significant digits and a unit. */

const sig = (n: number): string => {
  if (n === 0) return "0"
  const abs = Math.abs(n)
  if (abs >= 100) return n.toFixed(0)
  if (abs >= 10) return n.toFixed(1)
  if (abs >= 1) return n.toFixed(2)
  return n.toPrecision(2)
}

/** An exact integer with separators: 100,000. */
export const integer = (n: number): string => Math.round(n).toLocaleString("en-US")

/** A ratio: ×1.23, ×0.0456, ×4.3e-6. */
export const ratio = (r: number): string =>
  `×${r !== 0 && (Math.abs(r) < 0.001 || Math.abs(r) >= 1e5) ? r.toExponential(1) : r.toPrecision(3)}`

/** A plain count: 1,234 / 12.3k / 1.23M. */
export const count = (n: number): string =>
  Math.abs(n) >= 1e6
    ? `${sig(n / 1e6)}M`
    : Math.abs(n) >= 1e4
      ? `${sig(n / 1e3)}k`
      : Math.round(n).toLocaleString("en-US")

/** Milliseconds, switching to µs and s where they read better. */
export const millis = (ms: number): string =>
  ms < 1 ? `${sig(ms * 1000)} µs` : ms < 1000 ? `${sig(ms)} ms` : `${sig(ms / 1000)} s`

/** Microseconds. */
export const micros = (us: number): string => `${sig(us)} µs`

/** Bytes as B / KB / MB / GB (binary). */
export const bytes = (n: number): string => {
  const abs = Math.abs(n)
  if (abs >= 2 ** 30) return `${sig(n / 2 ** 30)} GiB`
  if (abs >= 2 ** 20) return `${sig(n / 2 ** 20)} MiB`
  if (abs >= 2 ** 10) return `${sig(n / 2 ** 10)} KiB`
  return `${Math.round(n)} B`
}

/** A percentage given as a fraction or already in percent. */
export const percent = (p: number): string => `${sig(p)} %`
