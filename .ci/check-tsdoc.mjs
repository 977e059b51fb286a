// Words a user understands:
// 1. every exported declaration of a public module (packages/*/src/*.ts, not
//    src/internal) has TSDoc with at least one sentence, not only tags;
// 2. public docs (READMEs, docs/*.md, TSDoc and messages in packages/*/src)
//    never cite the project's design notes by number ("seed 001").
// Prints every offence as file:line and exits non-zero when there is one.
// Usage: node .ci/check-tsdoc.mjs
import * as fs from "node:fs"
import * as path from "node:path"
import ts from "typescript"

const root = path.resolve(import.meta.dirname, "..")
const rel = (file) => path.relative(root, file)
const subdirs = (dir) =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => path.join(dir, e.name))
    : []
const walk = (dir, keep) =>
  fs.existsSync(dir)
    ? fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        const full = path.join(dir, e.name)
        if (e.isDirectory()) return e.name === "node_modules" || e.name === "api" ? [] : walk(full, keep)
        return keep(full) ? [full] : []
      })
    : []

const packageDirs = subdirs(path.join(root, "packages")).filter((d) => fs.existsSync(path.join(d, "package.json")))
const publicModules = packageDirs.flatMap((dir) =>
  fs.existsSync(path.join(dir, "src"))
    ? fs
        .readdirSync(path.join(dir, "src"))
        .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
        .map((f) => path.join(dir, "src", f))
    : []
)

// --- 1. Tags-only TSDoc.
const hasExport = (node) => ts.getCombinedModifierFlags(node) & ts.ModifierFlags.Export
const nameOf = (node) => {
  if (ts.isVariableStatement(node)) return node.declarationList.declarations.map((d) => d.name.getText()).join(", ")
  if (ts.isExportDeclaration(node)) return node.exportClause?.getText() ?? "*"
  return node.name?.getText() ?? "(anonymous)"
}
const docOf = (node) => {
  const docs = (node.jsDoc ?? []).filter(ts.isJSDoc)
  return docs.at(-1)
}
const sentenceOf = (doc) => {
  if (doc === undefined) return ""
  const comment = typeof doc.comment === "string" ? doc.comment : (doc.comment ?? []).map((c) => c.getText()).join("")
  return comment.trim()
}

const tagsOnly = []
const undocumented = []
for (const file of publicModules) {
  const source = ts.createSourceFile(file, fs.readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true)
  const visit = (statements, prefix) => {
    for (const node of statements) {
      const exported =
        (ts.isExportDeclaration(node) && node.exportClause !== undefined && node.moduleSpecifier !== undefined) ||
        ((ts.isVariableStatement(node) ||
          ts.isFunctionDeclaration(node) ||
          ts.isClassDeclaration(node) ||
          ts.isInterfaceDeclaration(node) ||
          ts.isTypeAliasDeclaration(node) ||
          ts.isEnumDeclaration(node) ||
          ts.isModuleDeclaration(node)) &&
          hasExport(node))
      if (!exported) continue
      const { line } = source.getLineAndCharacterOfPosition(node.getStart(source))
      const where = `${rel(file)}:${line + 1} ${prefix}${nameOf(node)}`
      const doc = docOf(node)
      if (doc === undefined) undocumented.push(where)
      else if (sentenceOf(doc).length === 0) tagsOnly.push(where)
      // members of an exported namespace are exported declarations too
      if (ts.isModuleDeclaration(node) && node.body && ts.isModuleBlock(node.body)) {
        visit(node.body.statements, `${prefix}${nameOf(node)}.`)
      }
    }
  }
  visit(source.statements, "")
}

// --- 2. Design-note numbers in public words.
const publicText = [
  path.join(root, "README.md"),
  ...packageDirs.map((d) => path.join(d, "README.md")),
  ...subdirs(path.join(root, "examples")).map((d) => path.join(d, "README.md")),
  ...walk(path.join(root, "docs"), (f) => f.endsWith(".md")),
  ...packageDirs.flatMap((d) => walk(path.join(d, "src"), (f) => f.endsWith(".ts")))
].filter((f) => fs.existsSync(f))
const noteRe = /\bseeds?\s*#?\s*0\d\d\b/i
const notes = []
for (const file of publicText) {
  fs.readFileSync(file, "utf8")
    .split("\n")
    .forEach((text, i) => {
      if (noteRe.test(text)) notes.push(`${rel(file)}:${i + 1}: ${text.trim()}`)
    })
}

const report = (title, list) => {
  if (list.length === 0) return
  console.log(`\n${title} (${list.length}):`)
  for (const item of list) console.log(`  ${item}`)
}
report("exported declarations without TSDoc", undocumented)
report("exported declarations whose TSDoc has tags only, no sentence", tagsOnly)
report("design-note numbers in public docs, TSDoc or messages", notes)
const total = undocumented.length + tagsOnly.length + notes.length
if (total > 0) {
  console.log(`\ntsdoc check FAILED: ${total} finding(s)`)
  process.exit(1)
}
console.log(
  `tsdoc check ok: every export of ${publicModules.length} public modules has a sentence; no design-note numbers`
)
