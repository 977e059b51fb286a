/**
 * The kernel (`src/internal/kernel/`) decides and the shell acts: the kernel
 * must not import `effect` at run time, directly or through a module it
 * imports, so a later Effect 4 line can share it and a test can drive it with
 * a plain loop. Type-only imports are erased and allowed.
 */

import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"

const kernelDir = path.resolve(__dirname, "../src/internal/kernel")

/** The specifiers a module imports at run time (skipping `import type` and `export type`). */
const runtimeImports = (source: string): Array<string> => {
  const out: Array<string> = []
  const statement = /(?:^|\n)\s*(import|export)\s+(type\s+)?([^;]*?)\s+from\s+"([^"]+)"/g
  for (const match of source.matchAll(statement)) {
    if (match[2] !== undefined) continue
    // `import { type A, type B } from "x"` is erased too.
    const names = match[3]
      .replace(/^\{|\}$/g, "")
      .split(",")
      .map((name) => name.trim())
      .filter((name) => name !== "")
    if (match[3].startsWith("{") && names.every((name) => name.startsWith("type "))) continue
    out.push(match[4])
  }
  for (const match of source.matchAll(/(?:^|\n)\s*import\s+"([^"]+)"/g)) out.push(match[1])
  return out
}

/** Every file the kernel reaches through run-time imports, with what each imports from outside the package. */
const reach = (): Map<string, Array<string>> => {
  const seen = new Map<string, Array<string>>()
  const todo = fs
    .readdirSync(kernelDir)
    .filter((file) => file.endsWith(".ts"))
    .map((file) => path.join(kernelDir, file))
  while (todo.length > 0) {
    const file = todo.pop()!
    if (seen.has(file)) continue
    const external: Array<string> = []
    seen.set(file, external)
    for (const specifier of runtimeImports(fs.readFileSync(file, "utf8"))) {
      if (specifier.startsWith(".")) todo.push(path.resolve(path.dirname(file), specifier.replace(/\.js$/, ".ts")))
      else external.push(specifier)
    }
  }
  return seen
}

describe("Kernel purity", () => {
  it("the kernel's modules exist and reach no run-time import of effect", () => {
    const reached = reach()
    assert.isTrue(reached.size > 0)
    const offending = [...reached].filter(([, external]) =>
      external.some((name) => name === "effect" || name.startsWith("effect/"))
    )
    assert.deepStrictEqual(
      offending.map(([file, external]) => `${path.relative(kernelDir, file)}: ${external.join(", ")}`),
      []
    )
  })

  it("detects a run-time import but not a type-only one", () => {
    assert.deepStrictEqual(runtimeImports(`import * as Effect from "effect/Effect"\n`), ["effect/Effect"])
    assert.deepStrictEqual(runtimeImports(`import type { Occupancy } from "../../PoolError.js"\n`), [])
    assert.deepStrictEqual(runtimeImports(`import { type A, type B } from "./x.js"\n`), [])
    assert.deepStrictEqual(runtimeImports(`import { type A, b } from "./x.js"\n`), ["./x.js"])
  })
})
