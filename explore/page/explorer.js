// The Fovea explorer's page: reads the JSON that write_explorer (explore/explorer.cpp) embedded,
// and draws the graph, its passes, the memory plan, the profile and the values. Plain browser
// JavaScript with no build step; the layout engine is dagre (window.dagre), embedded beside it.
//
// The data (keys of one node record, which explorer.cpp documents too):
//   n name, o op, s scope, r role (0 forward, 1 backward, 2 update), i inputs ("name" or
//   "name:k" for output k), t output types, a attributes, w file:line, g the forward node whose
//   gradient rule built it, c [FLOPs, bytes].
// DATA.stages[0].add holds every node of the first stage; every later stage lists what it added
// or rewrote ("add", "changed") and what it removed ("del").
'use strict';

const DATA = JSON.parse(document.getElementById('fovea-data').textContent);
const SOURCE_OPS = new Set(['placeholder', 'parameter', 'state', 'constant']);
const ROLE_NAMES = ['forward', 'backward', 'optimizer update'];

// What the reader is looking at.
const view = {
  tab: 'graph',
  stage: DATA.stages.length - 1,
  expanded: new Set(),  // scopes drawn open
  selected: null,       // a node name, or 'scope:<path>' for a folded box
  transform: {x: 0, y: 0, k: 1},
  layout: null,  // the last layout: items and clusters with their positions
  memorySelected: -1,
};

// ---------------------------------------------------------------------------------------------
// Small helpers.

const $ = (id) => document.getElementById(id);
function esc(text) {
  return String(text).replace(
      /[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', '\'': '&#39;'}[c]));
}
function producerName(label) {
  const colon = label.lastIndexOf(':');
  return colon > 0 && /^\d+$/.test(label.slice(colon + 1)) ? label.slice(0, colon) : label;
}
function leaf(name) { return name.slice(name.lastIndexOf('/') + 1); }
function scopePrefixes(scope) {
  if (!scope) return [];
  const parts = scope.split('/'), out = [];
  for (let i = 0; i < parts.length; ++i) out.push(parts.slice(0, i + 1).join('/'));
  return out;
}
function fmtBytes(b) {
  if (b >= 1 << 30) return (b / (1 << 30)).toFixed(2) + ' GiB';
  if (b >= 1 << 20) return (b / (1 << 20)).toFixed(2) + ' MiB';
  if (b >= 1 << 10) return (b / (1 << 10)).toFixed(1) + ' KiB';
  return b + ' B';
}
function fmtCount(x) {
  if (x >= 1e12) return (x / 1e12).toFixed(2) + ' T';
  if (x >= 1e9) return (x / 1e9).toFixed(2) + ' G';
  if (x >= 1e6) return (x / 1e6).toFixed(2) + ' M';
  if (x >= 1e3) return (x / 1e3).toFixed(1) + ' k';
  return String(Math.round(x * 100) / 100);
}
function fmtMs(seconds) { return (seconds * 1e3).toFixed(3); }
function fmtNum(x) {
  return x === null || x === undefined                      ? '-' :
      Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(3) :
                                                              x.toPrecision(5);
}
// A link that reveals a node in the graph: of `stage` when given, else of the stage on show (or
// the last one, from a view other than the graph's).
function nodeLink(name, text, stage) {
  return `<a class="node-link" data-node="${esc(name)}"${
      stage === undefined ? '' : ` data-stage="${Math.max(0, stage)}"`}>${esc(text || name)}</a>`;
}

// ---------------------------------------------------------------------------------------------
// Stages: each rebuilt once from the first by replaying the differences.

const stageCache = [];
function stageGraph(k) {
  if (stageCache[k]) return stageCache[k];
  const stage = DATA.stages[k];
  const nodes = k === 0 ? new Map() : new Map(stageGraph(k - 1).nodes);
  for (const name of stage.del) nodes.delete(name);
  for (const rec of stage.add) nodes.set(rec.n, rec);
  const changed = new Set(stage.changed);
  const added = new Set(k === 0 ? [] : stage.add.filter((r) => !changed.has(r.n)).map((r) => r.n));
  const consumers = new Map(), gradients = new Map();
  for (const rec of nodes.values()) {
    for (const input of rec.i) {
      const p = producerName(input);
      if (!consumers.has(p)) consumers.set(p, []);
      consumers.get(p).push(rec.n);
    }
    if (rec.g) {
      if (!gradients.has(rec.g)) gradients.set(rec.g, []);
      gradients.get(rec.g).push(rec.n);
    }
  }
  const graph = {index: k, stage, nodes, added, changed, consumers, gradients};
  graph.drawnScope = pageFlatScopes(graph);
  return (stageCache[k] = graph);
}

// A scope with very many nodes of its own (an optimizer's updates, all in "optimizer") would
// unfold into one drawing too big to read or to lay out quickly. Its nodes are drawn in pages
// of kPageSize instead, each a box of its own ("optimizer/[65-96]"), and the pages in sections
// of kFlatSections ("optimizer/[1-256]/[65-96]") when there are more, in an order that keeps chains
// together: depth first from the stage's outputs and updates, every node after its inputs.
const kFlatScopeLimit = 48, kPageSize = 32, kFlatSections = 8;
function pageFlatScopes(graph) {
  const direct = new Map();
  for (const rec of graph.nodes.values()) direct.set(rec.s, (direct.get(rec.s) || 0) + 1);
  const drawn = new Map();
  const big = new Set([...direct].filter(([scope, n]) => scope && n > kFlatScopeLimit).map(([scope]) => scope));
  if (!big.size) return drawn;
  const order = [], seen = new Set();
  const visit = (start) => {
    const stack = [[start, false]];
    while (stack.length) {
      const [name, expanded] = stack.pop();
      if (expanded) {
        order.push(name);
        continue;
      }
      if (seen.has(name) || !graph.nodes.has(name)) continue;
      seen.add(name);
      stack.push([name, true]);
      const inputs = graph.nodes.get(name).i;
      for (let i = inputs.length - 1; i >= 0; --i) stack.push([producerName(inputs[i]), false]);
    }
  };
  for (const root of graph.stage.roots) visit(producerName(root));
  for (const name of graph.nodes.keys()) visit(name);
  const members = new Map();
  for (const name of order) {
    const scope = graph.nodes.get(name).s;
    if (!big.has(scope)) continue;
    if (!members.has(scope)) members.set(scope, []);
    members.get(scope).push(name);
  }
  // Pages of kPageSize nodes, and sections of kFlatSections pages around them when there are
  // more pages than that, so that one unfolding shows few boxes.
  const range = (first, count, total) => `[${first + 1}-${Math.min(first + count, total)}]`;
  const section = kPageSize * kFlatSections;
  for (const [scope, names] of members)
    names.forEach((name, i) => {
      const page = range(Math.floor(i / kPageSize) * kPageSize, kPageSize, names.length);
      const part = names.length > section ? '/' + range(Math.floor(i / section) * section, section, names.length) : '';
      drawn.set(name, `${scope}${part}/${page}`);
    });
  return drawn;
}
// The scope a node is drawn in: its own, or a page of it (above).
function drawnScope(graph, rec) { return graph.drawnScope.get(rec.n) || rec.s; }
function current() { return stageGraph(view.stage); }

