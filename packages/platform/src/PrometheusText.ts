/**
 * Effect metrics in the Prometheus text exposition format (version 0.0.4), so
 * a Prometheus server (or anything that reads its format) can scrape them.
 *
 * | Effect metric | Prometheus |
 * |---|---|
 * | counter | `counter` |
 * | gauge | `gauge` |
 * | histogram | `histogram`: cumulative `_bucket{le="…"}` (ending with `le="+Inf"`), `_sum`, `_count` |
 * | summary | `summary`: `{quantile="…"}` (`NaN` before any sample), `_sum`, `_count` |
 * | frequency | `counter`, one series per observed word, in the label `key` |
 *
 * Metric and label names are made valid (`[a-zA-Z_:][a-zA-Z0-9_:]*`, labels
 * without `:`, names starting with `__` prefixed with `tag`); label values and
 * descriptions are escaped. Families are sorted by name and each has one
 * `# TYPE` line (and a `# HELP` line when the metric has a description). When
 * two metrics of different types share a name, the first one is kept.
 *
 * ```ts
 * import { Effect, Metric } from "effect"
 * import { PrometheusText } from "@cistern/platform"
 *
 * const requests = Metric.counter("http_requests_total", { description: "Requests served" })
 *
 * const text = Effect.zipRight(Metric.increment(requests), PrometheusText.scrape())
 * // # HELP http_requests_total Requests served
 * // # TYPE http_requests_total counter
 * // http_requests_total 1
 * ```
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as MetricPair from "effect/MetricPair"
import * as internal from "./internal/prometheus.js"

/**
 * The `Content-Type` of the exposition.
 *
 * @since 0.1.0
 * @category constants
 */
export const contentType: string = internal.contentType

/**
 * Options of {@link encode} and {@link scrape}: the label a frequency
 * metric's words go in, when `key` already means something else in the
 * dashboards that read them (a tag of the same name is written as `tag_<label>`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The label that holds a frequency metric's words. Default `key`. */
  readonly frequencyLabel?: string | undefined
}

/**
 * Encodes metric pairs (from `Metric.snapshot`) as exposition text, ending
 * with a line feed (or empty when there is no metric).
 *
 * @since 0.1.0
 * @category encoding
 */
export const encode: (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>, options?: Options) => string =
  internal.encode

/**
 * Encodes every metric the application has recorded (`Metric.snapshot`).
 *
 * @since 0.1.0
 * @category encoding
 */
export const scrape: (options?: Options) => Effect.Effect<string> = internal.scrape
