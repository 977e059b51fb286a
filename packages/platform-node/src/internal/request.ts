import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import type { Dispatcher } from "undici"
import type { Connection, RequestOptions } from "../UpstreamPool.js"
import { UpstreamRequestError } from "../UpstreamPool.js"
import { describeKey } from "./upstreamKey.js"
import type { ConnectionImpl, Exchange } from "./upstreamPool.js"

/** One request's state, for the scope it belongs to. */
class ScopedExchange implements Exchange {
  complete = false
  private controller: Dispatcher.DispatchController | undefined = undefined
  private abortReason: Error | undefined = undefined

  onStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.abortReason !== undefined) controller.abort(this.abortReason)
  }
  onEnd(): void {
    this.complete = true
  }
  onError(): void {}

  abort(): void {
    if (this.complete) return
    const reason = new DOMException("the request's scope closed before its response ended", "AbortError")
    if (this.controller !== undefined) this.controller.abort(reason)
    else this.abortReason = reason
  }
}

/** @internal */
export const request = (
  connection: Connection,
  options: RequestOptions
): Effect.Effect<Dispatcher.ResponseData, UpstreamRequestError, Scope.Scope> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.scope, (scope) => {
      const impl = connection as ConnectionImpl
      const exchange = new ScopedExchange()
      impl.exchange = exchange
      // Runs before the lease ends (it was added after it): a response not yet whole is cut, and its
      // connection marked for destruction, before the pool could hand it to anyone else.
      const finalizer = Effect.suspend(() => {
        if (impl.exchange === exchange) impl.exchange = undefined
        if (exchange.complete) return Effect.void
        exchange.abort()
        return impl.invalidate
      })
      return Effect.zipRight(
        Scope.addFinalizer(scope, finalizer),
        restore(
          Effect.async<Dispatcher.ResponseData, UpstreamRequestError>((resume) => {
            impl.dispatcher.request({ ...options, origin: connection.key.origin }, (error, data) => {
              if (error === null) resume(Effect.succeed(data))
              else
                resume(Effect.fail(new UpstreamRequestError({ upstream: describeKey(connection.key), cause: error })))
            })
            return Effect.sync(() => exchange.abort())
          })
        )
      )
    })
  )
