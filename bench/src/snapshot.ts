/**
 * Reads a V8 heap snapshot (`v8.writeHeapSnapshot`) and counts its objects by
 * kind: V8 type and constructor name, and for plain object literals the
 * names of their first properties (so `{ state, commit, … }` is told apart
 * from `{ key, id }`). Used by `heap.ts` to diff two snapshots.
 */
import { readFileSync, rmSync } from "node:fs"

/** How many objects of one kind, and their own (shallow) bytes. */
export interface Tally {
  count: number
  bytes: number
}

interface Snapshot {
  readonly snapshot: {
    readonly meta: {
      readonly node_fields: ReadonlyArray<string>
      readonly node_types: readonly [ReadonlyArray<string>, ...Array<unknown>]
      readonly edge_fields: ReadonlyArray<string>
      readonly edge_types: readonly [ReadonlyArray<string>, ...Array<unknown>]
    }
  }
  readonly nodes: ReadonlyArray<number>
  readonly edges: ReadonlyArray<number>
  readonly strings: ReadonlyArray<string>
}

/** Parses the snapshot at `path` (and deletes the file when asked: they are large). */
export const readSnapshot = (path: string, remove: boolean): Snapshot => {
  const parsed = JSON.parse(readFileSync(path, "utf8")) as Snapshot
  if (remove) rmSync(path)
  return parsed
}

/** Kinds whose name is their content (strings, code): counted by type alone. */
const byTypeOnly = new Set(["string", "concatenated string", "sliced string", "code", "number", "bigint"])

/** Object ids of a snapshot (stable across snapshots of one process). */
export const ids = (s: Snapshot): Set<number> => {
  const size = s.snapshot.meta.node_fields.length
  const idAt = s.snapshot.meta.node_fields.indexOf("id")
  const out = new Set<number>()
  for (let n = 0; n < s.nodes.length; n += size) out.add(s.nodes[n + idAt]!)
  return out
}

/**
 * Counts the snapshot's objects by kind; with `only`, just the objects whose
 * id is not in it (those allocated since), each also by what holds it: the
 * kind of its first strong retainer and the edge's name.
 */
export const tally = (s: Snapshot, old?: Set<number>): Map<string, Tally & { held: Map<string, number> }> => {
  const { node_fields, node_types, edge_fields, edge_types } = s.snapshot.meta
  const nodeSize = node_fields.length
  const edgeSize = edge_fields.length
  const typeAt = node_fields.indexOf("type")
  const nameAt = node_fields.indexOf("name")
  const selfAt = node_fields.indexOf("self_size")
  const edgeCountAt = node_fields.indexOf("edge_count")
  const edgeTypeAt = edge_fields.indexOf("type")
  const edgeNameAt = edge_fields.indexOf("name_or_index")
  const types = node_types[0]
  const propertyEdge = edge_types[0].indexOf("property")
  const { nodes, edges, strings } = s
  const idAt = node_fields.indexOf("id")
  const toAt = edge_fields.indexOf("to_node")
  const weakEdge = edge_types[0].indexOf("weak")
  const out = new Map<string, Tally & { held: Map<string, number> }>()
  const kinds: Array<string> = []
  let edge = 0
  for (let n = 0; n < nodes.length; n += nodeSize) {
    const type = types[nodes[n + typeAt]!]!
    const name = strings[nodes[n + nameAt]!]!
    const edgeCount = nodes[n + edgeCountAt]!
    let kind: string
    if (byTypeOnly.has(type)) {
      kind = type
    } else if (type === "object" && name === "Object") {
      const props: Array<string> = []
      for (let e = edge; e < edge + edgeCount * edgeSize && props.length < 4; e += edgeSize) {
        if (edges[e + edgeTypeAt] === propertyEdge) {
          const prop = strings[edges[e + edgeNameAt]!]!
          if (prop !== "__proto__") props.push(prop)
        }
      }
      kind = `object: { ${props.join(", ")}${props.length === 4 ? ", …" : ""} }`
    } else {
      kind = `${type}: ${name.length > 60 ? `${name.slice(0, 57)}…` : name || "(anonymous)"}`
    }
    edge += edgeCount * edgeSize
    kinds.push(kind)
    if (old?.has(nodes[n + idAt]!)) continue
    const t = out.get(kind)
    const bytes = nodes[n + selfAt]!
    if (t === undefined) out.set(kind, { count: 1, bytes, held: new Map() })
    else {
      t.count++
      t.bytes += bytes
    }
  }
  if (old === undefined) return out
  // First strong retainer of every object (node offset and edge name).
  const count = nodes.length / nodeSize
  const parent = new Int32Array(count).fill(-1)
  const via: Array<string> = new Array(count)
  edge = 0
  for (let n = 0, i = 0; n < nodes.length; n += nodeSize, i++) {
    const edgeCount = nodes[n + edgeCountAt]!
    for (let e = edge; e < edge + edgeCount * edgeSize; e += edgeSize) {
      if (edges[e + edgeTypeAt] === weakEdge) continue
      const to = edges[e + toAt]! / nodeSize
      if (parent[to] !== -1) continue
      const edgeType = edge_types[0][edges[e + edgeTypeAt]!]
      parent[to] = i
      via[to] =
        edgeType === "element" || edgeType === "hidden" ? `[${edgeType}]` : String(strings[edges[e + edgeNameAt]!])
    }
    edge += edgeCount * edgeSize
  }
  // A container says little (a Map's table, an Array's elements): name what holds the container too.
  const containers = /^(object: (Map|Set|WeakMap|Array)|array: |object: system \/ Context)/
  const heldBy = (i: number): string => {
    let path = ""
    for (let depth = 0; depth < 3; depth++) {
      const p = parent[i]!
      if (p === -1) return path === "" ? "(no strong retainer)" : `… → ${path}`
      path = path === "" ? via[i]! : `${via[i]!} → ${path}`
      if (!containers.test(kinds[p]!) || depth === 2) return `${kinds[p]} → ${path}`
      i = p
    }
    return path
  }
  for (let n = 0, i = 0; n < nodes.length; n += nodeSize, i++) {
    if (old.has(nodes[n + idAt]!)) continue
    const held = out.get(kinds[i]!)!.held
    const by = heldBy(i)
    held.set(by, (held.get(by) ?? 0) + nodes[n + selfAt]!)
  }
  return out
}
