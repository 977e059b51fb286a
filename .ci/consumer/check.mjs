// The consumer check (called by .ci/consumer-check.sh after `pnpm build`).
//
// Packs every non-private package under packages/ the way `pnpm publish` would
// (publishConfig applied, workspace: ranges replaced), inspects the tarballs,
// installs them with plain npm into a scratch project in a temp folder outside
// the workspace, together with the peer versions the workspace is tested with,
// then runs a consumer program with plain node and type-checks a consumer .ts
// file against the packed types with NodeNext and Bundler resolution.
//
// Exits non-zero, naming every problem, when any step fails.
import { execFile, execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"

const execFileAsync = promisify(execFile)
const here = import.meta.dirname
const root = path.resolve(here, "../..")
const problems = []
let checks = 0
const started = Date.now()
let lap = started
const elapsed = () => {
  const now = Date.now()
  const text = `${((now - lap) / 1000).toFixed(1)}s`
  lap = now
  return text
}
const ok = (message) => {
  checks++
  console.log(`  ok  ${message} (${elapsed()})`)
}
const problem = (message) => {
  problems.push(message)
  console.log(`  FAIL ${message}`)
}
const run = (command, args, options = {}) =>
  execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], ...options })
const readJson = (file) => JSON.parse(fs.readFileSync(file, "utf8"))

// --- 1. The published packages: every packages/* with a manifest that is not private.
const packages = fs
  .readdirSync(path.join(root, "packages"))
  .map((name) => path.join(root, "packages", name))
  .filter((dir) => fs.existsSync(path.join(dir, "package.json")))
  .map((dir) => ({ dir, manifest: readJson(path.join(dir, "package.json")) }))
  .filter(({ manifest }) => manifest.private !== true)
  // CISTERN_PACKAGES=@cistern/pool,… narrows the check to some packages (while debugging one)
  .filter(
    ({ manifest }) => !process.env.CISTERN_PACKAGES || process.env.CISTERN_PACKAGES.split(",").includes(manifest.name)
  )
if (packages.length === 0) {
  console.error("consumer check: no published package found under packages/")
  process.exit(1)
}
console.log(`consumer check: ${packages.map((p) => p.manifest.name).join(", ")}`)

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cistern-consumer-"))
const keep = process.env.CISTERN_KEEP_CONSUMER === "1"
process.on("exit", () => {
  if (keep) console.log(`scratch project kept in ${tmp}`)
  else fs.rmSync(tmp, { recursive: true, force: true })
})
const tarballs = path.join(tmp, "tarballs")
fs.mkdirSync(tarballs)

// --- 2. Pack, unpack and inspect each tarball.
const packed = []
try {
  // One pnpm call for all: publishConfig applied and workspace: ranges replaced, as `pnpm publish` does.
  const filters = packages.flatMap(({ manifest }) => ["--filter", manifest.name])
  run("npx", ["-y", "pnpm@10", "-r", ...filters, "pack", "--pack-destination", tarballs], { cwd: root })
} catch (e) {
  problem(`pnpm pack failed\n${e.stderr || e.stdout || e.message}`)
  finish()
}
console.log(`packed in ${elapsed()}`)
for (const { dir, manifest } of packages) {
  const name = manifest.name
  const tarball = `${name.replace(/^@/, "").replace("/", "-")}-${manifest.version}.tgz`
  if (!fs.existsSync(path.join(tarballs, tarball))) {
    problem(`${name}: pnpm pack wrote no ${tarball}`)
    continue
  }
  const unpacked = path.join(tmp, "unpacked", name)
  fs.mkdirSync(unpacked, { recursive: true })
  run("tar", ["-xzf", path.join(tarballs, tarball), "-C", unpacked])
  const pkgRoot = path.join(unpacked, "package")
  const files = listFiles(pkgRoot)
  const published = readJson(path.join(pkgRoot, "package.json"))
  packed.push({ name, dir, manifest, published, tarball: path.join(tarballs, tarball), files })
  console.log(`${name}: ${tarball}, ${files.length} files`)
  inspect(name, manifest, published, pkgRoot, files)
}

function listFiles(dir, prefix = "") {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const rel = prefix + entry.name
    return entry.isDirectory() ? listFiles(path.join(dir, entry.name), `${rel}/`) : [rel]
  })
}

