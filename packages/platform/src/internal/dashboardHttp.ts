import { readFile } from "node:fs/promises"
import { createRequire } from "node:module"
import type * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import type * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import { AdminApi, type Authorization, KeyPage, KeyQuery } from "../AdminApi.js"
// Used inside functions only: AdminDashboard imports this module too.
import { contentSecurityPolicy, Dashboard } from "../AdminDashboard.js"
import { readJson } from "./body.js"

const annotations = { package: "@cistern/platform", module: "AdminDashboard" }

const assetHeaders = { "cache-control": "no-cache", "x-content-type-options": "nosniff" }

/** The page's files ship in the package's `dashboard/` folder; uPlot comes from its own npm package. */
const loadAssets = Effect.promise(async () => {
  const folder = new URL("../../dashboard/", import.meta.url)
  const require = createRequire(import.meta.url)
  const [html, js, css, uplotJs, uplotCss] = await Promise.all([
    readFile(new URL("index.html", folder), "utf8"),
    readFile(new URL("app.js", folder), "utf8"),
    readFile(new URL("app.css", folder), "utf8"),
    readFile(require.resolve("uplot/dist/uPlot.iife.min.js"), "utf8"),
    readFile(require.resolve("uplot/dist/uPlot.min.css"), "utf8")
  ])
  return {
    html,
    assets: {
      "app.js": { body: js, contentType: "text/javascript; charset=utf-8" },
      "app.css": { body: css, contentType: "text/css; charset=utf-8" },
      "uplot.js": { body: uplotJs, contentType: "text/javascript; charset=utf-8" },
      "uplot.css": { body: uplotCss, contentType: "text/css; charset=utf-8" }
    }
  } as const
})

const encodeKeyPage = HttpServerResponse.schemaJson(KeyPage)

/** @internal */
export const groupName = "cistern-dashboard"

/** @internal */
export const layerGroup = <ApiId extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, E, R>(
  api: HttpApi.HttpApi<ApiId, Groups, E, R>
): Layer.Layer<HttpApiGroup.ApiGroup<ApiId, "cistern-dashboard">, never, Dashboard | Authorization> =>
  HttpApiBuilder.group(api as unknown as typeof AdminApi, groupName, (handlers) =>
    Effect.gen(function* () {
      const dashboard = yield* Dashboard
      const { html, assets } = yield* loadAssets
      const pageHeaders = {
        "content-security-policy": contentSecurityPolicy,
        "cache-control": "no-store",
        "referrer-policy": "no-referrer",
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY"
      }
      return handlers
        .handleRaw("page", () =>
          Effect.succeed(
            HttpServerResponse.text(html, { contentType: "text/html; charset=utf-8", headers: pageHeaders })
          )
        )
        .handleRaw("asset", ({ path }) => {
          const asset = assets[path.file]
          return Effect.succeed(
            HttpServerResponse.text(asset.body, { contentType: asset.contentType, headers: assetHeaders })
          )
        })
        .handleRaw("events", () =>
          Effect.succeed(
            HttpServerResponse.stream(dashboard.events, {
              contentType: "text/event-stream",
              headers: { "cache-control": "no-store", "x-accel-buffering": "no" }
            })
          )
        )
        .handle("snapshot", () => dashboard.latest)
        .handleRaw("keys", ({ request }) =>
          Effect.gen(function* () {
            const query = yield* readJson(request, KeyQuery)
            const page = yield* dashboard.keys(query)
            return yield* Effect.orDie(encodeKeyPage(page))
          })
        )
    }).pipe(Effect.annotateLogs(annotations))
  ) as any

/** @internal */
export const layer = layerGroup(AdminApi)