// The nodes a selection relates to through autodiff: a forward node's gradient nodes, or a
// gradient node's forward node and its siblings.
function gradientLinks(graph, name) {
  const rec = graph.nodes.get(name);
  if (!rec) return [];
  if (rec.g) return [rec.g, ...(graph.gradients.get(rec.g) || []).filter((n) => n !== name)];
  return graph.gradients.get(name) || [];
}

// ---------------------------------------------------------------------------------------------
// What is drawn: each node either itself or inside the box of its outermost folded scope.

function itemOf(rec, graph = current()) {
  for (const prefix of scopePrefixes(drawnScope(graph, rec)))
    if (!view.expanded.has(prefix)) return 'scope:' + prefix;
  return 'node:' + rec.n;
}

function buildScene(graph) {
  const items = new Map(), clusters = new Map(), edges = new Map();
  const clusterOf = (scope) => {
    if (!scope || clusters.has('cluster:' + scope)) return scope ? 'cluster:' + scope : null;
    const parent = scope.includes('/') ? clusterOf(scope.slice(0, scope.lastIndexOf('/'))) : null;
    clusters.set('cluster:' + scope, {id: 'cluster:' + scope, scope, parent});
    return 'cluster:' + scope;
  };
  for (const rec of graph.nodes.values()) {
    const id = itemOf(rec, graph);
    let item = items.get(id);
    if (!item) {
      if (id.startsWith('node:'))
        item = {id, kind: 'node', rec, parent: clusterOf(drawnScope(graph, rec))};
      else {
        const scope = id.slice(6);
        item = {
          id,
          kind: 'group',
          scope,
          members: [],
          roles: [0, 0, 0],
          parent: scope.includes('/') ? clusterOf(scope.slice(0, scope.lastIndexOf('/'))) : null
        };
      }
      items.set(id, item);
    }
    if (item.kind === 'group') {
      item.members.push(rec);
      item.roles[rec.r]++;
    }
  }
  for (const rec of graph.nodes.values()) {
    const to = itemOf(rec, graph);
    for (const input of rec.i) {
      const producer = graph.nodes.get(producerName(input));
      if (!producer) continue;
      const from = itemOf(producer, graph);
      if (from === to) continue;
      const key = from + '\u0001' + to;
      const edge = edges.get(key);
      if (edge)
        edge.count++;
      else
        edges.set(key, {from, to, count: 1, type: producer.t[0] || ''});
    }
  }
  return {items, clusters, edges};
}

function itemSize(item) {
  if (item.kind === 'node') {
    const text = Math.max(item.rec.o.length * 7, leaf(item.rec.n).length * 6);
    return {width: Math.max(54, text + 18), height: 34};
  }
  const label = `${groupLabel(item)}  (${item.members.length})`;
  return {width: Math.max(80, label.length * 7 + 24), height: 40};
}

function layoutScene(scene) {
  const g = new dagre.graphlib.Graph({compound: true});
  g.setGraph({rankdir: 'TB', nodesep: 18, ranksep: 34, edgesep: 8, marginx: 24, marginy: 24});
  g.setDefaultEdgeLabel(() => ({}));
  for (const item of scene.items.values()) g.setNode(item.id, itemSize(item));
  for (const c of scene.clusters.values()) g.setNode(c.id, {paddingTop: 22});
  for (const c of scene.clusters.values())
    if (c.parent) g.setParent(c.id, c.parent);
  for (const item of scene.items.values())
    if (item.parent) g.setParent(item.id, item.parent);
  for (const e of scene.edges.values()) g.setEdge(e.from, e.to, {weight: e.count});
  dagre.layout(g);
  for (const item of scene.items.values()) Object.assign(item, g.node(item.id));
  for (const c of scene.clusters.values()) Object.assign(c, g.node(c.id));
  for (const e of scene.edges.values()) e.points = g.edge(e.from, e.to).points;
  const size = g.graph();
  scene.width = size.width;
  scene.height = size.height;
  return scene;
}

// ---------------------------------------------------------------------------------------------
// Drawing the graph.

function sourceClass(rec) {
  return SOURCE_OPS.has(rec.o) || rec.o === 'fill' || rec.o === 'iota' ? ' src-' + rec.o : '';
}

function drawNode(item) {
  const rec = item.rec, x = item.x - item.width / 2, y = item.y - item.height / 2;
  return `<g class="node role-${rec.r}${sourceClass(rec)}" data-item="${esc(item.id)}" data-name="${esc(rec.n)}">` +
      `<title>${esc(rec.n)}\n${esc(rec.o)} → ${esc(rec.t.join(', '))}${rec.w ? '\n' + esc(rec.w) : ''}</title>` +
      `<rect x="${x}" y="${y}" width="${item.width}" height="${item.height}" rx="${
             SOURCE_OPS.has(rec.o) ? 2 : 8}"></rect>` +
      `<text class="op" x="${item.x}" y="${y + 14}" text-anchor="middle">${esc(rec.o)}</text>` +
      `<text class="leaf" x="${item.x}" y="${y + 27}" text-anchor="middle">${esc(leaf(rec.n))}</text></g>`;
}

// A scope's last name; for a page of a flat scope ("optimizer/[65-96]"), the page and its first node.
function groupLabel(item) {
  const name = leaf(item.scope);
  if (!name.startsWith('[')) return name;
  const first = leaf(item.members[0].n);
  return `${name} ${first.length > 22 ? first.slice(0, 21) + '…' : first}`;
}

function drawGroup(item) {
  const x = item.x - item.width / 2, y = item.y - item.height / 2;
  const role = item.roles.indexOf(Math.max(...item.roles));
  return `<g class="group role-${role}" data-item="${esc(item.id)}" data-scope="${esc(item.scope)}">` +
      `<title>${esc(item.scope)}: ${item.members.length} nodes (click to unfold)</title>` +
      `<rect x="${x}" y="${y}" width="${item.width}" height="${item.height}" rx="4"></rect>` +
      `<text x="${item.x}" y="${y + 16}" text-anchor="middle">${esc(groupLabel(item))} ▸</text>` +
      `<text class="count" x="${item.x}" y="${y + 31}" text-anchor="middle">${item.members.length} nodes</text>` +
      `<text class="badge" x="${x + item.width - 4}" y="${y + 11}" text-anchor="end"></text></g>`;
}

function drawCluster(c) {
  const x = c.x - c.width / 2, y = c.y - c.height / 2;
  return `<g class="cluster" data-scope="${esc(c.scope)}"><rect x="${x}" y="${y}" width="${c.width}" height="${
             c.height}" rx="6"></rect>` +
      `<text class="fold" x="${x + 8}" y="${y + 15}">▾ ${esc(leaf(c.scope))}</text></g>`;
}

