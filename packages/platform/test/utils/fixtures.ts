import { Cause, Effect, HashMap, Layer, List, Logger, LogLevel, Ref, type Scope } from "effect"

/** Counts live resources: how many are alive is a read, not a guess. */
export interface Resources {
  readonly alive: Ref.Ref<number>
  readonly created: Ref.Ref<number>
  readonly acquire: (key: unknown) => Effect.Effect<{ readonly id: number }, never, Scope.Scope>
}

export const makeResources: Effect.Effect<Resources> = Effect.gen(function* () {
  const alive = yield* Ref.make(0)
  const created = yield* Ref.make(0)
  const acquire = () =>
    Effect.acquireRelease(
      Effect.zipRight(
        Ref.update(alive, (n) => n + 1),
        Effect.map(
          Ref.updateAndGet(created, (n) => n + 1),
          (id) => ({ id })
        )
      ),
      () => Ref.update(alive, (n) => n - 1)
    )
  return { alive, created, acquire }
})

/** Lets forked fibers run until they park: no clock involved. */
export const settle = Effect.repeatN(Effect.yieldNow(), 50)

/** Every log line, at every level, with its annotations, spans and cause rendered every way. */
export interface Logs {
  readonly lines: Array<string>
  readonly layer: Layer.Layer<never>
}

export const captureLogs = (): Logs => {
  const lines: Array<string> = []
  const logger = Logger.make<unknown, void>((options) => {
    lines.push(Logger.logfmtLogger.log(options))
    lines.push(JSON.stringify(Logger.structuredLogger.log(options)))
    lines.push(JSON.stringify(HashMap.toEntries(options.annotations)))
    lines.push(
      List.toArray(options.spans)
        .map((s) => s.label)
        .join(" ")
    )
    if (!Cause.isEmpty(options.cause)) {
      lines.push(Cause.pretty(options.cause, { renderErrorCause: true }))
      lines.push(JSON.stringify(options.cause))
    }
  })
  return {
    lines,
    layer: Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(LogLevel.All))
  }
}
