// The Cistern dashboard. Served by the admin API with a Content-Security-Policy that allows
// scripts, styles and connections to this origin only; no build step, no outside network.
// The token lives in sessionStorage and travels only in an Authorization header: the event
// stream is read with fetch (EventSource cannot send headers), never with a token in a URL.
;(() => {
  const storageKey = "cistern-admin-token"
  const pollEvery = 2000
  const reconnectEvery = 5000
  const pageSize = 25
  const historyKept = 300
  const eventsKept = 100

  const $ = (id) => document.getElementById(id)
  const els = {
    status: $("status"),
    banner: $("banner"),
    login: $("login"),
    loginForm: $("login-form"),
    loginError: $("login-error"),
    token: $("token"),
    forget: $("forget"),
    pools: $("pools"),
    budgets: $("budgets"),
    budgetRows: $("budget-rows"),
    eventsPanel: $("events-panel"),
    events: $("events"),
    template: $("pool-template")
  }

  /** name -> the pool's section, charts, chart data and table state */
  const views = new Map()
  /** id -> event, newest kept */
  const events = new Map()
  let stream = null
  let pollTimer = null
  let reconnectTimer = null
  let generation = 0

  const token = () => sessionStorage.getItem(storageKey)
  const authorization = () => ({ authorization: `Bearer ${token()}` })

  // A token in the fragment (#token=…) never reaches the server; keep it and drop it from the address bar.
  const takeTokenFromFragment = () => {
    const match = /(?:^#|&)token=([^&]*)/.exec(location.hash)
    if (match !== null) {
      const value = decodeURIComponent(match[1]).trim()
      if (value !== "") sessionStorage.setItem(storageKey, value)
      history.replaceState(null, "", location.pathname)
    }
  }

  const setStatus = (text, mode) => {
    els.status.textContent = text
    els.status.className = `status ${mode}`
  }

  const showBanner = (text) => {
    els.banner.textContent = text
    els.banner.hidden = text === ""
  }

  const stopAll = () => {
    generation++
    if (stream !== null) stream.abort()
    stream = null
    clearInterval(pollTimer)
    clearTimeout(reconnectTimer)
    pollTimer = null
    reconnectTimer = null
  }

  const showLogin = (message) => {
    stopAll()
    els.login.hidden = false
    els.forget.hidden = true
    els.loginError.textContent = message ?? ""
    els.loginError.hidden = message === undefined
    showBanner("")
    setStatus("signed out", "")
    els.token.value = ""
    els.token.focus()
  }

  const unauthorized = () => {
    sessionStorage.removeItem(storageKey)
    showLogin(
      "The admin API refused this token (401 Unauthorized). Enter the token the server was started with " +
        "(CISTERN_ADMIN_TOKEN)."
    )
  }

  // ---- server-sent events over fetch ------------------------------------------------------

  const readEvents = async (body, onEvent) => {
    const reader = body.getReader()
    const decoder = new TextDecoder()
    let buffer = ""
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      buffer += decoder.decode(value, { stream: true })
      let end = buffer.indexOf("\n\n")
      while (end !== -1) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        let type = "message"
        const data = []
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) type = line.slice(6).trim()
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart())
        }
        if (data.length > 0) onEvent(type, JSON.parse(data.join("\n")))
        end = buffer.indexOf("\n\n")
      }
    }
  }

  const connect = async () => {
    if (token() === null) return showLogin()
    els.login.hidden = true
    els.forget.hidden = false
    const mine = ++generation
    const controller = new AbortController()
    stream = controller
    let response
    try {
      response = await fetch("/dashboard/events", {
        headers: { ...authorization(), accept: "text/event-stream" },
        cache: "no-store",
        signal: controller.signal
      })
    } catch {
      if (mine === generation) streamLost()
      return
    }
    if (response.status === 401) return unauthorized()
    if (!response.ok || response.body === null) return streamLost()
    clearInterval(pollTimer)
    pollTimer = null
    showBanner("")
    setStatus("live", "live")
    try {
      await readEvents(response.body, (type, data) => {
        if (type === "history") applyHistory(data)
        else if (type === "snapshot") applySnapshot(data, "live")
      })
    } catch {
      // the stream broke: fall through
    }
    if (mine === generation) streamLost()
  }

  const streamLost = () => {
    stream = null
    showBanner(`Live updates interrupted: polling every ${pollEvery / 1000} s and reconnecting…`)
    setStatus("polling", "polling")
    if (pollTimer === null) {
      poll()
      pollTimer = setInterval(poll, pollEvery)
    }
    clearTimeout(reconnectTimer)
    reconnectTimer = setTimeout(connect, reconnectEvery)
  }

  const poll = async () => {
    const mine = generation
    try {
      const response = await fetch("/dashboard/snapshot", { headers: authorization(), cache: "no-store" })
      if (response.status === 401) return unauthorized()
      if (response.ok && mine === generation) applySnapshot(await response.json(), "polling")
    } catch {
      setStatus("polling: the admin API does not answer", "polling")
    }
  }

  // ---- data -------------------------------------------------------------------------------

  const clock = (at) => new Date(at).toLocaleTimeString()

  const applyHistory = (history) => {
    for (const { name, points } of history.pools) {
      const view = viewOf(name)
      view.points = points.slice(-historyKept)
    }
    addEvents(history.events)
  }

  const applySnapshot = (snapshot, mode) => {
    setStatus(`${mode} · ${clock(snapshot.at)}`, mode)
    const seen = new Set()
    for (const pool of snapshot.pools) {
      seen.add(pool.name)
      const view = viewOf(pool.name)
      const last = view.points[view.points.length - 1]
      if (last === undefined || last.at < pool.point.at) {
        view.points.push(pool.point)
        if (view.points.length > historyKept) view.points.splice(0, view.points.length - historyKept)
      }
      view.pool = pool
      renderPool(view)
    }
    for (const [name, view] of views) {
      if (!seen.has(name)) {
        view.section.remove()
        views.delete(name)
      }
    }
    if (snapshot.pools.length === 0) {
      els.pools.replaceChildren(
        text("p", "No pool is registered: pools made with a name while a PoolRegistry is provided show here.", "empty")
      )
    } else els.pools.querySelector(".empty")?.remove()
    renderBudgets(snapshot.budgets ?? [])
    addEvents(snapshot.events)
  }

  const addEvents = (list) => {
    let added = false
    for (const event of list) {
      if (!events.has(event.id)) {
        events.set(event.id, event)
        added = true
      }
    }
    if (!added) return
    const ids = Array.from(events.keys()).sort((a, b) => a - b)
    for (const id of ids.slice(0, Math.max(0, ids.length - eventsKept))) events.delete(id)
    renderEvents()
  }

  // ---- rendering --------------------------------------------------------------------------

  const text = (tag, content, className) => {
    const el = document.createElement(tag)
    el.textContent = content
    if (className !== undefined) el.className = className
    return el
  }

  // learning: re-counting after the budget's store lost its data or paused (nothing granted);
  // unavailable: its last call to the store failed.
  const budgetBadge = { ok: "healthy", learning: "degraded", unavailable: "unhealthy" }

  const renderBudgets = (budgets) => {
    els.budgets.hidden = budgets.length === 0
    els.budgetRows.replaceChildren(
      ...budgets.map((b) => {
        const row = document.createElement("tr")
        row.dataset.budget = `${b.name}/${b.instanceId}`
        if (b.waiters > 0) row.className = "waiting"
        const state = document.createElement("td")
        state.append(text("span", b.state, `badge ${budgetBadge[b.state] ?? "degraded"}`))
        row.append(
          text("td", b.name),
          text("td", b.instanceId),
          state,
          // Older senders have no mode: the budget then fails closed, the default.
          text("td", b.mode ?? "fail-closed"),
          text("td", `${b.used} / ${b.limit}`),
          text("td", String(b.held)),
          text("td", String(b.waiters), "waiting"),
          text("td", String(b.wantsElsewhere)),
          text("td", String(b.over)),
          text("td", String(b.granted)),
          text("td", String(b.released)),
          text("td", String(b.exhausted)),
          text("td", String(b.unavailable)),
          text("td", String(b.failOpen ?? 0)),
          text("td", String(b.reclaimed)),
          text("td", String(b.leasesLost)),
          text("td", String(b.pendingReleases))
        )
        return row
      })
    )
  }

  const viewOf = (name) => {
    let view = views.get(name)
    if (view !== undefined) return view
    const section = els.template.content.firstElementChild.cloneNode(true)
    section.dataset.pool = name
    section.querySelector(".pool-name").textContent = name
    els.pools.append(section)
    view = {
      name,
      section,
      points: [],
      pool: null,
      charts: null,
      search: "",
      sort: "attention",
      page: 0,
      remote: null,
      fetching: false
    }
    const search = section.querySelector(".search")
    search.addEventListener("input", () => {
      view.search = search.value.trim()
      view.page = 0
      view.remote = null
      renderKeys(view)
    })
    for (const button of section.querySelectorAll("th button")) {
      button.addEventListener("click", () => {
        view.sort = button.dataset.sort
        view.page = 0
        view.remote = null
        renderKeys(view)
      })
    }
    section.querySelector(".prev").addEventListener("click", () => {
      view.page = Math.max(0, view.page - 1)
      view.remote = null
      renderKeys(view)
    })
    section.querySelector(".next").addEventListener("click", () => {
      view.page++
      view.remote = null
      renderKeys(view)
    })
    views.set(name, view)
    return view
  }

  const totalsShown = [
    ["keys", "keys"],
    ["size", "items"],
    ["idle", "idle"],
    ["inUse", "in use"],
    ["creating", "creating"],
    ["waiting", "waiting"],
    ["timeouts", "timeouts"],
    ["failures", "failed creations"]
  ]

  const renderPool = (view) => {
    const { pool, section } = view
    const status = section.querySelector(".pool-status")
    status.textContent = pool.closed ? "closed" : pool.status
    status.className = `badge pool-status ${pool.status}`
    const circuits = section.querySelector(".pool-circuits")
    circuits.replaceChildren()
    if (pool.circuits.open > 0) circuits.append(text("span", `${pool.circuits.open} circuit open`, "badge open"))
    if (pool.circuits.halfOpen > 0) {
      circuits.append(text("span", `${pool.circuits.halfOpen} half-open`, "badge half-open"))
    }
    const totals = section.querySelector(".totals")
    totals.replaceChildren(
      ...totalsShown.map(([field, label]) => {
        const item = document.createElement("div")
        item.dataset.total = field
        item.append(text("dt", label), text("dd", String(pool.totals[field])))
        return item
      })
    )
    section.querySelector(".reasons").replaceChildren(...pool.reasons.map((reason) => text("li", reason)))
    renderConfig(view)
    renderCharts(view)
    renderKeys(view)
    renderGroups(view)
  }

  // The snapshot carries the busiest groups (capped like keys); "in use" counts those being created too.
  const renderGroups = (view) => {
    const { pool, section } = view
    const box = section.querySelector(".groups")
    const groups = pool.groups ?? []
    box.hidden = pool.groups === undefined
    const total = pool.groupsTotal ?? groups.length
    section.querySelector(".group-count").textContent =
      total > groups.length ? `${groups.length} busiest of ${total} groups` : `${total} groups`
    section.querySelector(".group-table tbody").replaceChildren(
      ...groups.map((group) => {
        const tr = document.createElement("tr")
        tr.dataset.group = group.group
        if (group.max !== null && group.size >= group.max) tr.className = "at-limit"
        tr.append(
          text("td", group.group, "group"),
          text("td", String(group.size - group.idle), "in-use"),
          text("td", String(group.idle), "idle"),
          text("td", String(group.size), "size"),
          text("td", group.max === null ? "unbounded" : String(group.max), "max"),
          text("td", String(group.keys), "keys")
        )
        return tr
      })
    )
  }

  const millis = (value) => {
    if (value === null) return "unbounded"
    if (value % 60000 === 0 && value >= 60000) return `${value / 60000} min`
    if (value % 1000 === 0 && value >= 1000) return `${value / 1000} s`
    return `${value} ms`
  }

  const renderConfig = (view) => {
    const config = view.pool.config
    const rows = Object.entries(config).map(([field, value]) => {
      const tr = document.createElement("tr")
      tr.append(
        text("th", field),
        text("td", field.endsWith("Millis") ? millis(value) : value === null ? "unbounded" : String(value))
      )
      return tr
    })
    view.section.querySelector(".config-table tbody").replaceChildren(...rows)
  }

  // ---- charts (uPlot) ---------------------------------------------------------------------

  const css = getComputedStyle(document.documentElement)
  const color = (name) => css.getPropertyValue(name).trim()

  const chartWidth = (el) => Math.max(300, Math.floor(el.getBoundingClientRect().width))

  const makeCharts = (view) => {
    const occupancyEl = view.section.querySelector(".occupancy")
    const waitsEl = view.section.querySelector(".waits")
    const raw = { idle: [], inUse: [], creating: [], waiting: [] }
    const rawValue = (field) => (_u, value, _series, index) =>
      index === null || index === undefined || value === null ? "–" : String(raw[field][index] ?? "–")
    const area = (label, field, colour) => ({
      label,
      stroke: colour,
      fill: `${colour}cc`,
      width: 1,
      value: rawValue(field),
      points: { show: false }
    })
    // Stacked by hand: each series is the sum of those below it, drawn from the top down.
    const occupancy = new uPlot(
      {
        width: chartWidth(occupancyEl),
        height: 200,
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
        series: [
          {},
          area("waiting", "waiting", color("--waiting")),
          area("creating", "creating", color("--creating")),
          area("in use", "inUse", color("--in-use")),
          area("idle", "idle", color("--idle"))
        ],
        axes: [{}, { label: "items / callers" }]
      },
      [[], [], [], [], []],
      occupancyEl
    )
    const waits = new uPlot(
      {
        width: chartWidth(waitsEl),
        height: 200,
        scales: {
          x: { time: true },
          ms: { range: (_u, _min, max) => [0, Math.max(1, max)] },
          n: { range: (_u, _min, max) => [0, Math.max(1, max)] }
        },
        series: [
          {},
          { label: "p50 ms", scale: "ms", stroke: "#2f6fb6", width: 2, spanGaps: false },
          { label: "p99 ms", scale: "ms", stroke: "#7c3aed", width: 2, spanGaps: false },
          { label: "timeouts", scale: "n", stroke: color("--waiting"), fill: `${color("--waiting")}55`, width: 1 }
        ],
        axes: [{}, { scale: "ms", label: "ms" }, { scale: "n", side: 1, label: "timeouts", grid: { show: false } }]
      },
      [[], [], [], []],
      waitsEl
    )
    return { occupancy, waits, raw, occupancyEl, waitsEl }
  }

  const renderCharts = (view) => {
    if (typeof uPlot === "undefined") return
    if (view.charts === null) view.charts = makeCharts(view)
    const { occupancy, waits, raw } = view.charts
    const points = view.points
    const xs = points.map((p) => p.at / 1000)
    raw.idle = points.map((p) => p.idle)
    raw.inUse = points.map((p) => p.inUse)
    raw.creating = points.map((p) => p.creating)
    raw.waiting = points.map((p) => p.waiting)
    const idle = raw.idle
    const inUse = points.map((p) => p.idle + p.inUse)
    const creating = points.map((p, i) => inUse[i] + p.creating)
    const waiting = points.map((p, i) => creating[i] + p.waiting)
    occupancy.setData([xs, waiting, creating, inUse, idle])
    waits.setData([
      xs,
      points.map((p) => p.waitP50Millis),
      points.map((p) => p.waitP99Millis),
      points.map((p) => p.timeouts)
    ])
  }

  window.addEventListener("resize", () => {
    for (const view of views.values()) {
      if (view.charts === null) continue
      view.charts.occupancy.setSize({ width: chartWidth(view.charts.occupancyEl), height: 200 })
      view.charts.waits.setSize({ width: chartWidth(view.charts.waitsEl), height: 200 })
    }
  })

  // ---- the key table ----------------------------------------------------------------------

  const orders = {
    attention: null,
    key: (a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0),
    inUse: (a, b) => b.inUse - a.inUse || b.waiting - a.waiting,
    waiting: (a, b) => b.waiting - a.waiting || b.inUse - a.inUse,
    failures: (a, b) => b.failures - a.failures || b.timeouts - a.timeouts,
    timeouts: (a, b) => b.timeouts - a.timeouts || b.failures - a.failures
  }

  // Small pools are searched and sorted here; a pool with more keys than a snapshot carries asks the
  // server for each page (POST /dashboard/keys), at most one request in flight per pool.
  const pageOf = (view) => {
    const pool = view.pool
    const complete = pool.keysTotal <= pool.keys.length
    const simple = view.search === "" && view.sort === "attention" && (view.page + 1) * pageSize <= pool.keys.length
    if (complete || simple) {
      let rows = pool.keys
      if (view.search !== "") {
        const needle = view.search.toLowerCase()
        rows = rows.filter((row) => row.key.toLowerCase().includes(needle))
      }
      if (orders[view.sort] !== null) rows = rows.slice().sort(orders[view.sort])
      return { rows: rows.slice(view.page * pageSize, (view.page + 1) * pageSize), matched: rows.length }
    }
    fetchPage(view)
    return view.remote ?? { rows: [], matched: 0, loading: true }
  }

  const fetchPage = async (view) => {
    if (view.fetching) return
    view.fetching = true
    const asked = { search: view.search, sort: view.sort, page: view.page }
    try {
      const response = await fetch("/dashboard/keys", {
        method: "POST",
        headers: { ...authorization(), "content-type": "application/json" },
        body: JSON.stringify({
          pool: view.name,
          ...(asked.search === "" ? {} : { search: asked.search }),
          sort: asked.sort,
          offset: asked.page * pageSize,
          limit: pageSize
        })
      })
      if (response.status === 401) return unauthorized()
      if (response.ok) {
        const page = await response.json()
        if (asked.search === view.search && asked.sort === view.sort && asked.page === view.page) {
          view.remote = { rows: page.rows, matched: page.matched }
          renderKeys(view, true)
        }
      }
    } catch {
      // the next snapshot asks again
    } finally {
      view.fetching = false
    }
  }

  const renderKeys = (view, fromServer) => {
    if (view.pool === null) return
    const page = fromServer === true ? view.remote : pageOf(view)
    const section = view.section
    const pages = Math.max(1, Math.ceil(page.matched / pageSize))
    section.querySelector(".key-count").textContent =
      view.search === "" ? `${view.pool.keysTotal} keys` : `${page.matched} of ${view.pool.keysTotal} keys match`
    section.querySelector(".page").textContent = page.loading ? "loading…" : `page ${view.page + 1} of ${pages}`
    section.querySelector(".prev").disabled = view.page === 0
    section.querySelector(".next").disabled = view.page + 1 >= pages
    for (const button of section.querySelectorAll("th button")) {
      button.classList.toggle("active", button.dataset.sort === view.sort)
    }
    const rows = page.rows.map((row) => {
      const tr = document.createElement("tr")
      tr.dataset.key = row.key
      tr.className = `circuit-${row.breaker}${row.waiting > 0 ? " waiting" : ""}`
      const health = text("td", "", "health")
      health.append(text("span", row.health, `badge ${row.health}`))
      const circuit = text("td", "", "circuit")
      circuit.append(text("span", row.breaker, `badge ${row.breaker === "closed" ? "closed-circuit" : row.breaker}`))
      tr.append(
        text("td", row.key, "key"),
        health,
        circuit,
        text("td", String(row.inUse), "in-use"),
        text("td", String(row.idle), "idle"),
        text("td", String(row.creating), "creating"),
        text("td", String(row.waiting), "waiting"),
        text("td", String(row.max), "max"),
        text("td", String(row.failures), "failures"),
        text("td", String(row.timeouts), "timeouts")
      )
      return tr
    })
    section.querySelector(".key-table tbody").replaceChildren(...rows)
  }

  // ---- events -----------------------------------------------------------------------------

  const renderEvents = () => {
    els.eventsPanel.hidden = false
    const list = Array.from(events.values()).sort((a, b) => b.id - a.id)
    els.events.replaceChildren(
      ...list.map((event) => {
        const li = document.createElement("li")
        li.className = `${event.kind}${event.kind === "circuit" && / open$/.test(event.message) ? " circuit-open" : ""}`
        const time = text("time", clock(event.at))
        time.dateTime = new Date(event.at).toISOString()
        li.append(
          time,
          text("span", event.pool, "event-pool"),
          text("span", ` ${event.kind} `, "kind"),
          text("span", event.message)
        )
        return li
      })
    )
  }

  // ---- start ------------------------------------------------------------------------------

  els.loginForm.addEventListener("submit", (event) => {
    event.preventDefault()
    const value = els.token.value.trim()
    if (value === "") return
    sessionStorage.setItem(storageKey, value)
    els.token.value = ""
    connect()
  })

  els.forget.addEventListener("click", () => {
    sessionStorage.removeItem(storageKey)
    showLogin()
  })

  takeTokenFromFragment()
  connect()
})()