function drawEdge(e) {
  const d = e.points.map((p, i) => (i ? 'L' : 'M') + p.x.toFixed(1) + ',' + p.y.toFixed(1)).join('');
  const mid = e.points[Math.floor(e.points.length / 2)];
  const label = e.count > 1 ? `<text class="edge-label" x="${mid.x + 4}" y="${mid.y}">×${e.count}</text>` : '';
  return `<path class="edge" data-from="${esc(e.from)}" data-to="${esc(e.to)}" d="${d}"><title>${esc(e.type)}${
      e.count > 1 ? ' and ' + (e.count - 1) + ' more' : ''}</title></path>${label}`;
}

function renderGraph() {
  const started = performance.now();
  const scene = layoutScene(buildScene(current()));
  view.layout = scene;
  const clusters = [...scene.clusters.values()].sort((a, b) => a.scope.split('/').length - b.scope.split('/').length);
  let svg = clusters.map(drawCluster).join('');
  for (const e of scene.edges.values()) svg += drawEdge(e);
  for (const item of scene.items.values()) svg += item.kind === 'node' ? drawNode(item) : drawGroup(item);
  $('viewport').innerHTML = svg;
  applyMarks();
  applyTransform();
  view.layoutMs = performance.now() - started;
  updateStageBar();
}

// Marks on what is drawn: the pass's changes, the selection and its gradient links, the values.
function applyMarks() {
  const graph = current(), scene = view.layout;
  const marks = new Map();  // item id -> {classes, counts}
  const mark = (name, cls) => {
    const rec = graph.nodes.get(name);
    if (!rec) return;
    const id = itemOf(rec, graph);
    if (!marks.has(id)) marks.set(id, {classes: new Set(), counts: {}});
    const m = marks.get(id);
    m.classes.add(cls);
    m.counts[cls] = (m.counts[cls] || 0) + 1;
  };
  if (view.stage > 0) {
    for (const n of graph.added) mark(n, 'added');
    for (const n of graph.changed) mark(n, 'changed');
  }
  const values = valueIndex();
  if (view.stage === DATA.stages.length - 1) {
    for (const [name, s] of values)
      if (s.nan + s.inf > 0) mark(producerName(name), 'non-finite');
    if (DATA.values && DATA.values.first_non_finite) mark(DATA.values.first_non_finite, 'first-bad');
  }
  if (view.selected && !view.selected.startsWith('scope:')) {
    mark(view.selected, 'selected');
    for (const n of gradientLinks(graph, view.selected)) mark(n, 'related');
  } else if (view.selected) {
    if (scene.items.has(view.selected)) {
      if (!marks.has(view.selected)) marks.set(view.selected, {classes: new Set(), counts: {}});
      marks.get(view.selected).classes.add('selected');
    }
  }
  for (const el of document.querySelectorAll('#viewport .node, #viewport .group')) {
    const m = marks.get(el.dataset.item);
    el.setAttribute(
        'class',
        el.getAttribute('class')
            .split(' ')
            .filter((c) => !MARK_CLASSES.has(c))
            .concat(m ? [...m.classes] : [])
            .join(' '));
    const badge = el.querySelector('.badge');
    if (badge) {
      const c = m ? m.counts : {};
      const kind = ['related', 'added', 'changed'].find((k) => c[k]);
      badge.textContent = kind ? String(c[kind]) : '';
      badge.setAttribute('class', 'badge ' + (kind || ''));
    }
  }
  for (const el of document.querySelectorAll('#viewport .edge')) {
    const related = marks.has(el.dataset.from) && marks.has(el.dataset.to) &&
        marks.get(el.dataset.from).classes.has('related') !== marks.get(el.dataset.to).classes.has('related') &&
        (marks.get(el.dataset.from).classes.has('selected') || marks.get(el.dataset.to).classes.has('selected'));
    el.classList.toggle('related', related);
  }
}
const MARK_CLASSES = new Set(['added', 'changed', 'selected', 'related', 'non-finite', 'first-bad', 'search-hit']);

function applyTransform() {
  const t = view.transform;
  $('viewport').setAttribute('transform', `translate(${t.x},${t.y}) scale(${t.k})`);
}

function fit() {
  const svg = $('graph-svg'), scene = view.layout;
  if (!scene) return;
  const w = svg.clientWidth || 800, h = svg.clientHeight || 600;
  const k = Math.min(1.25, 0.95 * Math.min(w / Math.max(1, scene.width), h / Math.max(1, scene.height)));
  view.transform = {k, x: (w - scene.width * k) / 2, y: Math.max(8, (h - scene.height * k) / 2)};
  applyTransform();
}

function centerOn(itemId) {
  const item = view.layout && view.layout.items.get(itemId);
  if (!item) return;
  const svg = $('graph-svg');
  const k = Math.max(view.transform.k, 0.9);
  view.transform = {k, x: svg.clientWidth / 2 - item.x * k, y: svg.clientHeight / 2 - item.y * k};
  applyTransform();
}

function installPanZoom() {
  const svg = $('graph-svg');
  let drag = null;
  svg.addEventListener('wheel', (event) => {
    event.preventDefault();
    const r = svg.getBoundingClientRect(), t = view.transform;
    const k = Math.min(8, Math.max(0.02, t.k * Math.exp(-event.deltaY * 0.0015)));
    const px = event.clientX - r.left, py = event.clientY - r.top;
    view.transform = {k, x: px - (px - t.x) * (k / t.k), y: py - (py - t.y) * (k / t.k)};
    applyTransform();
  }, {passive: false});
  svg.addEventListener('mousedown', (event) => {
    drag = {x: event.clientX, y: event.clientY, t: {...view.transform}, moved: false};
    svg.classList.add('panning');
  });
  window.addEventListener('mousemove', (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    view.transform = {k: drag.t.k, x: drag.t.x + dx, y: drag.t.y + dy};
    applyTransform();
  });
  window.addEventListener('mouseup', () => {
    svg.classList.remove('panning');
    setTimeout(() => {
      drag = null;
    }, 0);
  });
  svg.addEventListener('click', (event) => {
    if (drag && drag.moved) return;
    const fold = event.target.closest('.cluster');
    if (fold && event.target.classList.contains('fold')) return foldScope(fold.dataset.scope);
    const group = event.target.closest('.group');
    if (group) return unfoldScope(group.dataset.scope);
    const node = event.target.closest('.node');
    if (node) return select(node.dataset.name);
  });
}

// ---------------------------------------------------------------------------------------------
// Folding, selecting, revealing.

