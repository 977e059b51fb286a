import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric, MetricBoundaries } from "effect"
import { PrometheusText } from "../src/index.js"
import { parseStrict, sampleValue } from "./utils/prometheus.js"

/** Each test records into metrics of its own names: the registry is global. */
const scrapeOnly = (prefix: string) =>
  Effect.map(Metric.snapshot, (pairs) =>
    PrometheusText.encode(pairs.filter((p) => p.metricKey.name.startsWith(prefix)))
  )

describe("PrometheusText", () => {
  it.effect("encodes counters and gauges with HELP and TYPE lines, sorted, ending with a line feed", () =>
    Effect.gen(function* () {
      const requests = Metric.counter("t1_requests_total", { description: "Requests served" })
      yield* Metric.incrementBy(requests.pipe(Metric.tagged("route", "/b")), 3)
      yield* Metric.incrementBy(requests.pipe(Metric.tagged("route", "/a")), 2)
      yield* Metric.set(Metric.gauge("t1_in_flight"), 7)
      yield* Metric.incrementBy(Metric.counter("t1_big", { bigint: true }), BigInt("9007199254740993"))
      const text = yield* scrapeOnly("t1_")
      assert.strictEqual(
        text,
        [
          "# TYPE t1_big counter",
          "t1_big 9007199254740993",
          "# TYPE t1_in_flight gauge",
          "t1_in_flight 7",
          "# HELP t1_requests_total Requests served",
          "# TYPE t1_requests_total counter",
          't1_requests_total{route="/a"} 2',
          't1_requests_total{route="/b"} 3',
          ""
        ].join("\n")
      )
      const exposition = parseStrict(text)
      assert.strictEqual(sampleValue(exposition, "t1_requests_total", { route: "/b" }), 3)
      assert.strictEqual(exposition.families.find((f) => f.name === "t1_requests_total")?.help, "Requests served")
    })
  )

  it.effect("encodes histograms as cumulative _bucket{le} series ending with +Inf, then _sum and _count", () =>
    Effect.gen(function* () {
      const waits = Metric.histogram("t2_wait_seconds", MetricBoundaries.fromIterable([0.01, 0.1, 1]), "Wait")
      yield* Effect.forEach([0.005, 0.05, 0.05, 0.5, 5], (v) =>
        Metric.update(waits.pipe(Metric.tagged("pool", "p")), v)
      )
      const text = yield* scrapeOnly("t2_")
      assert.strictEqual(
        text,
        [
          "# HELP t2_wait_seconds Wait",
          "# TYPE t2_wait_seconds histogram",
          't2_wait_seconds_bucket{pool="p",le="0.01"} 1',
          't2_wait_seconds_bucket{pool="p",le="0.1"} 3',
          't2_wait_seconds_bucket{pool="p",le="1"} 4',
          't2_wait_seconds_bucket{pool="p",le="+Inf"} 5',
          't2_wait_seconds_sum{pool="p"} 5.605',
          't2_wait_seconds_count{pool="p"} 5',
          ""
        ].join("\n")
      )
      const exposition = parseStrict(text)
      assert.deepStrictEqual(exposition.families[0].metrics[0].buckets, {
        "0.01": "1",
        "0.1": "3",
        "1": "4",
        "+Inf": "5"
      })
      assert.strictEqual(sampleValue(exposition, "t2_wait_seconds_sum", { pool: "p" }), 5.605)
    })
  )

  it.effect("encodes summaries with quantile series (NaN before any sample), _sum and _count", () =>
    Effect.gen(function* () {
      const summary = Metric.summary({
        name: "t3_latency",
        maxAge: "1 minute",
        maxSize: 100,
        error: 0.01,
        quantiles: [0.5, 0.9]
      })
      const empty = Metric.summary({ name: "t3_empty", maxAge: "1 minute", maxSize: 10, error: 0.01, quantiles: [0.5] })
      yield* Metric.update(empty, 1).pipe(Effect.when(() => false))
      yield* Effect.forEach([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], (v) => Metric.update(summary, v))
      yield* Metric.value(empty)
      const text = yield* scrapeOnly("t3_")
      const { families } = parseStrict(text)
      const latency = families.find((f) => f.name === "t3_latency")!
      assert.strictEqual(latency.type, "SUMMARY")
      assert.deepStrictEqual(latency.metrics[0].count, "10")
      assert.deepStrictEqual(latency.metrics[0].sum, "55")
      assert.deepStrictEqual(Object.keys(latency.metrics[0].quantiles ?? {}), ["0.5", "0.9"])
      assert.include(text, 't3_empty{quantile="0.5"} NaN')
      assert.include(text, "t3_empty_count 0")
    })
  )

  it.effect("encodes a frequency as a counter with one series per word", () =>
    Effect.gen(function* () {
      const outcomes = Metric.frequency("t4_outcomes", { description: "How leases ended" })
      yield* Effect.forEach(["ok", "ok", "timeout", "ok"], (word) => Metric.update(outcomes, word))
      const text = yield* scrapeOnly("t4_")
      assert.strictEqual(
        text,
        [
          "# HELP t4_outcomes How leases ended",
          "# TYPE t4_outcomes counter",
          't4_outcomes{key="ok"} 3',
          't4_outcomes{key="timeout"} 1',
          ""
        ].join("\n")
      )
      parseStrict(text)
      const renamed = PrometheusText.encode(
        (yield* Metric.snapshot).filter((p) => p.metricKey.name === "t4_outcomes"),
        { frequencyLabel: "outcome" }
      )
      assert.include(renamed, 't4_outcomes{outcome="ok"} 3')
    })
  )

  it.effect("escapes label values and HELP text, and makes metric and label names valid", () =>
    Effect.gen(function* () {
      const gauge = Metric.gauge("t5.weird-name", { description: 'back\\slash and\nnewline "quoted"' }).pipe(
        Metric.tagged("key", 'o"brien\\path\nnext'),
        Metric.tagged("0bad-label", "x"),
        Metric.tagged("__reserved", "y")
      )
      yield* Metric.set(gauge, 1.5)
      yield* Metric.set(Metric.gauge("7t5_starts_with_digit"), 2)
      const pairs = (yield* Metric.snapshot).filter((p) => p.metricKey.name.includes("t5"))
      const text = PrometheusText.encode(pairs)
      assert.include(text, '# HELP t5_weird_name back\\\\slash and\\nnewline "quoted"\n')
      assert.include(text, 't5_weird_name{_0bad_label="x",key="o\\"brien\\\\path\\nnext",tag__reserved="y"} 1.5\n')
      assert.include(text, "_7t5_starts_with_digit 2\n")
      const exposition = parseStrict(text)
      assert.strictEqual(
        sampleValue(exposition, "t5_weird_name", { _0bad_label: "x", key: 'o"brien\\path\nnext', tag__reserved: "y" }),
        1.5
      )
      assert.strictEqual(
        exposition.families.find((f) => f.name === "t5_weird_name")?.help,
        'back\\slash and\nnewline "quoted"'
      )
    })
  )

  it.effect("keeps one type per name and renames tags that collide with le or quantile", () =>
    Effect.gen(function* () {
      yield* Metric.increment(Metric.tagged(Metric.counter("t6_same"), "a", "1"))
      yield* Metric.set(Metric.gauge("t6_same").pipe(Metric.tagged("a", "2")), 5)
      yield* Metric.update(
        Metric.histogram("t6_hist", MetricBoundaries.fromIterable([1])).pipe(Metric.tagged("le", "mine")),
        0.5
      )
      const text = yield* scrapeOnly("t6_")
      const exposition = parseStrict(text)
      assert.deepStrictEqual(
        exposition.samples.filter((s) => s.name === "t6_same"),
        [{ name: "t6_same", labels: { a: "1" }, value: 1 }]
      )
      assert.include(text, 't6_hist_bucket{tag_le="mine",le="1"} 1')
    })
  )

  it.effect("writes infinities and NaN the way Prometheus reads them, and nothing for no metric", () =>
    Effect.gen(function* () {
      yield* Metric.set(Metric.gauge("t7_pos"), Number.POSITIVE_INFINITY)
      yield* Metric.set(Metric.gauge("t7_neg"), Number.NEGATIVE_INFINITY)
      yield* Metric.set(Metric.gauge("t7_nan"), Number.NaN)
      yield* Metric.set(Metric.gauge("t7_small"), 1e-7)
      const exposition = parseStrict(yield* scrapeOnly("t7_"))
      assert.deepStrictEqual(
        exposition.samples.map((s) => [s.name, s.value]),
        [
          ["t7_nan", Number.NaN],
          ["t7_neg", Number.NEGATIVE_INFINITY],
          ["t7_pos", Number.POSITIVE_INFINITY],
          ["t7_small", 1e-7]
        ]
      )
      assert.strictEqual(PrometheusText.encode([]), "")
      assert.strictEqual(PrometheusText.contentType, "text/plain; version=0.0.4; charset=utf-8")
    })
  )
})
