import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type { Item, Ledger } from "../resource.js"

/**
 * Builds an Effect pool in a scope of its own, so a promise-driven benchmark
 * can close it when a repetition ends.
 */
export const buildScoped = async <A>(
  build: Effect.Effect<A, never, Scope.Scope>
): Promise<{ readonly value: A; readonly close: () => Promise<void> }> => {
  const scope = Effect.runSync(Scope.make())
  const value = await Effect.runPromise(Scope.extend(build, scope))
  return { value, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** The `acquire` every Effect pool gets: an item whose finalizer records its destruction. */
export const acquireItem =
  (ledger: Ledger) =>
  (key: number): Effect.Effect<Item, never, Scope.Scope> =>
    Effect.acquireRelease(
      Effect.sync(() => ledger.create(key)),
      () => Effect.sync(() => ledger.destroy())
    )