function unfoldScope(scope) {
  for (const prefix of scopePrefixes(scope)) view.expanded.add(prefix);
  view.selected = 'scope:' + scope;
  const keep = itemScreenPosition('scope:' + scope);
  renderGraph();
  showScopeDetails(scope);
  if (keep) keepClusterAt('cluster:' + scope, keep);
}
function foldScope(scope) {
  for (const s of [...view.expanded])
    if (s === scope || s.startsWith(scope + '/')) view.expanded.delete(s);
  view.selected = 'scope:' + scope;
  renderGraph();
  showScopeDetails(scope);
  centerOn('scope:' + scope);
}
function itemScreenPosition(id) {
  const item = view.layout && view.layout.items.get(id);
  if (!item) return null;
  const t = view.transform;
  return {x: item.x * t.k + t.x, y: (item.y - item.height / 2) * t.k + t.y};
}
// After unfolding, the scope's box opens where its folded box was, so the reader's eye stays put.
function keepClusterAt(clusterId, screen) {
  const c = view.layout.clusters.get(clusterId);
  if (!c) return;
  const t = view.transform;
  view.transform = {k: t.k, x: screen.x - c.x * t.k, y: screen.y - (c.y - c.height / 2) * t.k};
  applyTransform();
}

function select(name) {
  view.selected = name;
  applyMarks();
  showNodeDetails(name);
}

// Unfolds the scopes around `name`, switches to the graph, selects the node and centres it.
function reveal(name, stage) {
  if (stage !== undefined && stage !== view.stage) {
    view.stage = stage;
  }
  let graph = current();
  if (!graph.nodes.has(name)) {
    const where = DATA.stages.findIndex((s, k) => stageGraph(k).nodes.has(name));
    if (where < 0) return;
    view.stage = where;
    graph = current();
  }
  for (const prefix of scopePrefixes(drawnScope(graph, graph.nodes.get(name)))) view.expanded.add(prefix);
  showTab('graph');
  view.selected = name;
  renderGraph();
  showNodeDetails(name);
  centerOn('node:' + name);
}

// ---------------------------------------------------------------------------------------------
// The details panel.

let valueIndexCache = null;
function valueIndex() {
  if (valueIndexCache) return valueIndexCache;
  valueIndexCache = new Map();
  if (DATA.values)
    for (const s of DATA.values.list) valueIndexCache.set(s.v, s);
  return valueIndexCache;
}
let timeIndexCache = null;
function timeIndex() {
  if (timeIndexCache) return timeIndexCache;
  timeIndexCache = new Map();
  if (DATA.time)
    for (const [name, , seconds] of DATA.time.steps)
      timeIndexCache.set(name, (timeIndexCache.get(name) || 0) + seconds);
  return timeIndexCache;
}
let bufferIndexCache = null;
function bufferIndex() {
  if (bufferIndexCache) return bufferIndexCache;
  bufferIndexCache = new Map();
  if (DATA.memory)
    DATA.memory.buffers.forEach((b, i) => {
      for (const v of b[4]) bufferIndexCache.set(v, i);
    });
  return bufferIndexCache;
}

function histogramSvg(hist, width, height) {
  if (!hist || !hist.length) return '';
  const top = Math.max(1, ...hist), w = width / hist.length;
  const bars =
      hist.map(
              (c, i) => c ? `<rect x="${(i * w).toFixed(1)}" y="${(height - height * c / top).toFixed(1)}" width="${
                                Math.max(1, w - 1).toFixed(
                                    1)}" height="${(height * c / top).toFixed(1)}"><title>${c}</title></rect>` :
                            '')
          .join('');
  return `<svg class="histogram" width="${width}" height="${height}">${bars}</svg>`;
}

function statisticsRows(s) {
  return `<tr><td>elements</td><td>${s.count}</td></tr><tr><td>min / max</td><td>${fmtNum(s.min)} / ${
             fmtNum(s.max)}</td></tr>` +
      `<tr><td>mean ± std</td><td>${fmtNum(s.mean)} ± ${fmtNum(s.std)}</td></tr>` +
      `<tr><td>NaN / Inf</td><td>${s.nan} / ${s.inf}</td></tr>`;
}

