import { Effect, Exit, Ref, type Scope } from "effect"

/** A pooled test resource: which key it was made for, and a serial number. */
export interface Conn {
  readonly key: string
  readonly id: number
}

/** Counts what a pool did with its resources: alive is a read, not a guess. */
export interface Resources {
  readonly alive: Ref.Ref<number>
  readonly created: Ref.Ref<number>
  readonly closed: Ref.Ref<ReadonlyArray<number>>
  /** Keys whose next acquisitions fail (the failure carries the key). */
  readonly failing: Ref.Ref<ReadonlySet<string>>
  readonly acquire: (key: string) => Effect.Effect<Conn, ConnectError, Scope.Scope>
}

/** The resource's own typed error. */
export class ConnectError {
  readonly _tag = "ConnectError"
  constructor(readonly key: string) {}
}

/** Makes counting resources whose finalizer records each close exactly as it happens. */
export const makeResources: Effect.Effect<Resources> = Effect.gen(function* () {
  const alive = yield* Ref.make(0)
  const created = yield* Ref.make(0)
  const closed = yield* Ref.make<ReadonlyArray<number>>([])
  const failing = yield* Ref.make<ReadonlySet<string>>(new Set())
  const acquire = (key: string) =>
    Effect.gen(function* () {
      if ((yield* Ref.get(failing)).has(key)) return yield* Effect.fail(new ConnectError(key))
      const id = yield* Ref.updateAndGet(created, (n) => n + 1)
      return yield* Effect.acquireRelease(
        Effect.as(
          Ref.update(alive, (n) => n + 1),
          { key, id } satisfies Conn
        ),
        (conn) =>
          Effect.zipRight(
            Ref.update(alive, (n) => n - 1),
            Ref.update(closed, (ids) => [...ids, conn.id])
          )
      )
    })
  return { alive, created, closed, failing, acquire }
})

/** Lets forked fibers run until they park: no clock involved. */
export const settle = Effect.repeatN(Effect.yieldNow(), 50)

/** Whether an exit failed with a typed error of the given tag. */
export const failedWith = (exit: Exit.Exit<unknown, unknown>, tag: string): boolean =>
  Exit.isFailure(exit) &&
  exit.cause._tag === "Fail" &&
  typeof exit.cause.error === "object" &&
  exit.cause.error !== null &&
  (exit.cause.error as { _tag?: string })._tag === tag
