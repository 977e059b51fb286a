/**
 * An item's scope (`src/internal/shell/itemScope.ts`) keeps its finalizers
 * its own way but must behave as Effect's scope does: the same random
 * programs — finalizers that succeed or fail, forked child scopes closed
 * early or not, fibers forked into the scope that end early or run until
 * interrupted, the close's exit, finalizers added after closing — run
 * against both, and what ran, in which order, with which exit, and how the
 * close ended must be the same.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Chunk, Deferred, Effect, ExecutionStrategy, Exit, Fiber, FastCheck as fc, Layer, Scope } from "effect"
import { ItemScope } from "../src/internal/shell/itemScope.js"

type Op =
  | { readonly _tag: "finalizer"; readonly fails: boolean }
  | { readonly _tag: "child"; readonly closedEarly: boolean }
  | { readonly _tag: "fiber"; readonly endsEarly: boolean }
  | { readonly _tag: "layer" }

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ _tag: fc.constant("finalizer" as const), fails: fc.boolean() }),
  fc.record({ _tag: fc.constant("child" as const), closedEarly: fc.boolean() }),
  fc.record({ _tag: fc.constant("fiber" as const), endsEarly: fc.boolean() }),
  fc.constant({ _tag: "layer" as const })
)

/** An exit as the log records it: success, or its failures and defects in order (interruptions as such). */
const describeExit = (exit: Exit.Exit<unknown, unknown>): string =>
  Exit.isSuccess(exit)
    ? "success"
    : `failure [${[...Cause.failures(exit.cause), ...Cause.defects(exit.cause)].join(", ")}]${Cause.isInterrupted(exit.cause) ? " interrupted" : ""}`

/** Runs the program on a scope made by `make`; returns the log of what ran and how the close ended. */
const run = (
  make: Effect.Effect<Scope.CloseableScope>,
  ops: ReadonlyArray<Op>,
  closeWith: Exit.Exit<unknown, unknown>,
  addedAfter: boolean
): Effect.Effect<ReadonlyArray<string>> =>
  Effect.gen(function* () {
    const log: Array<string> = []
    const scope = yield* make
    for (const [i, step] of ops.entries()) {
      switch (step._tag) {
        case "finalizer":
          yield* Scope.addFinalizerExit(scope, (exit) =>
            Effect.suspend(() => {
              log.push(`finalizer ${i} ${describeExit(exit)}`)
              return step.fails ? Effect.die(`finalizer ${i} failed`) : Effect.void
            })
          )
          break
        case "child": {
          const child = yield* Scope.fork(scope, ExecutionStrategy.sequential)
          yield* Scope.addFinalizerExit(child, (exit) =>
            Effect.sync(() => log.push(`child ${i} ${describeExit(exit)}`))
          )
          if (step.closedEarly) yield* Scope.close(child, Exit.void)
          break
        }
        case "fiber": {
          const started = yield* Deferred.make<void>()
          const fiber = yield* Effect.forkIn(
            Deferred.succeed(started, undefined).pipe(
              Effect.zipRight(step.endsEarly ? Effect.void : Effect.never),
              Effect.onInterrupt(() => Effect.sync(() => log.push(`fiber ${i} interrupted`)))
            ),
            scope
          )
          yield* Deferred.await(started)
          if (step.endsEarly) yield* Fiber.await(fiber)
          break
        }
        case "layer":
          yield* Layer.buildWithScope(
            Layer.scopedDiscard(Effect.addFinalizer(() => Effect.sync(() => log.push(`layer ${i}`)))),
            scope
          )
          break
      }
    }
    const closed = yield* Effect.exit(Scope.close(scope, closeWith))
    log.push(`closed ${describeExit(closed)}`)
    log.push(`closed again ${describeExit(yield* Effect.exit(Scope.close(scope, closeWith)))}`)
    if (addedAfter) {
      yield* Scope.addFinalizerExit(scope, (exit) => Effect.sync(() => log.push(`late ${describeExit(exit)}`)))
      const late = yield* Scope.fork(scope, ExecutionStrategy.sequential)
      yield* Scope.addFinalizer(
        late,
        Effect.sync(() => log.push("late child's finalizer ran at once"))
      )
    }
    return log
  })

describe("ItemScope", () => {
  it("behaves as Effect's scope in every program tried", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { maxLength: 8 }),
        fc.boolean(),
        fc.boolean(),
        async (ops, closeFails, addedAfter) => {
          const closeWith = closeFails ? Exit.fail("closed with a failure") : Exit.void
          const expected = await Effect.runPromise(run(Scope.make(), ops, closeWith, addedAfter))
          const actual = await Effect.runPromise(
            run(
              Effect.sync(() => new ItemScope()),
              ops,
              closeWith,
              addedAfter
            )
          )
          assert.deepStrictEqual(actual, expected)
        }
      ),
      { numRuns: 200 }
    )
  })

  it.effect("fails its close with every finalizer's failure, after running them all", () =>
    Effect.gen(function* () {
      const scope = new ItemScope()
      const ran: Array<number> = []
      for (const i of [1, 2, 3]) {
        yield* Scope.addFinalizer(
          scope,
          Effect.sync(() => ran.push(i)).pipe(Effect.zipRight(i === 2 ? Effect.void : Effect.die(`boom ${i}`)))
        )
      }
      const exit = yield* Effect.exit(Scope.close(scope, Exit.void))
      assert.deepStrictEqual(ran, [3, 2, 1])
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.deepStrictEqual(Chunk.toReadonlyArray(Cause.defects(exit.cause)), ["boom 3", "boom 1"])
      }
    })
  )

  it.effect("serves as the scope of a scoped effect run inside it", () =>
    Effect.gen(function* () {
      const scope = new ItemScope()
      const released: Array<string> = []
      const value = yield* Scope.extend(
        Effect.acquireRelease(Effect.succeed("connection"), (value) => Effect.sync(() => released.push(value))),
        scope
      )
      assert.strictEqual(value, "connection")
      assert.deepStrictEqual(released, [])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(released, ["connection"])
    })
  )
})