function showNodeDetails(name) {
  const graph = current(), rec = graph.nodes.get(name);
  if (!rec) {
    $('details').innerHTML = `<p class="hint">${esc(name)} is not in this stage.</p>`;
    return;
  }
  const rows = [
    ['op', esc(rec.o)], ['role', ROLE_NAMES[rec.r]], ['scope', esc(rec.s || '(top)')], ['type', esc(rec.t.join(', '))],
    ['where', esc(rec.w || 'unknown')]
  ];
  if (rec.a) rows.push(['attributes', `<span class="mono">${esc(rec.a)}</span>`]);
  if (rec.c) rows.push(['FLOPs', fmtCount(rec.c[0])], ['bytes moved', fmtBytes(rec.c[1])]);
  const isFinal = view.stage === DATA.stages.length - 1;
  const seconds = isFinal ? timeIndex().get(name) : undefined;
  if (seconds !== undefined) {
    rows.push(['time', fmtMs(seconds) + ' ms per run']);
    if (rec.c && rec.c[0]) rows.push(['speed', (rec.c[0] / seconds / 1e9).toFixed(2) + ' GFLOP/s']);
  }
  const buffer = isFinal ? bufferIndex().get(name) : undefined;
  if (buffer !== undefined) {
    const b = DATA.memory.buffers[buffer];
    rows.push([
      'buffer',
      `#${buffer}: ${fmtBytes(b[1])} at ${b[0]}, steps ${b[2]}–${b[3]}` +
          (b[4].length > 1 ? `, shared with ${b[4].length - 1} more value(s)` : '')
    ]);
  }
  let html =
      `<h2>${esc(rec.n)}</h2><table>${rows.map(([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`).join('')}</table>`;
  if (view.stage > 0 && graph.added.has(name)) html += `<p>Added by <b>${esc(graph.stage.name)}</b>.</p>`;
  if (view.stage > 0 && graph.changed.has(name)) html += `<p>Rewritten by <b>${esc(graph.stage.name)}</b>.</p>`;
  const links = graph.gradients.get(name) || [];
  if (rec.g)
    html += `<h3>Gradient of</h3>${nodeLink(rec.g)}` +
        (graph.nodes.has(rec.g) ? '' : ' <span class="hint">(fused or removed by now)</span>');
  if (links.length)
    html += `<h3>Gradient nodes its rule built (${links.length})</h3><ul>${
        links.map((n) => `<li>${nodeLink(n)}</li>`).join('')}</ul>`;
  html += `<h3>Inputs</h3><ul>${
      rec.i.map((i) => `<li>${nodeLink(producerName(i), i)}</li>`).join('') || '<li>none</li>'}</ul>`;
  const users = graph.consumers.get(name) || [];
  html += `<h3>Read by (${users.length})</h3><ul>${
      users.slice(0, 40).map((n) => `<li>${nodeLink(n)}</li>`).join('') || '<li>nothing</li>'}</ul>`;
  const stats = isFinal ? rec.t.map((_, k) => valueIndex().get(k ? `${name}:${k}` : name)).filter(Boolean) : [];
  for (const s of stats)
    html += `<h3>Values of ${esc(s.v)}</h3><table>${statisticsRows(s)}</table>${histogramSvg(s.hist, 300, 60)}`;
  $('details').innerHTML = html;
}

function showScopeDetails(scope) {
  const graph = current(), members = [...graph.nodes.values()].filter((r) => {
    const drawn = drawnScope(graph, r);
    return drawn === scope || drawn.startsWith(scope + '/');
  });
  const ops = new Map(), roles = [0, 0, 0];
  let flops = 0;
  for (const r of members) {
    ops.set(r.o, (ops.get(r.o) || 0) + 1);
    roles[r.r]++;
    if (r.c) flops += r.c[0];
  }
  const byOp = [...ops].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([o, n]) => `${esc(o)} ×${n}`).join(', ');
  let seconds = 0;
  for (const r of members) seconds += timeIndex().get(r.n) || 0;
  const open = view.expanded.has(scope);
  $('details').innerHTML =
      `<h2>${esc(scope)}/</h2><table><tr><td>nodes</td><td>${members.length}</td></tr>` +
      `<tr><td>roles</td><td>${
          roles.map((n, i) => n ? `${n} ${ROLE_NAMES[i]}` : '').filter(Boolean).join(', ')}</td></tr>` +
      `<tr><td>ops</td><td>${byOp}</td></tr><tr><td>FLOPs</td><td>${fmtCount(flops)}</td></tr>` +
      (seconds ? `<tr><td>time</td><td>${fmtMs(seconds)} ms per run</td></tr>` : '') + '</table>' +
      `<button class="action" id="scope-toggle">${open ? 'Fold' : 'Unfold'} ${esc(leaf(scope))}</button>`;
  $('scope-toggle').onclick = () => (open ? foldScope(scope) : unfoldScope(scope));
}

// ---------------------------------------------------------------------------------------------
// Stages in the graph view.

function updateStageBar() {
  const s = DATA.stages[view.stage], before = view.stage ? DATA.stages[view.stage - 1].count : s.count;
  $('stage-select').value = String(view.stage);
  $('stage-prev').disabled = view.stage === 0;
  $('stage-next').disabled = view.stage === DATA.stages.length - 1;
  const changes =
      view.stage ? ` · +${current().added.size} added, ${s.changed.length} rewritten, −${s.del.length} removed` : '';
  $('stage-info').textContent =
      `${s.count} nodes (was ${before})${changes}${s.summary && s.summary !== '-' ? ' · ' + s.summary : ''}`;
}
function setStage(k) {
  view.stage = Math.max(0, Math.min(DATA.stages.length - 1, k));
  if (view.selected && !view.selected.startsWith('scope:') && !current().nodes.has(view.selected)) view.selected = null;
  renderGraph();
  if (view.selected && !view.selected.startsWith('scope:')) showNodeDetails(view.selected);
  if (view.tab === 'passes') renderPasses();
}

// ---------------------------------------------------------------------------------------------
// Passes: every stage, and the fusion log of the one chosen.

function renderPasses() {
  const rows =
      DATA.stages
          .map((s, k) => {
            const graph = stageGraph(k);
            const delta = k ? `+${graph.added.size} ~${s.changed.length} −${s.del.length}` : '';
            return `<tr class="clickable${k === view.stage ? ' current' : ''}" data-stage="${k}"><td class="num">${
                       k}</td><td>${esc(s.name)}${s.ran ? '' : ' <i>(disabled)</i>'}</td>` +
                `<td>${esc(s.pipeline)}</td><td class="num">${s.count}</td><td class="num">${
                       delta}</td><td class="num">${s.ms ? s.ms.toFixed(1) : ''}</td>` +
                `<td>${esc(s.summary && s.summary !== '-' ? s.summary : '')}</td><td class="num">${
                       s.log.length || ''}</td></tr>`;
          })
          .join('');
  const s = DATA.stages[view.stage];
  // A candidate's root is a node of the pass's input: the stage before.
  const log = s.log
                  .map(
                      (d, i) => `<tr class="${d.fused ? '' : 'bad'}" data-decision="${i}"><td>${esc(d.kind)}</td><td>${
                                    nodeLink(d.root, d.root, view.stage - 1)}</td>` +
                          `<td>${
                                    d.fused ? '<span class="fused">fused</span>' :
                                              '<span class="rejected">rejected</span>'}</td><td>${
                                    esc(d.reason || '')}</td><td class="num">${d.nodes.length}</td></tr>`)
                  .join('');
  const rejected = s.log.filter((d) => !d.fused).length;
  $('view-passes').innerHTML =
      `<div class="panel"><h2>Passes</h2><p>Each row is the graph after one pass (and, in a training step, after autodiff built the backward graph). ` +
      `Click a row for its fusion log; <button id="show-stage">Show stage ${
          view.stage} in the graph</button> draws it with its added nodes outlined green and its rewritten ones orange.</p>` +
      `<table class="grid" id="stage-table"><tr><th>#</th><th>stage</th><th>pipeline</th><th>nodes</th><th>+added ~rewritten −removed</th><th>ms</th><th>what it did</th><th>candidates</th></tr>${
          rows}</table>` +
      `<h2 id="fusion-log-title">Fusion log of stage ${view.stage}: ${esc(s.name)}</h2>` +
      (s.log.length ? `<p>${s.log.length - rejected} fused, ${
                          rejected} rejected. Click a root to find it in the graph before this pass.</p>` +
               `<table class="grid" id="fusion-log"><tr><th>pattern</th><th>root</th><th>outcome</th><th>why not</th><th>nodes</th></tr>${
                          log}</table>` :
                      '<p class="hint">This pass considered no fusion candidates.</p>') +
      '</div>';
  for (const tr of document.querySelectorAll('#stage-table tr[data-stage]'))
    tr.onclick = () => {
      view.stage = +tr.dataset.stage;
      renderPasses();
    };
  $('show-stage').onclick = () => {
    showTab('graph');
    setStage(view.stage);
  };
}

// ---------------------------------------------------------------------------------------------
// Memory: the plan as a timeline.

function renderMemory() {
  const panel = $('view-memory');
  if (!DATA.memory) {
    panel.innerHTML =
        '<div class="panel"><p class="hint">No executable was given: the memory plan is made when a graph is compiled.</p></div>';
    return;
  }
  const m = DATA.memory, steps = DATA.schedule.length, peak = Math.max(1, m.peak);
  const live = new Float64Array(steps + 1);
  for (const b of m.buffers)
    for (let s = b[2]; s <= b[3] && s < steps; ++s) live[s] += b[1];
  let peakStep = 0;
  for (let s = 0; s < steps; ++s)
    if (live[s] > live[peakStep]) peakStep = s;
  const width = Math.max(700, (panel.clientWidth || 1000) - 40), height = 440, left = 70, bottom = 30, top = 16;
  const x = (s) => left + (s / Math.max(1, steps)) * (width - left - 10);
  const y = (bytes) => top + (1 - bytes / peak) * (height - top - bottom);
  const nodes = stageGraph(DATA.stages.length - 1);  // the memory plan is of the last stage
  let bars = '';
  m.buffers.forEach((b, i) => {
    const producer = nodes.nodes.get(producerName(b[4][0] || ''));
    const color = producer ? ['#64b5f6', '#e57373', '#ffd54f'][producer.r] : '#aaa';
    bars += `<rect class="mem-bar${b[4].length > 1 ? ' shared' : ''}" data-buffer="${i}" x="${x(b[2]).toFixed(1)}" y="${
                y(b[0] + b[1]).toFixed(1)}" ` +
        `width="${Math.max(1, x(b[3] + 1) - x(b[2])).toFixed(1)}" height="${
                Math.max(0.5, y(b[0]) - y(b[0] + b[1])).toFixed(1)}" fill="${color}"></rect>`;
  });
  let curve = '';
  for (let s = 0; s < steps; ++s)
    curve += (s ? 'L' : 'M') + x(s).toFixed(1) + ',' + y(live[s]).toFixed(1) + 'H' + x(s + 1).toFixed(1);
  const ticks =
      [0, 0.25, 0.5, 0.75, 1]
          .map(
              (f) => `<line class="grid-line" x1="${left}" x2="${width - 10}" y1="${y(f * peak)}" y2="${
                         y(f * peak)}"></line>` +
                  `<text x="${left - 6}" y="${y(f * peak) + 3}" text-anchor="end">${fmtBytes(f * peak)}</text>`)
          .join('');
  const peakName = DATA.schedule[peakStep];
  panel.innerHTML = `<div class="panel"><h2>Memory plan</h2>` +
      `<p>Every bar is one buffer of the arena: from the step that writes it to the last step that reads it (x, in schedule order), at its offset in the arena (y). ` +
      `Buffers whose lives do not overlap share bytes. Purple outlines mark buffers that hold more than one value: an elementwise op that wrote over its dying input (in place), or a reshape that reads its input's bytes (a view). ` +
      `Colours: blue forward, red backward, yellow optimizer. The red line is the bytes live at each step.</p>` +
      `<p><b>Peak ${fmtBytes(m.peak)}</b> (one buffer per value would take ${fmtBytes(m.naive)}, ${
                        (m.naive / peak).toFixed(1)}× more); ` +
      `${m.in_place} outputs written in place, ${m.views} views. The most bytes are live at step ${peakStep}, ${
                        nodeLink(peakName)}: ${fmtBytes(live[peakStep])}.</p>` +
      `<svg class="chart" id="memory-chart" width="${width}" height="${height}">${ticks}${
                        bars}<path class="live-curve" d="${curve}"></path>` +
      `<line class="peak-line" x1="${x(peakStep)}" x2="${x(peakStep)}" y1="${top}" y2="${height - bottom}"></line>` +
      `<text x="${x(peakStep) + 4}" y="${top + 10}" fill="#c62828">peak</text>` +
      `<text x="${(left + width) / 2}" y="${height - 6}" text-anchor="middle">schedule step (0 … ${
                        steps - 1})</text></svg>` +
      `<div id="memory-selection"></div></div>`;
  const chart = $('memory-chart');
  chart.addEventListener('click', (event) => {
    const bar = event.target.closest('.mem-bar');
    if (!bar) return;
    const i = +bar.dataset.buffer, b = m.buffers[i];
    for (const el of chart.querySelectorAll('.mem-bar.selected')) el.classList.remove('selected');
    bar.classList.add('selected');
    view.memorySelected = i;
    const name = producerName(b[4][0]);
    view.selected = name;
    showNodeDetails(name);
    $('memory-selection').innerHTML = `<p>Buffer #${i}: ${fmtBytes(b[1])} at offset ${b[0]}, live from step ${b[2]} (${
                                          nodeLink(DATA.schedule[b[2]])}) ` +
        `to step ${b[3]} (${nodeLink(DATA.schedule[Math.min(b[3], steps - 1)])}). Holds ${
                                          b[4].map((v) => nodeLink(producerName(v), v)).join(', ')}. ` +
        `<button class="action" id="memory-show">Show in the graph</button></p>`;
    $('memory-show').onclick = () => reveal(name, DATA.stages.length - 1);
  });
  chart.addEventListener('mousemove', (event) => {
    const bar = event.target.closest('.mem-bar');
    if (!bar) return hideTooltip();
    const b = m.buffers[+bar.dataset.buffer];
    showTooltip(event, `${fmtBytes(b[1])} at ${b[0]}, steps ${b[2]}–${b[3]}\n${b[4].join('\n')}`);
  });
  chart.addEventListener('mouseleave', hideTooltip);
}

