/**
 * The scope an item lives in: a `Scope.CloseableScope` that keeps its
 * finalizers in one field (and a flat array once there are more), for items
 * that usually have one. Effect's own scope keeps them in a `Map` with a
 * fresh key object each — about 300 bytes an item before any finalizer runs,
 * a tenth of what a pool holds for a live key — and an item's scope lives as
 * long as the item.
 *
 * It speaks Effect's scope protocol (the `addFinalizer`, `fork` and `close`
 * methods `Scope.addFinalizer`, `Scope.fork` and `Scope.close` call, and the
 * `state` view `Effect.forkIn` reads), with Effect's semantics: finalizers run
 * once, one after another, last added first, each given the exit the scope
 * closed with; the scope fails with every failure if any failed; a finalizer
 * added after closing runs at once with that exit. `test/ItemScope.test.ts`
 * runs the same operations against Effect's scope and this one and compares.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { pipeArguments } from "effect/Pipeable"
import * as Scope from "effect/Scope"

/** A finalizer added through `Effect.forkIn`, which removes it by its key when the fiber ends first. */
const keyed = Symbol("keyed")

/** Where finalizers after the first go: unkeyed ones as themselves, keyed ones as `[keyed, key, finalizer]`. */
type Entry = Scope.Scope.Finalizer | readonly [typeof keyed, object, Scope.Scope.Finalizer]

/**
 * An item's scope (see the module's comment). Made open; closed once.
 *
 * @internal
 */
export class ItemScope implements Scope.CloseableScope {
  // On the prototype (below), not on every item.
  declare readonly [Scope.ScopeTypeId]: Scope.ScopeTypeId
  declare readonly [Scope.CloseableScopeTypeId]: Scope.CloseableScopeTypeId
  /** The first finalizer added while nothing else was (the common case: an item's one finalizer). */
  private first: Scope.Scope.Finalizer | undefined = undefined
  /** Every later one, in the order added (made on the second). */
  private rest: Array<Entry> | undefined = undefined
  /** The exit it closed with, once closed. */
  private exit: Exit.Exit<unknown, unknown> | undefined = undefined

  get strategy(): ExecutionStrategy.ExecutionStrategy {
    return ExecutionStrategy.sequential
  }

  /**
   * The view of Effect's own scope that `Effect.forkIn` reads and writes
   * (it adds the forked fiber's interruption by a key, and removes it when
   * the fiber ends first). Made only when asked.
   */
  get state():
    | { readonly _tag: "Open"; readonly finalizers: Keyed }
    | { readonly _tag: "Closed"; readonly exit: Exit.Exit<unknown, unknown> } {
    if (this.exit !== undefined) return { _tag: "Closed", exit: this.exit }
    return { _tag: "Open", finalizers: new Keyed(this) }
  }

  /** Effect's scope protocol: called by `Scope.addFinalizer` and `Scope.addFinalizerExit`. */
  addFinalizer(finalizer: Scope.Scope.Finalizer): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.exit !== undefined) return finalizer(this.exit)
      this.add(finalizer)
      return Effect.void
    })
  }

  /** Effect's scope protocol: called by `Scope.fork`. The child closes when this does, and leaves it when closed first. */
  fork(strategy: ExecutionStrategy.ExecutionStrategy): Effect.Effect<Scope.CloseableScope> {
    return Effect.flatMap(Scope.make(strategy), (child) => {
      if (this.exit !== undefined) return Effect.as(Scope.close(child, this.exit), child)
      const key = {}
      this.add([keyed, key, (exit) => Scope.close(child, exit)])
      return Effect.as(
        Scope.addFinalizer(
          child,
          Effect.sync(() => this.remove(key))
        ),
        child
      )
    })
  }

  /** Effect's scope protocol: called by `Scope.close`. Runs the finalizers once, last added first. */
  close(exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.exit !== undefined) return Effect.void
      this.exit = exit
      const finalizers: Array<Scope.Scope.Finalizer> = []
      if (this.rest !== undefined) {
        for (let i = this.rest.length - 1; i >= 0; i--) finalizers.push(finalizerOf(this.rest[i]!))
      }
      if (this.first !== undefined) finalizers.push(this.first)
      this.first = undefined
      this.rest = undefined
      if (finalizers.length === 0) return Effect.void
      return Effect.flatMap(
        Effect.forEach(finalizers, (finalizer) => Effect.exit(finalizer(exit))),
        (exits) => Option.getOrElse(Option.map(Exit.all(exits), Exit.asVoid), () => Exit.void)
      )
    })
  }

  pipe() {
    // biome-ignore lint/complexity/noArguments: pipeArguments reads the arguments object, as Effect's own data types do
    return pipeArguments(this, arguments)
  }

  /** Adds an entry; only the first of all stays out of the array. */
  add(entry: Entry): void {
    if (this.first === undefined && this.rest === undefined && typeof entry === "function") this.first = entry
    else (this.rest ??= []).push(entry)
  }

  /** Removes a keyed entry (a forked fiber or child scope that ended first). */
  remove(key: object): void {
    if (this.exit !== undefined || this.rest === undefined) return
    const at = this.rest.findIndex((entry) => typeof entry !== "function" && entry[1] === key)
    if (at >= 0) this.rest.splice(at, 1)
  }
}

Object.assign(ItemScope.prototype, {
  [Scope.ScopeTypeId]: Scope.ScopeTypeId,
  [Scope.CloseableScopeTypeId]: Scope.CloseableScopeTypeId
})

const finalizerOf = (entry: Entry): Scope.Scope.Finalizer => (typeof entry === "function" ? entry : entry[2])

/** The `finalizers` map `Effect.forkIn` sees on an open item scope. */
class Keyed {
  constructor(private readonly scope: ItemScope) {}

  set(key: object, finalizer: Scope.Scope.Finalizer): void {
    this.scope.add([keyed, key, finalizer])
  }

  delete(key: object): void {
    this.scope.remove(key)
  }
}

/**
 * A new, open item scope.
 *
 * @internal
 */
export const makeItemScope: Effect.Effect<ItemScope> = Effect.sync(() => new ItemScope())
