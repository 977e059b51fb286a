/**
 * The engine's modules stay small and their imports point one way: no
 * module of `src/internal/` over ~350 lines, and no import cycle among them,
 * counting type-only imports too (a cycle of types is still a tangle for the
 * reader).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"

const internalDir = path.resolve(__dirname, "../src/internal")
const maxLines = 350

const modules = (dir: string): Array<string> =>
  fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) =>
      entry.isDirectory()
        ? modules(path.join(dir, entry.name))
        : entry.name.endsWith(".ts")
          ? [path.join(dir, entry.name)]
          : []
    )

/** The modules of `src/internal/` a module imports (any kind of import). */
const importsOf = (file: string): Array<string> => {
  const source = fs.readFileSync(file, "utf8")
  const out: Array<string> = []
  for (const match of source.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?\sfrom\s+"(\.[^"]+)"/g)) {
    const target = path.resolve(path.dirname(file), match[1]!.replace(/\.js$/, ".ts"))
    if (target.startsWith(internalDir)) out.push(target)
  }
  return out
}

describe("src/internal structure", () => {
  it(`no module over ${maxLines} lines`, () => {
    const over = modules(internalDir)
      .map((file) => [path.relative(internalDir, file), fs.readFileSync(file, "utf8").split("\n").length] as const)
      .filter(([, lines]) => lines > maxLines)
    assert.deepStrictEqual(over, [])
  })

  it("no import cycle", () => {
    const files = modules(internalDir)
    assert.isTrue(files.length > 10)
    const state = new Map<string, "visiting" | "done">()
    const cycles: Array<string> = []
    const visit = (file: string, trail: Array<string>): void => {
      if (state.get(file) === "done") return
      if (state.get(file) === "visiting") {
        cycles.push([...trail.slice(trail.indexOf(file)), file].map((f) => path.relative(internalDir, f)).join(" → "))
        return
      }
      state.set(file, "visiting")
      for (const next of importsOf(file)) visit(next, [...trail, file])
      state.set(file, "done")
    }
    for (const file of files) visit(file, [])
    assert.deepStrictEqual(cycles, [])
  })
})
