// Docs that cannot rot: every TypeScript sample a user reads is type-checked.
//
// Samples are the ```ts blocks and @example bodies of TSDoc comments in
// packages/*/src, and the ```ts blocks of the READMEs (root, packages/*,
// examples/*) and of the hand-written pages in docs/ (the generated API
// reference in docs/api is left out). Each sample is compiled as its own
// module, as written: it may `declare const connect: …` what it assumes, but
// nothing is added to it. `@cistern/*` imports resolve to the packages' sources;
// everything else resolves from the folder the sample belongs to, so a
// package's README sees that package's dependencies.
//
// Usage: node .ci/check-docs.mjs [--list]   (--list prints every sample found)
import * as fs from "node:fs"
import * as path from "node:path"
import ts from "typescript"

const root = path.resolve(import.meta.dirname, "..")
const rel = (file) => path.relative(root, file)
const listOnly = process.argv.includes("--list")

const dirsUnder = (dir) =>
  fs.existsSync(path.join(root, dir))
    ? fs
        .readdirSync(path.join(root, dir), { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => path.join(root, dir, e.name))
    : []
const walk = (dir, keep) =>
  fs.existsSync(dir)
    ? fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        const full = path.join(dir, e.name)
        if (e.isDirectory()) return e.name === "node_modules" ? [] : walk(full, keep)
        return keep(full) ? [full] : []
      })
    : []

const packageDirs = dirsUnder("packages").filter((d) => fs.existsSync(path.join(d, "package.json")))
const exampleDirs = dirsUnder("examples")

// --- Where samples come from.
const sources = [
  ...packageDirs.flatMap((dir) => walk(path.join(dir, "src"), (f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))),
  path.join(root, "README.md"),
  ...packageDirs.map((d) => path.join(d, "README.md")),
  ...exampleDirs.map((d) => path.join(d, "README.md")),
  ...walk(path.join(root, "docs"), (f) => f.endsWith(".md") && !rel(f).startsWith(`docs${path.sep}api${path.sep}`))
].filter((f) => fs.existsSync(f))

// A sample resolves its imports from the package or example it belongs to.
const ownerOf = (file) => {
  for (const dir of [...packageDirs, ...exampleDirs]) {
    if (file.startsWith(dir + path.sep)) return dir
  }
  return root
}

const isTsFence = (info) => /^(ts|typescript|tsx)$/i.test(info.trim().split(/\s+/)[0] ?? "")

/** Fenced ```ts blocks of some lines: { line (0-based index of the first code line), code } */
const fencedBlocks = (lines) => {
  const blocks = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(lines[i])
    if (!open) continue
    const [, indent, fence, info] = open
    let j = i + 1
    while (j < lines.length && !lines[j].trimStart().startsWith(fence)) j++
    if (isTsFence(info)) {
      blocks.push({
        line: i + 1,
        code: lines.slice(i + 1, j).map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l))
      })
    }
    i = j
  }
  return blocks
}

const samples = []
for (const file of sources) {
  const text = fs.readFileSync(file, "utf8")
  if (file.endsWith(".md")) {
    for (const block of fencedBlocks(text.split("\n"))) samples.push({ file, line: block.line, code: block.code })
    continue
  }
  // TSDoc: every /** … */ comment, its leading " * " stripped, line numbers kept.
  for (const match of text.matchAll(/\/\*\*[\s\S]*?\*\//g)) {
    const startLine = text.slice(0, match.index).split("\n").length - 1
    const lines = match[0]
      .split("\n")
      .map((l, i) => l.replace(i === 0 ? /^\s*\/\*\*\s?/ : /^\s*\*(?!\/)\s?/, "").replace(/\s*\*\/\s*$/, ""))
    const blocks = fencedBlocks(lines)
    for (const block of blocks) samples.push({ file, line: startLine + block.line, code: block.code })
    // An @example without a fence: its body, up to the next tag, is the code.
    for (let i = 0; i < lines.length; i++) {
      if (!/^@example\b/.test(lines[i])) continue
      let j = i + 1
      while (j < lines.length && !/^@\w/.test(lines[j])) j++
      const body = lines.slice(i + 1, j)
      if (body.some((l) => /^\s*(`{3,}|~{3,})/.test(l))) continue // fenced: taken above
      const inline = lines[i].replace(/^@example\s*/, "")
      const code = inline.length > 0 ? [inline, ...body] : body
      if (code.some((l) => l.trim().length > 0)) {
        samples.push({ file, line: startLine + (inline.length > 0 ? i : i + 1), code })
      }
    }
  }
}

if (listOnly) {
  for (const s of samples) console.log(`${rel(s.file)}:${s.line + 1} (${s.code.length} lines)`)
  process.exit(0)
}

// --- One program: every sample a module of its own, in a virtual folder of its owner.
const virtual = new Map()
samples.forEach((sample, i) => {
  const name = `${rel(sample.file).replace(/[^A-Za-z0-9]+/g, "_")}_L${sample.line + 1}_${i}.ts`
  sample.virtualPath = path.join(ownerOf(sample.file), "__doc_samples__", name)
  virtual.set(sample.virtualPath, sample)
})

const paths = {}
for (const dir of packageDirs) {
  const name = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).name
  paths[name] = [path.join(dir, "src", "index.ts")]
  paths[`${name}/*`] = [path.join(dir, "src", "*.ts")]
}
const base = ts.getParsedCommandLineOfConfigFile(
  path.join(root, "tsconfig.base.json"),
  {},
  {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"))
    }
  }
)
const options = {
  ...base.options,
  noEmit: true,
  composite: false,
  incremental: false,
  declaration: false,
  declarationMap: false,
  sourceMap: false,
  emitDeclarationOnly: false,
  // a sample may name things it does not use: it is read, not run
  noUnusedLocals: false,
  noUnusedParameters: false,
  paths
}
const host = ts.createCompilerHost(options)
const sampleText = (file) => `${virtual.get(file).code.join("\n")}\n`
const { fileExists, readFile, getSourceFile } = host
host.fileExists = (file) => virtual.has(file) || fileExists.call(host, file)
host.readFile = (file) => (virtual.has(file) ? sampleText(file) : readFile.call(host, file))
host.getSourceFile = (file, languageVersion, onError, shouldCreate) =>
  virtual.has(file)
    ? ts.createSourceFile(file, sampleText(file), languageVersion, true)
    : getSourceFile.call(host, file, languageVersion, onError, shouldCreate)

const program = ts.createProgram({ rootNames: [...virtual.keys()], options, host })
const failures = new Map()
for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
  const sample = diagnostic.file && virtual.get(diagnostic.file.fileName)
  if (!sample) continue // errors inside the packages' own sources are `pnpm check`'s business
  const { line, character } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0)
  const where = `${rel(sample.file)}:${sample.line + 1 + line}:${character + 1}`
  const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n    ")
  if (!failures.has(sample)) failures.set(sample, [])
  failures.get(sample).push(`${where} - error TS${diagnostic.code}: ${message}`)
}

const files = new Set(samples.map((s) => s.file)).size
if (failures.size === 0) {
  console.log(`docs check ok: ${samples.length} TypeScript samples from ${files} files compile`)
  process.exit(0)
}
for (const [sample, errors] of failures) {
  console.log(`\n${rel(sample.file)}:${sample.line + 1}: this sample does not compile`)
  for (const error of errors) console.log(`  ${error}`)
}
console.log(`\ndocs check FAILED: ${failures.size} of ${samples.length} TypeScript samples do not compile`)
process.exit(1)
