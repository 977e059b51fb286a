import * as PoolRegistry from "@cistern/pool/PoolRegistry"
import type * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import type * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import {
  AdminApi,
  type Authorization,
  CleanupRequest,
  CleanupResult,
  type HealthAuthorization,
  PoolNotFound,
  type PoolView
} from "../AdminApi.js"
// Used inside functions only: AdminDashboard imports this module's neighbours.
import { Dashboard } from "../AdminDashboard.js"
import type { ServerOptions } from "../AdminHttp.js"
import { readJson } from "./body.js"
import * as dashboard from "./dashboard.js"
import * as dashboardHttp from "./dashboardHttp.js"
import { makeChecker } from "./health.js"
import { scrape } from "./prometheus.js"

const annotations = { package: "@cistern/platform", module: "AdminHttp" }

const view = (entry: PoolRegistry.Entry): Effect.Effect<PoolView> =>
  Effect.map(Effect.all([entry.stats, entry.items]), ([stats, items]) => ({ name: entry.name, stats, items }))

const find = (registry: PoolRegistry.Service, name: string): Effect.Effect<PoolRegistry.Entry, PoolNotFound> =>
  Effect.flatMap(
    registry.get(name),
    Option.match({ onNone: () => Effect.fail(new PoolNotFound({ name })), onSome: Effect.succeed })
  )

const encodeCleanupResult = HttpServerResponse.schemaJson(CleanupResult)

/** @internal */
export const groupName = "cistern"

/** @internal */
export const layerGroup = <ApiId extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, E, R>(
  api: HttpApi.HttpApi<ApiId, Groups, E, R>
): Layer.Layer<
  HttpApiGroup.ApiGroup<ApiId, "cistern">,
  never,
  PoolRegistry.PoolRegistry | Authorization | HealthAuthorization
> =>
  HttpApiBuilder.group(api as unknown as typeof AdminApi, groupName, (handlers) =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.PoolRegistry
      const checker = yield* makeChecker
      return handlers
        .handle("listPools", () =>
          registry.list.pipe(
            Effect.flatMap(Effect.forEach(view)),
            Effect.map((pools) => ({ pools }))
          )
        )
        .handle("getPool", ({ path }) => Effect.flatMap(find(registry, path.name), view))
        .handle("listBudgets", () =>
          registry.budgets.pipe(
            Effect.flatMap((budgets) => Effect.all(budgets.map((budget) => budget.stats))),
            Effect.map((budgets) => ({ budgets }))
          )
        )
        .handleRaw("cleanupPool", ({ path, request }) =>
          Effect.gen(function* () {
            // Validate everything before touching the pool: a bad request changes nothing.
            const body = yield* readJson(request, CleanupRequest)
            const entry = yield* find(registry, path.name)
            const report = yield* entry.cleanup
            const stats = yield* entry.stats
            yield* Effect.logInfo("cleanup").pipe(
              Effect.annotateLogs({
                pool: entry.name,
                cleaned: report.cleaned,
                before: report.before,
                after: report.after,
                ...(body.reason === undefined ? {} : { reason: body.reason })
              })
            )
            return yield* Effect.orDie(encodeCleanupResult({ name: entry.name, ...report, stats }))
          }).pipe(Effect.withSpan("AdminHttp.cleanup", { attributes: { "cistern.pool": path.name } }))
        )
        .handle("health", () =>
          registry.list.pipe(
            Effect.flatMap((entries) => Effect.all(entries.map((entry) => entry.stats))),
            Effect.flatMap(checker.check)
          )
        )
        .handle("livez", () => Effect.succeed("ok"))
        .handle("metrics", () =>
          // Reading a pool's stats samples its gauges, so the scrape agrees with `/pools`.
          registry.list.pipe(
            Effect.flatMap((entries) => Effect.forEach(entries, (entry) => entry.stats, { discard: true })),
            Effect.zipRight(scrape())
          )
        )
    }).pipe(Effect.annotateLogs(annotations))
  ) as any

/** @internal */
export const layer = layerGroup(AdminApi)

const pathOf = (url: string): string => {
  const query = url.indexOf("?")
  return query === -1 ? url : url.slice(0, query)
}

/**
 * The platform's own errors (`RouteNotFound`, `RequestError`, ...) hold the
 * request, and a request serialises its original URL, query string included.
 * The log keeps their tag and message only.
 */
class ServerErrorSummary extends Error {
  constructor(error: HttpServerError.HttpServerError) {
    super(error.message)
    this.name = error._tag
    this.stack = `${this.name}: ${this.message}`
  }
}

const summarize = (u: unknown): unknown => (HttpServerError.isServerError(u) ? new ServerErrorSummary(u) : u)

const sanitize = (cause: Cause.Cause<unknown>): Cause.Cause<unknown> =>
  Cause.match(cause, {
    onEmpty: Cause.empty,
    onFail: (error) => Cause.fail(summarize(error)),
    onDie: (defect) => Cause.die(summarize(defect)),
    onInterrupt: Cause.interrupt,
    onSequential: Cause.sequential,
    onParallel: Cause.parallel
  })

/** @internal */
export const logger = <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  Effect.withFiberRuntime((fiber) => {
    const request = Context.unsafeGet(fiber.currentContext, HttpServerRequest.HttpServerRequest)
    const fields = { "http.method": request.method, "http.path": pathOf(request.url) }
    return Effect.flatMap(Effect.exit(app), (exit) => {
      if (exit._tag === "Success") {
        return Effect.zipRight(
          Effect.annotateLogs(Effect.log("Sent HTTP response"), { ...fields, "http.status": exit.value.status }),
          exit
        )
      }
      const [response, cause] = HttpServerError.causeResponseStripped(exit.cause)
      return Effect.zipRight(
        Effect.annotateLogs(
          Effect.log("Sent HTTP response", ...(Option.isSome(cause) ? [sanitize(cause.value)] : [])),
          {
            ...fields,
            "http.status": response.status
          }
        ),
        exit
      )
    })
  })

/** @internal */
export const withoutQuery = <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
  Effect.updateService(app, HttpServerRequest.HttpServerRequest, (request) => {
    const path = pathOf(request.url)
    return path === request.url ? request : request.modify({ url: path })
  })

/** @internal */
export const maxParamLength = 1024

/** @internal */
export const layerServer = (
  options?: ServerOptions
): Layer.Layer<
  Dashboard,
  never,
  | HttpServer.HttpServer
  | HttpRouter.HttpRouter.DefaultServices
  | PoolRegistry.PoolRegistry
  | Authorization
  | HealthAuthorization
> => {
  const api = HttpApiBuilder.api(AdminApi).pipe(Layer.provide(layer), Layer.provide(dashboardHttp.layer))
  const openApiPath = options?.openApiPath ?? "/openapi.json"
  const docsPath = options?.docsPath ?? "/docs"
  const docs = Layer.mergeAll(
    openApiPath === false ? Layer.empty : HttpApiBuilder.middlewareOpenApi({ path: openApiPath }),
    docsPath === false ? Layer.empty : HttpApiSwagger.layer({ path: docsPath })
  )
  return HttpApiBuilder.serve((app) => logger(withoutQuery(app))).pipe(
    Layer.provide(docs),
    Layer.provide(api),
    // find-my-way answers 404 to parameters over 100 characters; let PoolName judge them instead.
    Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: maxParamLength })),
    Layer.provideMerge(Layer.scoped(Dashboard, dashboard.make(options?.dashboard)))
  )
}