function inspect(name, manifest, published, pkgRoot, files) {
  const fileSet = new Set(files)
  const forbidden = [
    [/(^|\/)test\//, "a test folder"],
    [/\.(test|spec)\.[cm]?[jt]sx?$/, "a test file"],
    [/(^|\/)tsconfig[^/]*\.json$/, "a tsconfig"],
    [/\.tsbuildinfo$/, "a tsbuildinfo"],
    [/^src\//, "a source file"],
    [/(^|\/)internal\/[^/]*\.d\.[cm]?ts$/, "an internal declaration"],
    [/(^|\/)(vitest\.config|docgen\.json|biome\.json)/, "a tool config"]
  ]
  const bad = files.flatMap((f) => forbidden.filter(([re]) => re.test(f)).map(([, what]) => `${f} (${what})`))
  if (bad.length > 0) problem(`${name}: the tarball holds files a user does not need: ${bad.join(", ")}`)
  else ok(`${name}: no tests, tsconfigs, sources or internal declarations in the tarball`)

  for (const required of ["package.json", "README.md", "LICENSE"]) {
    if (!fileSet.has(required)) problem(`${name}: the tarball has no ${required}`)
  }

  const text = JSON.stringify(published)
  if (text.includes("workspace:")) problem(`${name}: the packed manifest still has workspace: ranges`)
  for (const field of ["description", "license", "repository", "engines", "keywords", "sideEffects"]) {
    if (published[field] === undefined) problem(`${name}: the packed manifest has no "${field}"`)
  }
  if (published.type !== "module") problem(`${name}: the packed manifest is not "type": "module"`)

  // Every subpath the workspace exports is exported by the packed manifest, to built files it holds.
  const exportsOf = (m) => (m.exports && typeof m.exports === "object" ? m.exports : {})
  const wanted = Object.keys(exportsOf(manifest))
  const got = exportsOf(published)
  let exportProblems = 0
  for (const subpath of wanted) {
    if (!(subpath in got)) {
      problem(`${name}: "${subpath}" is exported in the workspace but not by the packed manifest`)
      exportProblems++
    }
  }
  for (const [subpath, target] of Object.entries(got)) {
    if (target === null || subpath === "./package.json") continue
    const conditions = typeof target === "string" ? { default: target } : target
    if (typeof conditions.types !== "string") {
      problem(`${name}: "${subpath}" has no "types" condition`)
      exportProblems++
    }
    for (const [condition, file] of Object.entries(conditions)) {
      const rel = String(file).replace(/^\.\//, "")
      if (!rel.startsWith("dist/") || !fileSet.has(rel)) {
        problem(`${name}: "${subpath}" → ${condition} → ${file} is not a built file in the tarball`)
        exportProblems++
      }
    }
  }
  if (got["./internal/*"] !== null) problem(`${name}: "./internal/*" is not closed (null) in the packed manifest`)
  for (const field of ["main", "types"]) {
    if (published[field] !== undefined && !fileSet.has(String(published[field]).replace(/^\.\//, ""))) {
      problem(`${name}: "${field}" → ${published[field]} is not in the tarball`)
      exportProblems++
    }
  }
  if (exportProblems === 0) ok(`${name}: every exported subpath points at built JS and .d.ts in the tarball`)

  // Declarations import only declarations that ship; JS imports only JS that ships.
  const importRe = /(?:from\s+|import\s*\(\s*|import\s+)["']([^"']+)["']/g
  let leaks = 0
  for (const file of files) {
    const isDts = /\.d\.[cm]?ts$/.test(file)
    const isJs = !isDts && /\.[cm]?js$/.test(file)
    if (!isDts && !isJs) continue
    const source = fs.readFileSync(path.join(pkgRoot, file), "utf8")
    for (const match of source.matchAll(importRe)) {
      const specifier = match[1]
      if (!specifier.startsWith(".")) continue
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier))
      const candidates = isDts ? [target.replace(/\.([cm]?)js$/, ".d.$1ts"), `${target}.d.ts`] : [target]
      if (!candidates.some((c) => fileSet.has(c))) {
        const what = /(^|\/)internal\//.test(target)
          ? "an internal module whose declarations are not shipped"
          : "a file not in the tarball"
        problem(`${name}: ${file} imports "${specifier}", ${what}`)
        leaks++
      }
    }
    if (isJs && file.startsWith("dist/") && !fileSet.has(`${file}.map`)) problem(`${name}: ${file} has no source map`)
  }
  if (leaks === 0) ok(`${name}: no public declaration imports an internal one; every relative import ships`)
}

// --- 3. A scratch project outside the workspace: the tarballs plus the peers we support.
const app = path.join(tmp, "app")
fs.mkdirSync(app)
const workspaceVersion = (name, fromDir) => {
  for (const dir of [fromDir, root]) {
    const file = path.join(dir, "node_modules", name, "package.json")
    if (fs.existsSync(file)) return readJson(file).version
  }
  return undefined
}
const dependencies = {}
const overrides = {}
for (const p of packed) {
  const spec = `file:${path.relative(app, p.tarball)}`
  dependencies[p.name] = spec
  overrides[p.name] = spec // a dependency of one Cistern package on another resolves to its tarball, not the registry
}
for (const p of packed) {
  for (const peer of Object.keys(p.published.peerDependencies ?? {})) {
    if (peer in dependencies) continue
    const version = workspaceVersion(peer, p.dir)
    if (version === undefined)
      problem(`${p.name}: peer ${peer} is not installed in the workspace, so its tested version is unknown`)
    else dependencies[peer] = version
  }
}
dependencies["@types/node"] = workspaceVersion("@types/node", root)
fs.writeFileSync(
  path.join(app, "package.json"),
  JSON.stringify({ name: "cistern-consumer", private: true, type: "module", dependencies, overrides }, null, 2)
)
console.log(
  `npm install ${Object.entries(dependencies)
    .map(([n, v]) => (v.startsWith("file:") ? n : `${n}@${v}`))
    .join(" ")}`
)
try {
  run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], { cwd: app })
  ok("npm installs the tarballs with the supported peers")
} catch (e) {
  problem(`npm install failed\n${e.stderr || e.stdout || e.message}`)
  finish()
}

// Every public subpath of every package, for the runtime and type checks.
const entrypoints = packed.flatMap((p) =>
  Object.entries(p.published.exports ?? {})
    .filter(([subpath, target]) => target !== null && subpath !== "./package.json" && !subpath.includes("*"))
    .map(([subpath]) => (subpath === "." ? p.name : `${p.name}/${subpath.slice(2)}`))
)
fs.writeFileSync(path.join(app, "entrypoints.json"), JSON.stringify(entrypoints))

// --- 4. Plain node: every entry point loads; a KeyedPool and a Pool lease and close cleanly.
fs.copyFileSync(path.join(here, "program.mjs"), path.join(app, "program.mjs"))
try {
  const out = run("node", ["program.mjs"], { cwd: app, timeout: 60_000 })
  console.log(out.trimEnd().replace(/^/gm, "  | "))
  ok("plain node runs the consumer program; every finalizer ran")
} catch (e) {
  if (e.stdout) console.log(String(e.stdout).trimEnd().replace(/^/gm, "  | "))
  problem(`node program.mjs failed\n${e.stderr || e.message}`)
}

// CommonJS callers: no CJS build, but require() of ESM works on the Node lines that have it.
if (process.features.require_module) {
  fs.copyFileSync(path.join(here, "require.cjs"), path.join(app, "require.cjs"))
  try {
    console.log(run("node", ["require.cjs"], { cwd: app, timeout: 60_000 }).trimEnd().replace(/^/gm, "  | "))
    ok("a CommonJS program require()s the packages")
  } catch (e) {
    problem(`node require.cjs failed\n${e.stderr || e.stdout || e.message}`)
  }
}

// --- 5. The packed types, as a consumer's compiler sees them (skipLibCheck off).
fs.copyFileSync(path.join(here, "consumer.ts"), path.join(app, "consumer.ts"))
fs.writeFileSync(
  path.join(app, "entrypoints.ts"),
  `${entrypoints.map((spec, i) => `import * as m${i} from "${spec}"`).join("\n")}\n` +
    `export const modules = [${entrypoints.map((_, i) => `m${i}`).join(", ")}] as const\n`
)
const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc")
// The two compilers run side by side: with skipLibCheck off each reads all of effect's declarations.
const typeChecks = [
  ["NodeNext", { module: "NodeNext", moduleResolution: "NodeNext" }],
  ["Bundler", { module: "ESNext", moduleResolution: "Bundler" }]
].map(([label, moduleOptions]) => {
  const config = `tsconfig.${label.toLowerCase()}.json`
  fs.writeFileSync(
    path.join(app, config),
    JSON.stringify(
      {
        compilerOptions: {
          ...moduleOptions,
          target: "ES2022",
          // @effect/platform's own declarations name DOM types (Storage, Transferable): its users need the DOM lib
          lib: ["ES2022", "DOM", "DOM.Iterable"],
          types: ["node"],
          strict: true,
          exactOptionalPropertyTypes: true,
          skipLibCheck: false,
          skipDefaultLibCheck: true, // TypeScript's own lib files are not under test (15% of the CPU)
          noEmit: true
        },
        files: ["consumer.ts", "entrypoints.ts"]
      },
      null,
      2
    )
  )
  return execFileAsync(process.execPath, [tsc, "-p", config], { cwd: app, encoding: "utf8" }).then(
    () => [label, undefined],
    (e) => [label, (e.stdout || e.stderr || e.message).trim()]
  )
})
for (const [label, error] of await Promise.all(typeChecks)) {
  if (error === undefined) ok(`the packed types check with moduleResolution ${label} (skipLibCheck false)`)
  else problem(`tsc with moduleResolution ${label} failed\n${error}`)
}

finish()

function finish() {
  if (problems.length > 0) {
    console.log(`consumer check FAILED: ${problems.length} problem(s), ${checks} check(s) ok`)
    process.exit(1)
  }
  console.log(
    `consumer check ok: ${checks} checks, ${packed.length} package(s), ${((Date.now() - started) / 1000).toFixed(0)}s`
  )
  process.exit(0)
}