// ---------------------------------------------------------------------------------------------
// Time: per node, per scope, and the roofline.

function renderTime() {
  const panel = $('view-time');
  if (!DATA.time) {
    panel.innerHTML =
        '<div class="panel"><p class="hint">Not profiled. Call executable.set_profiling(true) before a run, then write the explorer: each node\'s time and its place on the roofline appear here.</p></div>';
    return;
  }
  const graph = stageGraph(DATA.stages.length - 1);
  const steps = DATA.time.steps.map(([name, op, seconds]) => ({name, op, seconds, rec: graph.nodes.get(name)}));
  const total = steps.reduce((a, s) => a + s.seconds, 0);
  const sorted = [...steps].sort((a, b) => b.seconds - a.seconds);
  const machine = DATA.machine;
  const bound = (s) => {
    if (!machine || !s.rec || !s.rec.c || !s.rec.c[1]) return '';
    const intensity = s.rec.c[0] / s.rec.c[1], ridge = machine.gflops / machine.gbps;
    return intensity < ridge ? 'memory' : 'compute';
  };
  const nodeRows = sorted.slice(0, 60)
                       .map((s) => {
                         const f = s.rec && s.rec.c ? s.rec.c : [0, 0];
                         return `<tr class="clickable" data-node="${esc(s.name)}"><td>${nodeLink(s.name)}</td><td>${
                                    esc(s.op)}</td><td class="num">${fmtMs(s.seconds)}</td>` +
                             `<td class="num">${(100 * s.seconds / total).toFixed(1)}%</td><td class="num">${
                                    f[0] ? (f[0] / s.seconds / 1e9).toFixed(2) : ''}</td>` +
                             `<td class="num">${f[1] ? (f[0] / f[1]).toFixed(2) : ''}</td><td>${bound(s)}</td></tr>`;
                       })
                       .join('');
  panel.innerHTML =
      `<div class="panel"><h2>Time</h2><p>${DATA.time.runs} profiled run(s) on ${esc(DATA.time.backend)}: ` +
      `<b>${fmtMs(total)} ms per run</b> over ${
          steps.length} steps (each step timed alone, so the sum is a little above an unprofiled run's time).</p>` +
      `<div class="two-columns"><div><h2>Slowest nodes</h2><table class="grid" id="time-table"><tr><th>node</th><th>op</th><th>ms</th><th>share</th><th>GFLOP/s</th><th>FLOP/byte</th><th>bound</th></tr>${
          nodeRows}</table></div>` +
      `<div><h2>By scope <select id="scope-depth"><option value="1">depth 1</option><option value="2" selected>depth 2</option><option value="3">depth 3</option><option value="99">leaf</option></select></h2><div id="scope-table"></div>` +
      `<h2>By op</h2><div id="op-table"></div></div></div>` +
      `<h2>Roofline</h2><div id="roofline"></div></div>`;
  const byScope = () => {
    const depth = +$('scope-depth').value, sums = new Map();
    for (const s of steps) {
      const scope = s.rec ? (s.rec.s || '(top)').split('/').slice(0, depth).join('/') : '(transfers)';
      sums.set(scope, (sums.get(scope) || 0) + s.seconds);
    }
    $('scope-table').innerHTML = `<table class="grid"><tr><th>scope</th><th>ms</th><th>share</th></tr>` +
        [...sums]
            .sort((a, b) => b[1] - a[1])
            .slice(0, 30)
            .map(
                ([scope, sec]) => `<tr><td>${esc(scope)}</td><td class="num">${fmtMs(sec)}</td><td class="num">${
                    (100 * sec / total).toFixed(1)}%</td></tr>`)
            .join('') +
        '</table>';
  };
  $('scope-depth').onchange = byScope;
  byScope();
  const ops = new Map();
  for (const s of steps) {
    const o = ops.get(s.op) || [0, 0];
    o[0] += s.seconds;
    o[1]++;
    ops.set(s.op, o);
  }
  $('op-table').innerHTML = `<table class="grid"><tr><th>op</th><th>calls</th><th>ms</th><th>share</th></tr>` +
      [...ops]
          .sort((a, b) => b[1][0] - a[1][0])
          .slice(0, 20)
          .map(
              ([op, [sec, n]]) => `<tr><td>${esc(op)}</td><td class="num">${n}</td><td class="num">${
                  fmtMs(sec)}</td><td class="num">${(100 * sec / total).toFixed(1)}%</td></tr>`)
          .join('') +
      '</table>';
  for (const tr of document.querySelectorAll('#time-table tr[data-node]'))
    tr.onclick = () => {
      view.selected = tr.dataset.node;
      showNodeDetails(tr.dataset.node);
    };
  renderRoofline(steps, machine);
}

