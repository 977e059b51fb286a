/**
 * The service's HTTP API, described once with `@effect/platform`'s `HttpApi`
 * (served by `App.ts`, called by the tests with a derived client):
 *
 * | endpoint | does |
 * |---|---|
 * | `POST /vectors` | stores `{ vectors: [{ label, embedding }] }`, answers `{ ids }` |
 * | `POST /search` | `{ embedding, limit? }` → the closest stored vectors by cosine similarity |
 * | `GET /health` | the health monitor's last results (status, server version, pool stats) |
 * | `GET /stats` | the pool's stats, with the request counter |
 *
 * A request the store cannot serve now (no connection within the acquire
 * timeout, the store unreachable after retries) is answered 503
 * `Unavailable`; a malformed body 400, naming what was wrong.
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { Check } from "./HealthMonitor.js"
import { Stats } from "./VectorPool.js"

/** An embedding: 1 to 2,048 finite numbers. */
export const Embedding = Schema.Array(Schema.Number.pipe(Schema.finite())).pipe(
  Schema.minItems(1, { message: () => "an embedding has at least 1 number" }),
  Schema.maxItems(2048, { message: () => "an embedding has at most 2048 numbers" })
)

/** The body of `POST /vectors`. */
export const InsertRequest = Schema.Struct({
  vectors: Schema.Array(
    Schema.Struct({
      label: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(500)),
      embedding: Embedding
    })
  ).pipe(Schema.minItems(1), Schema.maxItems(1000))
})

/** The ids of the stored vectors, in the order they were sent. */
export const InsertResponse = Schema.Struct({ ids: Schema.Array(Schema.Int) })

/** How many hits `POST /search` answers when the body names no `limit`. */
export const defaultLimit = 5

/** The body of `POST /search`. */
export const SearchRequest = Schema.Struct({
  embedding: Embedding,
  /** How many hits, 1 to 100. Default 5. */
  limit: Schema.optional(Schema.Int.pipe(Schema.between(1, 100)))
})

/** Hits, closest first; only vectors of the query's dimension are compared. */
export const SearchResponse = Schema.Struct({
  results: Schema.Array(Schema.Struct({ id: Schema.Int, label: Schema.String, score: Schema.Number }))
})

/** The health monitor's view. */
export const HealthResponse = Schema.Struct({
  status: Schema.Literal("healthy", "unhealthy", "unknown"),
  /** The newest check's server version, `null` while unknown or unhealthy. */
  version: Schema.NullOr(Schema.String),
  /** The last checks, oldest first. */
  history: Schema.Array(Check)
})

/** The store cannot serve the request now; the reason says why (a pool timeout, an unreachable server). */
export class Unavailable extends Schema.TaggedError<Unavailable>()(
  "Unavailable",
  { reason: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {}

/** The store refused the statement (a bug in the service, not the request). */
export class StoreError extends Schema.TaggedError<StoreError>()(
  "StoreError",
  { reason: Schema.String },
  HttpApiSchema.annotations({ status: 500 })
) {}

/** The vector endpoints. */
export class VectorsGroup extends HttpApiGroup.make("vectors")
  .add(
    HttpApiEndpoint.post("insert", "/vectors")
      .setPayload(InsertRequest)
      .addSuccess(InsertResponse)
      .addError(Unavailable)
      .addError(StoreError)
  )
  .add(
    HttpApiEndpoint.post("search", "/search")
      .setPayload(SearchRequest)
      .addSuccess(SearchResponse)
      .addError(Unavailable)
      .addError(StoreError)
  )
  .add(HttpApiEndpoint.get("health", "/health").addSuccess(HealthResponse))
  .add(HttpApiEndpoint.get("stats", "/stats").addSuccess(Stats)) {}

/** The whole API. */
export class VectorApi extends HttpApi.make("vector-pool").add(VectorsGroup) {}
