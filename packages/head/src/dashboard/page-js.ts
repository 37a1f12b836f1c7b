/**
 * The dashboard's script, served at /dashboard/app.js. Plain ES2017 for the browser, no library: it opens the event
 * stream, keeps the last five minutes of each deployment's rates and latencies in memory (the head keeps no
 * history for it), and redraws the page on every snapshot. Every value from the cluster goes into the DOM as text
 * (textContent), never as markup. (A module, not a file: it ships in src and dist alike. No backtick or dollar-brace
 * in it: it lives in a template literal.)
 */
export const DASHBOARD_JS = String.raw`
(function () {
  'use strict';
  var HISTORY_MS = 5 * 60 * 1000;
  var BATCH_WINDOW_MS = 60 * 1000;
  var STATE_COLORS = { STARTING: '#e0a526', RUNNING: '#2e9d5b', DRAINING: '#5b7bd5', STOPPED: '#9aa0a6', FAILED: '#d64545' };
  var SVGNS = 'http://www.w3.org/2000/svg';

  var series = new Map();      // deployment key -> [{ t, rps, p50, p95, p99, err }]
  var batchSeries = new Map(); // deployment key + ' ' + method -> [{ t, sizes }]
  var cluster = [];            // [{ t, rps }]
  var last = null;

  /** The span a chart covers: what the page has kept, at least 30 s, at most HISTORY_MS. */
  function spanOf(points) {
    if (points.length < 2) return 30000;
    return Math.max(30000, Math.min(HISTORY_MS, points[points.length - 1].t - points[0].t));
  }
  function spanLabel(ms) { return ms >= 120000 ? '\u2212' + Math.round(ms / 60000) + ' min' : '\u2212' + Math.round(ms / 1000) + ' s'; }
  function num(x) { return typeof x === 'number' && isFinite(x) ? x : null; }
  function obj(x) { return x !== null && typeof x === 'object' ? x : null; }
  function fmt(x, digits) {
    var v = num(x);
    if (v === null) return '\u2014';
    if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
    return v.toFixed(digits === undefined ? 1 : digits);
  }
  function fmtMs(x) {
    var v = num(x);
    if (v === null) return '\u2014';
    if (v >= 1000) return (v / 1000).toFixed(2) + ' s';
    return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + ' ms';
  }
  function fmtPct(x, digits) { var v = num(x); return v === null ? '\u2014' : (v * 100).toFixed(digits === undefined ? 2 : digits) + '%'; }
  function fmtBytes(x) {
    var v = num(x);
    if (v === null) return '\u2014';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + ' ' + units[i];
  }
  function fmtMoney(x) { var v = num(x); return v === null ? '\u2014' : '$' + (v >= 1 ? v.toFixed(2) : v.toPrecision(3)); }

  function el(tag, props, children) {
    var e = document.createElement(tag);
    if (props) {
      for (var k in props) {
        var v = props[k];
        if (v === undefined || v === null) continue;
        if (k === 'text') e.textContent = String(v);
        else if (k === 'cls') e.className = v;
        else if (k === 'title') e.title = String(v);
        else if (k === 'href') e.setAttribute('href', v);
        else if (k === 'onclick') e.addEventListener('click', v);
        else e.setAttribute(k, String(v));
      }
    }
    (children || []).forEach(function (c) { if (c !== null && c !== undefined) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }
  function s(tag, attrs, children) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, String(attrs[k]));
    (children || []).forEach(function (c) { if (c) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }
  function svgText(x, y, text, attrs) {
    var t = s('text', Object.assign({ x: x, y: y, 'font-size': 10, fill: '#6b7280' }, attrs || {}));
    t.textContent = text;
    return t;
  }

  /** A small line of the last five minutes of one value; a dashed baseline when there is nothing yet. */
  function sparkline(points, key, color, w, h) {
    w = w || 72; h = h || 22;
    var svg = s('svg', { width: w, height: h, viewBox: '0 0 ' + w + ' ' + h, 'data-chart': 'spark' });
    var vals = points.filter(function (p) { return num(p[key]) !== null; });
    if (vals.length < 2) {
      svg.appendChild(s('line', { x1: 0, y1: h - 2, x2: w, y2: h - 2, stroke: '#d1d5db', 'stroke-dasharray': '3 3' }));
      return svg;
    }
    var now = points[points.length - 1].t;
    var span = spanOf(points);
    var max = Math.max.apply(null, vals.map(function (p) { return p[key]; }));
    if (max <= 0) max = 1;
    var pts = vals.map(function (p) {
      var x = w - (now - p.t) / span * w;
      var y = h - 2 - (p[key] / max) * (h - 4);
      return x.toFixed(1) + ',' + y.toFixed(1);
    }).join(' ');
    svg.appendChild(s('polyline', { points: pts, fill: 'none', stroke: color, 'stroke-width': 1.5 }));
    return svg;
  }

  /** Several lines on one time axis (the last five minutes), with the top value and a legend. */
  function timeChart(points, lines, unit, w, h) {
    w = w || 460; h = h || 150;
    var padL = 44, padB = 18, padT = 8;
    var iw = w - padL - 6, ih = h - padB - padT;
    var svg = s('svg', { width: '100%', viewBox: '0 0 ' + w + ' ' + h, 'data-chart': 'time' });
    var now = points.length > 0 ? points[points.length - 1].t : Date.now();
    var span = spanOf(points);
    var max = 0;
    lines.forEach(function (l) { points.forEach(function (p) { var v = num(p[l.key]); if (v !== null && v > max) max = v; }); });
    if (max <= 0) max = 1;
    for (var g = 0; g <= 2; g++) {
      var gy = padT + ih - (g / 2) * ih;
      svg.appendChild(s('line', { x1: padL, y1: gy, x2: padL + iw, y2: gy, stroke: '#e5e7eb' }));
      svg.appendChild(svgText(padL - 4, gy + 3, unit(max * g / 2), { 'text-anchor': 'end' }));
    }
    svg.appendChild(svgText(padL, h - 4, spanLabel(span)));
    svg.appendChild(svgText(padL + iw, h - 4, 'now', { 'text-anchor': 'end' }));
    lines.forEach(function (l) {
      var pts = points.filter(function (p) { return num(p[l.key]) !== null; }).map(function (p) {
        var x = padL + iw - (now - p.t) / span * iw;
        var y = padT + ih - (p[l.key] / max) * ih;
        return x.toFixed(1) + ',' + y.toFixed(1);
      });
      if (pts.length >= 2) svg.appendChild(s('polyline', { points: pts.join(' '), fill: 'none', stroke: l.color, 'stroke-width': 1.6 }));
    });
    var legend = el('div', { cls: 'legend' }, lines.map(function (l) {
      var i = el('i'); i.style.background = l.color;
      return el('span', {}, [i, l.name]);
    }));
    return el('div', {}, [svg, legend]);
  }

  /** One bar split by replica state, widths in proportion to the counts. */
  function stateBar(states, w) {
    w = w || 56;
    var h = 10;
    var total = 0;
    for (var k in states) total += states[k];
    var svg = s('svg', { width: w, height: h, 'data-chart': 'states' });
    var title = [];
    var x = 0;
    for (var st in states) {
      var n = states[st];
      if (n > 0) title.push(n + ' ' + st);
      if (total === 0 || n === 0) continue;
      var bw = n / total * w;
      svg.appendChild(s('rect', { x: x.toFixed(1), y: 0, width: bw.toFixed(1), height: h, fill: STATE_COLORS[st] || '#999' }));
      x += bw;
    }
    if (total === 0) svg.appendChild(s('rect', { x: 0, y: 0, width: w, height: h, fill: '#eef0f3' }));
    var t = s('title'); t.textContent = title.join(', ') || 'no replicas'; svg.appendChild(t);
    return svg;
  }

  /** Batches per size over the last minute, one bar per size from 1 to the largest seen or allowed. */
  function histogram(sizes, maxBatchSize, w, h) {
    w = w || 460; h = h || 130;
    var padB = 16, padT = 12;
    var top = maxBatchSize;
    for (var k in sizes) if (Number(k) > top) top = Number(k);
    top = Math.max(1, Math.min(top, 512));
    var max = 0;
    for (var k2 in sizes) if (sizes[k2] > max) max = sizes[k2];
    var svg = s('svg', { width: '100%', viewBox: '0 0 ' + w + ' ' + h, 'data-chart': 'batch-sizes' });
    var bw = w / top;
    for (var size = 1; size <= top; size++) {
      var n = sizes[size] || 0;
      var bh = max > 0 ? n / max * (h - padB - padT) : 0;
      var r = s('rect', { x: ((size - 1) * bw + 0.5).toFixed(1), y: (h - padB - bh).toFixed(1), width: Math.max(1, bw - 1).toFixed(1), height: bh.toFixed(1), fill: '#5b7bd5' });
      var t = s('title'); t.textContent = 'size ' + size + ': ' + n + ' batches'; r.appendChild(t);
      svg.appendChild(r);
    }
    svg.appendChild(s('line', { x1: 0, y1: h - padB, x2: w, y2: h - padB, stroke: '#9ca3af' }));
    svg.appendChild(svgText(0, h - 3, '1'));
    svg.appendChild(svgText(w, h - 3, String(top), { 'text-anchor': 'end' }));
    svg.appendChild(svgText(w / 2, h - 3, 'batch size', { 'text-anchor': 'middle' }));
    if (max > 0) svg.appendChild(svgText(0, 10, max + ' batches'));
    return svg;
  }

  function trim(list, now, ms) { while (list.length > 0 && now - list[0].t > ms) list.shift(); }

  function ingest(snap) {
    var t = snap.at;
    cluster.push({ t: t, rps: snap.totals.ingressRps });
    trim(cluster, t, HISTORY_MS);
    var seen = new Set();
    snap.applications.forEach(function (a) {
      a.deployments.forEach(function (d) {
        seen.add(d.key);
        var tr = obj(d.traffic) || {};
        var list = series.get(d.key);
        if (!list) { list = []; series.set(d.key, list); }
        list.push({ t: t, rps: num(tr.rps), p50: num(tr.p50Ms), p95: num(tr.p95Ms), p99: num(tr.p99Ms), err: num(tr.errorRate) });
        trim(list, t, HISTORY_MS);
        d.batch.forEach(function (b) {
          var bk = d.key + ' ' + b.method;
          seen.add(bk);
          var bl = batchSeries.get(bk);
          if (!bl) { bl = []; batchSeries.set(bk, bl); }
          bl.push({ t: t, sizes: b.sizes, mean: b.meanBatchSize, rate: b.batchesPerSec });
          trim(bl, t, BATCH_WINDOW_MS);
        });
      });
    });
    // A deployment (or batched method) gone from the snapshot takes its history with it: the maps hold only the
    // latest snapshot's keys, however many deployments came and went.
    [series, batchSeries].forEach(function (m) {
      Array.from(m.keys()).forEach(function (k) { if (!seen.has(k)) m.delete(k); });
    });
  }

  /** Batches per size over the last minute, and their mean size. */
  function batchWindow(key, method) {
    var bl = batchSeries.get(key + ' ' + method) || [];
    var sizes = {}, batches = 0, items = 0;
    bl.forEach(function (p) { for (var k in p.sizes) { sizes[k] = (sizes[k] || 0) + p.sizes[k]; batches += p.sizes[k]; items += p.sizes[k] * Number(k); } });
    return { sizes: sizes, batches: batches, mean: batches > 0 ? items / batches : null };
  }

  function selectedKey() {
    var m = /^#\/(.+)$/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }

  function sloSummary(slo) {
    var o = obj(slo);
    if (!o || !Array.isArray(o.objectives) || o.objectives.length === 0) return el('span', { cls: 'muted', text: '\u2014' });
    var alerting = o.objectives.filter(function (x) { return x && x.alerting; }).length;
    var worst = null;
    o.objectives.forEach(function (x) { var a = num(obj(x.attainment) && x.attainment['5m']); if (a !== null && (worst === null || a < worst)) worst = a; });
    var burn = null;
    o.objectives.forEach(function (x) { var b = num(obj(x.burn) && x.burn['1h']); if (b !== null && (burn === null || b > burn)) burn = b; });
    return el('span', { cls: alerting > 0 ? 'alert' : 'okay', title: o.objectives.length + ' objectives' }, [
      (alerting > 0 ? alerting + ' alerting \u00b7 ' : '') + fmtPct(worst, 1) + ' \u00b7 burn ' + fmt(burn, 1) + 'x',
    ]);
  }

  function deploymentRow(app, d, sel) {
    var tr = obj(d.traffic) || {};
    var list = series.get(d.key) || [];
    var cost = obj(d.cost) || {};
    var batchCell = d.batch.length === 0 ? el('span', { cls: 'muted', text: '\u2014' }) : el('span', {}, d.batch.map(function (b) {
      var win = batchWindow(d.key, b.method);
      return el('div', { 'data-method': b.method, title: b.method + ': last minute ' + win.batches + ' batches; limit ' + b.maxBatchSize }, [
        el('span', { cls: 'mono', text: b.method + ' ' }),
        el('span', { 'data-field': 'batch-mean', text: fmt(win.mean, 1) }),
        el('span', { cls: 'muted', text: ' avg \u00b7 ' + fmt(b.batchesPerSec, 1) + '/s' }),
      ]);
    }));
    var row = el('tr', { cls: 'dep' + (sel ? ' selected' : ''), 'data-deployment': d.key, onclick: function () { location.hash = '#/' + encodeURIComponent(d.key); } }, [
      el('td', {}, [el('a', { href: '#/' + encodeURIComponent(d.key), text: d.name }), d.name === app.ingress ? el('span', { cls: 'muted', text: ' ingress' }) : null]),
      el('td', {}, [el('span', { cls: 'status ' + d.status, 'data-field': 'status', text: d.status, title: d.message })]),
      el('td', {}, [el('div', { cls: 'cell-chart' }, [el('span', { 'data-field': 'replicas', text: d.running + '/' + d.numReplicas }), stateBar(d.states)])]),
      el('td', { cls: 'num' }, [el('div', { cls: 'cell-chart' }, [sparkline(list, 'rps', '#2563eb'), el('span', { 'data-field': 'rps', text: fmt(tr.rps, 1) })])]),
      el('td', { cls: 'num', 'data-field': 'p50', text: fmtMs(tr.p50Ms) }),
      el('td', { cls: 'num', 'data-field': 'p95', text: fmtMs(tr.p95Ms) }),
      el('td', { cls: 'num' }, [el('div', { cls: 'cell-chart' }, [sparkline(list, 'p99', '#d97706'), el('span', { 'data-field': 'p99', text: fmtMs(tr.p99Ms) })])]),
      el('td', { cls: 'num', 'data-field': 'errors', text: fmtPct(tr.errorRate, 2) }),
      el('td', { cls: 'num', 'data-field': 'inflight', text: d.ongoing + ' / ' + (d.queued + d.routerWaiting) }),
      el('td', { 'data-field': 'slo' }, [sloSummary(d.slo)]),
      el('td', { cls: 'num', 'data-field': 'cost', text: fmtMoney(cost.costPer1kRequests) }),
      el('td', {}, [batchCell]),
    ]);
    return row;
  }

  function appsSection(snap, sel) {
    var sec = el('section', { 'data-testid': 'applications' }, [el('h2', { text: 'Applications' })]);
    if (snap.applications.length === 0) { sec.appendChild(el('div', { cls: 'card empty', text: 'No application deployed. Deploy one with shoal deploy APP.' })); return sec; }
    snap.applications.forEach(function (a) {
      var head = el('tr', {}, ['Deployment', 'Status', 'Replicas', 'req/s', 'p50', 'p95', 'p99', 'errors', 'running / waiting', 'SLO (worst 5m \u00b7 1h burn)', '$ / 1k req', 'batch (1 min)'].map(function (h, i) {
        return el('th', { cls: i >= 3 && i <= 8 || i === 10 ? 'num' : null, text: h });
      }));
      var body = a.deployments.map(function (d) { return deploymentRow(a, d, sel === d.key); });
      sec.appendChild(el('div', { cls: 'card', 'data-app': a.name }, [
        el('h3', {}, [a.name, el('span', { cls: 'sub', text: a.routePrefix === null ? '(no route)' : a.routePrefix })]),
        el('div', { cls: 'scroll' }, [el('table', {}, [el('thead', {}, [head]), el('tbody', {}, body)])]),
      ]));
    });
    return sec;
  }

  function findDeployment(snap, key) {
    for (var i = 0; i < snap.applications.length; i++) {
      var a = snap.applications[i];
      for (var j = 0; j < a.deployments.length; j++) if (a.deployments[j].key === key) return { app: a, d: a.deployments[j] };
    }
    return null;
  }

  /** How much of a burn window is covered when less than the window (its length is its name: 5m, 1h), else null. */
  function partialWindow(x, w) {
    var covered = num(obj(x.coveredMs) && x.coveredMs[w]);
    var m = /^(\d+)([mh])$/.exec(w);
    if (covered === null || !m) return null;
    return covered < Number(m[1]) * (m[2] === 'h' ? 3600000 : 60000) ? covered : null;
  }

  /** A burn rate; one over a window not yet covered is marked * (it does not page). */
  function burnCell(x, w) {
    var b = num(obj(x.burn) && x.burn[w]);
    var covered = b === null ? null : partialWindow(x, w);
    if (covered === null) return el('td', { cls: 'num', text: fmt(b, 2) + 'x' });
    return el('td', { cls: 'num muted', 'data-partial': 'true', title: 'over ' + Math.round(covered / 1000) + ' s of ' + w + ': does not page yet', text: fmt(b, 2) + 'x*' });
  }

  function sloTable(slo) {
    var o = obj(slo);
    if (!o || !Array.isArray(o.objectives) || o.objectives.length === 0) return el('div', { cls: 'muted', text: 'No objectives declared (\u2014).' });
    var attW = [], burnW = [];
    o.objectives.forEach(function (x) {
      for (var k in (obj(x.attainment) || {})) if (attW.indexOf(k) < 0) attW.push(k);
      for (var k2 in (obj(x.burn) || {})) if (burnW.indexOf(k2) < 0) burnW.push(k2);
    });
    var head = el('tr', {}, [el('th', { text: 'objective' }), el('th', { cls: 'num', text: 'target' })]
      .concat(attW.map(function (w) { return el('th', { cls: 'num', text: 'attained ' + w }); }))
      .concat([el('th', { cls: 'num', text: 'budget left' })])
      .concat(burnW.map(function (w) { return el('th', { cls: 'num', text: 'burn ' + w }); }))
      .concat([el('th', { text: 'alert' })]));
    var rows = o.objectives.map(function (x) {
      return el('tr', { 'data-objective': x.name }, [
        el('td', { text: String(x.name) + (num(x.thresholdMs) !== null ? ' (< ' + fmtMs(x.thresholdMs) + ')' : '') }),
        el('td', { cls: 'num', text: fmtPct(x.target, 2) }),
      ].concat(attW.map(function (w) { return el('td', { cls: 'num', text: fmtPct(obj(x.attainment) ? x.attainment[w] : null, 2) }); }))
        .concat([el('td', { cls: 'num', text: fmtPct(x.budgetRemaining, 1) })])
        .concat(burnW.map(function (w) { return burnCell(x, w); }))
        .concat([el('td', { cls: x.alerting ? 'alert' : 'okay', text: x.alerting ? 'ALERT' : 'ok' })]));
    });
    var partial = o.objectives.some(function (x) { return burnW.some(function (w) { return partialWindow(x, w) !== null; }); });
    return el('div', { cls: 'scroll' }, [el('table', {}, [el('thead', {}, [head]), el('tbody', {}, rows)]),
      partial ? el('div', { cls: 'muted', 'data-field': 'burn-partial', text: '* window not yet covered (the head has watched for less): shown, does not page' }) : null]);
  }

  function detailSection(snap, key) {
    var found = findDeployment(snap, key);
    if (!found) return null;
    var d = found.d;
    var list = series.get(key) || [];
    var tr = obj(d.traffic) || {};
    var cost = obj(d.cost) || {};
    var reps = snap.replicas.filter(function (r) { return r.app + '/' + r.deployment === key; });
    var cards = [
      el('div', { cls: 'card' }, [el('h3', { text: 'Requests per second' }), timeChart(list, [{ key: 'rps', name: 'req/s', color: '#2563eb' }], function (v) { return fmt(v, 1); })]),
      el('div', { cls: 'card' }, [el('h3', { text: 'Latency' }), timeChart(list, [
        { key: 'p50', name: 'p50', color: '#10b981' }, { key: 'p95', name: 'p95', color: '#6366f1' }, { key: 'p99', name: 'p99', color: '#d97706' },
      ], fmtMs)]),
    ];
    d.batch.forEach(function (b) {
      var win = batchWindow(key, b.method);
      cards.push(el('div', { cls: 'card', 'data-batch': b.method }, [
        el('h3', {}, ['Batch sizes: ' + b.method, el('span', { cls: 'sub', text: 'last minute: ' + win.batches + ' batches, mean ' + fmt(win.mean, 2) + ', limit ' + b.maxBatchSize + (b.adaptive ? ' (adaptive)' : '') })]),
        histogram(win.sizes, b.maxBatchSize),
        el('div', { cls: 'muted', text: 'queued ' + b.queued + ' \u00b7 running ' + b.running + ' \u00b7 ' + fmt(b.itemsPerSec, 1) + ' items/s \u00b7 max wait ' + fmtMs(b.maxWaitMs) }),
      ]));
    });
    cards.push(el('div', { cls: 'card wide' }, [el('h3', { text: 'Service level objectives' }), sloTable(d.slo)]));
    cards.push(el('div', { cls: 'card' }, [el('h3', { text: 'Cost and traffic window' }), el('div', { cls: 'kv' }, [
      el('span', { cls: 'k', text: 'cost per 1k requests' }), el('span', { text: fmtMoney(cost.costPer1kRequests) }),
      el('span', { cls: 'k', text: 'of which busy time' }), el('span', { text: fmtMoney(cost.busyCostPer1kRequests) }),
      el('span', { cls: 'k', text: 'idle capacity' }), el('span', { text: fmtPct(cost.idleShare, 1) }),
      el('span', { cls: 'k', text: 'traffic window' }), el('span', { text: num(tr.windowMs) === null ? '\u2014' : fmt(tr.windowMs / 1000, 0) + ' s' }),
      el('span', { cls: 'k', text: 'version' }), el('span', { cls: 'mono', text: d.version }),
      el('span', { cls: 'k', text: 'rollout' }), el('span', { text: d.rollout ? d.rollout.phase + ' to ' + d.rollout.to + ' at ' + d.rollout.percent + '%' : '\u2014' }),
      el('span', { cls: 'k', text: 'autoscaling' }), el('span', { text: d.autoscaling ? 'target ' + d.autoscaling.target + ' in [' + d.autoscaling.min + ', ' + d.autoscaling.max + ']' : '\u2014' }),
      el('span', { cls: 'k', text: 'message' }), el('span', { text: d.message || '\u2014' }),
    ])]));
    return el('section', { 'data-testid': 'detail', 'data-deployment': key }, [
      el('h2', {}, [el('a', { cls: 'close', href: '#', text: 'close \u2715' }), 'Deployment ' + key]),
      el('div', { cls: 'detail-grid' }, cards),
      replicasCard(reps, 'Replicas of ' + key),
    ]);
  }

  function meter(used, total) {
    var bar = el('div');
    bar.style.width = (total > 0 ? Math.min(100, used / total * 100) : 0).toFixed(1) + '%';
    return el('div', { cls: 'meter' }, [bar]);
  }

  function workersSection(snap) {
    var sec = el('section', { 'data-testid': 'workers' }, [el('h2', { text: 'Workers' })]);
    if (snap.workers.length === 0) { sec.appendChild(el('div', { cls: 'card empty', text: 'No worker has joined.' })); return sec; }
    sec.appendChild(el('div', { cls: 'workers' }, snap.workers.map(function (w) {
      var devices = w.devices.map(function (dv) {
        return el('div', { 'data-device': dv.index }, [
          el('div', { cls: 'mono', text: '#' + dv.index + ' ' + dv.name + ' (' + dv.kind + ')  ' + fmtBytes(dv.totalBytes - dv.freeBytes) + ' / ' + fmtBytes(dv.totalBytes) + ' used at join' }),
          meter(dv.totalBytes - dv.freeBytes, dv.totalBytes),
        ]);
      });
      return el('div', { cls: 'card', 'data-worker': w.workerId }, [
        el('h3', {}, [w.name, el('span', { cls: 'sub', text: w.workerId })]),
        el('div', { cls: 'kv' }, [
          el('span', { cls: 'k', text: 'state' }), el('span', { cls: 'status ' + w.state, text: w.state }),
          el('span', { cls: 'k', text: 'pid' }), el('span', { text: w.pid === null ? '\u2014' : String(w.pid) }),
          el('span', { cls: 'k', text: 'replicas' }), el('span', { text: String(w.replicas) }),
          el('span', { cls: 'k', text: 'ingress req/s' }), el('span', { 'data-field': 'worker-rps', text: fmt(w.ingressRps, 1) }),
          el('span', { cls: 'k', text: 'data-plane req/s' }), el('span', { text: fmt(w.dataRps, 1) }),
        ]),
        el('div', { cls: 'muted', text: 'CPUs placed ' + fmt(w.used.cpus, 1) + ' of ' + w.cpus }), meter(w.used.cpus, w.cpus),
        el('div', { cls: 'muted', text: 'memory placed ' + fmtBytes(w.used.memory) + ' of ' + fmtBytes(w.memoryBytes) }), meter(w.used.memory, w.memoryBytes),
      ].concat(devices));
    })));
    return sec;
  }

  function replicasCard(reps, title) {
    var head = el('tr', {}, ['replica', 'deployment', 'version', 'state', 'worker', 'devices', 'running', 'queued', ''].map(function (h, i) {
      return el('th', { cls: i === 6 || i === 7 ? 'num' : null, text: h });
    }));
    var rows = reps.map(function (r) {
      var note = r.error ? el('span', { cls: 'error-text', text: r.error }) : r.load ? el('span', { cls: 'muted', text: 'loading ' + fmtBytes(r.load.bytes) + ' / ' + fmtBytes(r.load.total) }) : null;
      return el('tr', { 'data-testid': 'replica-row', 'data-replica': r.replicaId, 'data-state': r.state }, [
        el('td', { cls: 'mono', text: r.replicaId }),
        el('td', { text: r.app + '/' + r.deployment }),
        el('td', { cls: 'mono', text: r.version }),
        el('td', {}, [el('span', { cls: 'status ' + r.state, text: r.state })]),
        el('td', { cls: 'mono', text: r.workerId }),
        el('td', { text: r.devices.length > 0 ? r.devices.join(', ') : '\u2014' }),
        el('td', { cls: 'num', text: r.ongoing === null ? '\u2014' : String(r.ongoing) }),
        el('td', { cls: 'num', text: r.queued === null ? '\u2014' : String(r.queued) }),
        el('td', {}, [note]),
      ]);
    });
    return el('div', { cls: 'card' }, [el('h3', { text: title }), reps.length === 0 ? el('div', { cls: 'muted', text: 'none' }) : el('div', { cls: 'scroll' }, [el('table', {}, [el('thead', {}, [head]), el('tbody', {}, rows)])])]);
  }

  function tile(label, value, testid, chart) {
    return el('div', { cls: 'tile' }, [el('div', { cls: 'label', text: label }), el('div', { cls: 'value', 'data-testid': testid, text: value }), chart || null]);
  }

  function render(snap) {
    var sel = selectedKey();
    var deployments = 0, healthy = 0, alerting = 0;
    snap.applications.forEach(function (a) {
      a.deployments.forEach(function (d) {
        deployments++;
        if (d.status === 'HEALTHY') healthy++;
        var o = obj(d.slo);
        if (o && Array.isArray(o.objectives)) o.objectives.forEach(function (x) { if (x && x.alerting) alerting++; });
      });
    });
    var rs = snap.totals.replicas;
    var tiles = el('section', { cls: 'tiles', 'data-testid': 'tiles' }, [
      tile('workers alive', snap.totals.workersAlive + ' / ' + snap.totals.workers, 'workers-alive'),
      tile('replicas running', rs.RUNNING + ' / ' + (rs.STARTING + rs.RUNNING + rs.DRAINING + rs.FAILED), 'replicas-running', stateBar(rs, 160)),
      tile('ingress req/s (all workers)', fmt(snap.totals.ingressRps, 1), 'ingress-rps', sparkline(cluster, 'rps', '#2563eb', 160, 26)),
      tile('applications', String(snap.applications.length), 'applications-count'),
      tile('deployments healthy', healthy + ' / ' + deployments, 'deployments-healthy'),
      tile('SLO objectives alerting', String(alerting), 'slo-alerting'),
    ]);
    var main = document.getElementById('main');
    var parts = [tiles];
    var detail = sel ? detailSection(snap, sel) : null;
    if (detail) parts.push(detail);
    parts.push(appsSection(snap, sel), workersSection(snap));
    parts.push(el('section', { 'data-testid': 'replicas' }, [el('h2', { text: 'Replicas' }), replicasCard(snap.replicas, snap.replicas.length + ' replicas')]));
    main.replaceChildren.apply(main, parts);
    document.getElementById('cluster-addr').textContent = snap.cluster.address + '  \u00b7  http ' + snap.cluster.http;
    document.getElementById('updated').textContent = 'updated ' + new Date(snap.at).toLocaleTimeString();
  }

  function setConn(state) {
    var c = document.getElementById('conn');
    c.textContent = state;
    c.className = 'pill ' + (state === 'live' ? 'live' : 'down');
  }

  var es = new EventSource('/api/dashboard/events');
  es.addEventListener('open', function () { setConn('live'); });
  es.addEventListener('error', function () { setConn(es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting'); });
  es.addEventListener('snapshot', function (e) {
    var snap = JSON.parse(e.data);
    setConn('live');
    ingest(snap);
    last = snap;
    render(snap);
  });
  window.addEventListener('hashchange', function () { if (last) render(last); });
})();
`;
