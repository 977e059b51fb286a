/**
 * The vector store's SQL: embeddings are `real[]` columns, and similarity is
 * computed by PostgreSQL itself (cosine, over `unnest` of both arrays), so no
 * extension is needed. Every function runs on a connection the caller leased.
 */
import { Effect } from "effect"
import * as Connection from "./Connection.js"

/** One vector to store. */
export interface NewVector {
  readonly label: string
  readonly embedding: ReadonlyArray<number>
}

/** One search hit: cosine similarity in [-1, 1], higher is closer. */
export interface Hit {
  readonly id: number
  readonly label: string
  readonly score: number
}

/** Creates the table if it is missing. Run once at start, not per connection. */
export const migrate = (connection: Connection.Connection) =>
  Connection.query(
    connection,
    `CREATE TABLE IF NOT EXISTS vectors (
       id serial PRIMARY KEY,
       label text NOT NULL,
       embedding real[] NOT NULL
     )`
  )

/** Stores vectors in one statement; returns their ids, in order. */
export const insert = (
  connection: Connection.Connection,
  vectors: ReadonlyArray<NewVector>
): Effect.Effect<ReadonlyArray<number>, Connection.ConnectionError | Connection.QueryError> => {
  const rows = vectors.map((_, i) => `($${2 * i + 1}, $${2 * i + 2}::real[])`).join(", ")
  const values = vectors.flatMap((v) => [v.label, v.embedding])
  return Connection.query<{ id: number }>(
    connection,
    `INSERT INTO vectors (label, embedding) VALUES ${rows} RETURNING id`,
    values
  ).pipe(Effect.map((rows) => rows.map((row) => row.id)))
}

/** The `limit` stored vectors of the same dimension closest to `embedding` by cosine similarity. */
export const search = (
  connection: Connection.Connection,
  embedding: ReadonlyArray<number>,
  limit: number
): Effect.Effect<ReadonlyArray<Hit>, Connection.ConnectionError | Connection.QueryError> =>
  Connection.query<{ id: number; label: string; score: number | null }>(
    connection,
    `SELECT v.id, v.label, s.score
         FROM vectors v,
         LATERAL (
           SELECT sum(a::float8 * b::float8) / NULLIF(sqrt(sum(a::float8 * a)) * sqrt(sum(b::float8 * b)), 0) AS score
             FROM unnest(v.embedding, $1::real[]) AS t(a, b)
         ) s
        WHERE cardinality(v.embedding) = cardinality($1::real[])
        ORDER BY s.score DESC NULLS LAST, v.id
        LIMIT $2`,
    [embedding, limit]
  ).pipe(Effect.map((rows) => rows.map((row) => ({ id: row.id, label: row.label, score: row.score ?? 0 }))))

/** How many vectors are stored. */
export const count = (connection: Connection.Connection) =>
  Connection.query<{ n: number }>(connection, "SELECT count(*)::int AS n FROM vectors").pipe(
    Effect.map((rows) => rows[0].n)
  )