function renderRoofline(steps, machine) {
  const points = steps.filter((s) => s.rec && s.rec.c && s.rec.c[0] > 0 && s.rec.c[1] > 0 && s.seconds > 0)
                     .map((s) => ({s, intensity: s.rec.c[0] / s.rec.c[1], gflops: s.rec.c[0] / s.seconds / 1e9}));
  if (!points.length) {
    $('roofline').innerHTML = '<p class="hint">No node with known FLOPs and bytes was timed.</p>';
    return;
  }
  const width = 760, height = 420, left = 60, bottom = 40, top = 14, right = 20;
  const xs = points.map((p) => p.intensity), ys = points.map((p) => p.gflops);
  if (machine) {
    ys.push(machine.gflops);
    xs.push(machine.gflops / machine.gbps);
  }
  const lx0 = Math.floor(Math.log10(Math.min(...xs))), lx1 = Math.ceil(Math.log10(Math.max(...xs)) + 0.3);
  const ly0 = Math.floor(Math.log10(Math.min(...ys))), ly1 = Math.ceil(Math.log10(Math.max(...ys)) + 0.1);
  const x = (v) => left + (Math.log10(v) - lx0) / (lx1 - lx0) * (width - left - right);
  const y = (v) => top + (1 - (Math.log10(v) - ly0) / (ly1 - ly0)) * (height - top - bottom);
  let grid = '';
  for (let e = lx0; e <= lx1; ++e)
    grid += `<line class="grid-line" x1="${x(10 ** e)}" x2="${x(10 ** e)}" y1="${top}" y2="${
        height -
        bottom}"></line><text x="${x(10 ** e)}" y="${height - bottom + 14}" text-anchor="middle">${10 ** e}</text>`;
  for (let e = ly0; e <= ly1; ++e)
    grid += `<line class="grid-line" x1="${left}" x2="${width - right}" y1="${y(10 ** e)}" y2="${
        y(10 ** e)}"></line><text x="${left - 6}" y="${y(10 ** e) + 3}" text-anchor="end">${10 ** e}</text>`;
  let roof = '';
  if (machine) {
    const ridge = machine.gflops / machine.gbps, a = 10 ** lx0, b = 10 ** lx1;
    roof = `<path class="roof" d="M${x(a)},${y(Math.max(10 ** ly0, machine.gbps * a))}L${x(ridge)},${
               y(machine.gflops)}L${x(b)},${y(machine.gflops)}"></path>` +
        `<text x="${x(b) - 4}" y="${y(machine.gflops) - 5}" text-anchor="end">${
               machine.gflops.toFixed(0)} GFLOP/s peak</text>` +
        `<text x="${x(ridge) - 6}" y="${y(machine.gflops) + 14}" text-anchor="end">${
               machine.gbps.toFixed(1)} GB/s</text>`;
  }
  const maxSeconds = Math.max(...points.map((p) => p.s.seconds));
  const colors = ['#1e88e5', '#e53935', '#fbc02d'];
  const dots =
      points
          .map(
              (p) => `<circle class="point" data-node="${esc(p.s.name)}" cx="${x(p.intensity).toFixed(1)}" cy="${
                  y(p.gflops).toFixed(1)}" r="${(2 + 8 * Math.sqrt(p.s.seconds / maxSeconds)).toFixed(1)}" fill="${
                  colors[p.s.rec.r]}"><title>${esc(p.s.name)} (${esc(p.s.op)})\n${p.intensity.toFixed(2)} FLOP/byte, ${
                  p.gflops.toFixed(2)} GFLOP/s, ${fmtMs(p.s.seconds)} ms</title></circle>`)
          .join('');
  $('roofline').innerHTML =
      `<p>Each node that does arithmetic, placed by its arithmetic intensity (FLOPs over the bytes it reads and writes once) and the speed it reached; ` +
      `the circle's area grows with its time. The roof is the most this machine can do at that intensity: bandwidth × intensity, up to the FMA peak. ` +
      (machine ? `The peak and the bandwidth were measured when this file was written: ${esc(machine.method)}` :
                 'This machine\'s peak was not measured (a device run, or the roofline turned off).') +
      '</p>' +
      `<svg class="chart" id="roofline-chart" width="${width}" height="${height}">${grid}<line class="axis" x1="${
          left}" x2="${left}" y1="${top}" y2="${height - bottom}"></line>${roof}${dots}` +
      `<text x="${(left + width) / 2}" y="${height - 6}" text-anchor="middle">arithmetic intensity (FLOP/byte)</text>` +
      `<text x="14" y="${(top + height) / 2}" transform="rotate(-90 14 ${
          (top + height) / 2})" text-anchor="middle">GFLOP/s</text></svg>`;
  $('roofline-chart').onclick = (event) => {
    const dot = event.target.closest('.point');
    if (dot) {
      view.selected = dot.dataset.node;
      showNodeDetails(dot.dataset.node);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Values.

function renderValues() {
  const panel = $('view-values');
  if (!DATA.values) {
    panel.innerHTML =
        '<div class="panel"><p class="hint">No values were recorded. Call executable.set_value_statistics(true) before a run, then write the explorer: every value\'s statistics appear here.</p></div>';
    return;
  }
  const list = DATA.values.list, bad = DATA.values.first_non_finite;
  const rows = list.map(
                       (s, i) => `<tr class="clickable${s.nan + s.inf ? ' bad' : ''}" data-value="${i}"><td>${
                                     nodeLink(producerName(s.v), s.v)}</td><td class="num">${s.count}</td>` +
                           `<td class="num">${fmtNum(s.min)}</td><td class="num">${fmtNum(s.max)}</td><td class="num">${
                                     fmtNum(s.mean)}</td><td class="num">${fmtNum(s.std)}</td>` +
                           `<td class="num">${s.nan}</td><td class="num">${s.inf}</td><td>${
                                     histogramSvg(s.hist, 120, 22)}</td></tr>`)
                   .join('');
  panel.innerHTML = `<div class="panel"><h2>Values of one run</h2>` +
      (bad ? `<p class="rejected">The first node that made a NaN or an infinity from finite inputs: ${
                 nodeLink(bad)}.</p>` :
             '<p>Every value was finite.</p>') +
      `<p><label><input type="checkbox" id="only-bad"> only values with NaN or Inf</label></p>` +
      `<table class="grid" id="values-table"><tr><th>value (in schedule order)</th><th>elements</th><th>min</th><th>max</th><th>mean</th><th>std</th><th>NaN</th><th>Inf</th><th>histogram</th></tr>${
                        rows}</table></div>`;
  $('only-bad').onchange = (event) => {
    for (const tr of document.querySelectorAll('#values-table tr[data-value]'))
      tr.hidden = event.target.checked && !tr.classList.contains('bad');
  };
}

// ---------------------------------------------------------------------------------------------
// Search, tabs, tooltip, keys.

function search(query) {
  const results = $('search-results');
  query = query.trim().toLowerCase();
  if (!query) {
    results.hidden = true;
    return [];
  }
  const hits = [];
  for (const rec of current().nodes.values()) {
    if (rec.n.toLowerCase().includes(query) || rec.o.toLowerCase() === query) hits.push(rec);
    if (hits.length >= 40) break;
  }
  results.innerHTML =
      hits.map((r) => `<li data-node="${esc(r.n)}">${esc(r.n)}<span class="op">${esc(r.o)}</span></li>`).join('') ||
      '<li>no node matches</li>';
  results.hidden = false;
  return hits;
}

function showTab(tab) {
  view.tab = tab;
  for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.tab === tab);
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== 'view-' + tab;
  if (tab === 'passes') renderPasses();
  if (tab === 'memory') renderMemory();
  if (tab === 'time') renderTime();
  if (tab === 'values') renderValues();
}

function showTooltip(event, text) {
  const t = $('tooltip');
  t.textContent = text;
  t.hidden = false;
  t.style.left = event.clientX + 12 + 'px';
  t.style.top = event.clientY + 12 + 'px';
}
function hideTooltip() { $('tooltip').hidden = true; }

function installControls() {
  for (const b of document.querySelectorAll('#tabs button')) b.onclick = () => showTab(b.dataset.tab);
  $('stage-select').innerHTML =
      DATA.stages
          .map(
              (s, k) => `<option value="${k}">${k}. ${esc(s.pipeline ? s.pipeline + ': ' : '')}${esc(s.name)}</option>`)
          .join('');
  $('stage-select').onchange = (event) => setStage(+event.target.value);
  $('stage-prev').onclick = () => setStage(view.stage - 1);
  $('stage-next').onclick = () => setStage(view.stage + 1);
  $('fit').onclick = fit;
  $('fold-all').onclick = () => {
    view.expanded.clear();
    renderGraph();
    fit();
  };
  $('search').addEventListener('input', (event) => search(event.target.value));
  $('search').addEventListener('keydown', (event) => {
    if (event.key !== 'Enter') return;
    const hits = search(event.target.value);
    if (hits.length) {
      $('search-results').hidden = true;
      reveal(hits[0].n);
    }
  });
  $('search-results').addEventListener('click', (event) => {
    const li = event.target.closest('li[data-node]');
    if (!li) return;
    $('search-results').hidden = true;
    reveal(li.dataset.node);
  });
  // Any link to a node, anywhere on the page, reveals it in the graph.
  document.body.addEventListener('click', (event) => {
    const a = event.target.closest('a.node-link');
    if (a)
      reveal(
          a.dataset.node,
          a.dataset.stage !== undefined ? +a.dataset.stage :
              view.tab === 'graph'      ? view.stage :
                                          DATA.stages.length - 1);
  });
  document.addEventListener('keydown', (event) => {
    if (event.target.tagName === 'INPUT' || event.target.tagName === 'SELECT') return;
    if (event.key === '[') setStage(view.stage - 1);
    if (event.key === ']') setStage(view.stage + 1);
    if (event.key === 'f') fit();
    if (event.key === '/') {
      event.preventDefault();
      $('search').focus();
    }
  });
  $('tab-time').disabled = !DATA.time;
  $('tab-values').disabled = !DATA.values;
  $('tab-memory').disabled = !DATA.memory;
}

function main() {
  document.title = DATA.title + ' · Fovea explorer';
  $('title').textContent = DATA.title;
  $('title').title = `written ${DATA.written}`;
  $('legend').innerHTML =
      '<span style="background:#d4e6f8"></span>forward<span style="background:#f9d9d3"></span>backward' +
      '<span style="background:#f8efc6"></span>update<span style="background:#d7f0d2"></span>placeholder<span style="background:#fde3c3"></span>parameter' +
      '<span style="background:#eceff1;border-style:dashed"></span>folded scope<span style="border-color:#2e7d32;border-width:2px"></span>added' +
      '<span style="border-color:#ef6c00;border-width:2px"></span>rewritten<span style="border-color:#c2185b;border-width:2px"></span>gradient link';
  if (DATA.anomaly) {
    $('anomaly').textContent = DATA.anomaly;
    $('anomaly').hidden = false;
  }
  installControls();
  installPanZoom();
  renderGraph();
  fit();
  if (DATA.values && DATA.values.first_non_finite) reveal(DATA.values.first_non_finite);
  // When the page was ready, in ms since navigation began: the browser test reads it.
  document.body.dataset.readyMs = performance.now().toFixed(0);
  document.body.dataset.ready = 'true';
}

main();
