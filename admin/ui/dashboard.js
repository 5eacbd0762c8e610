// sluice dashboard. It polls the JSON monitoring API about once a second
// and updates the page in place. The API reports the present only, so the
// charts draw from rings of samples kept here: the last five minutes.
//
// Plain JavaScript on purpose: no framework, no build step, nothing loaded
// from anywhere but this admin listener (the page's CSP forbids it). Every
// value from the API reaches the page through textContent or a data
// attribute, never as markup.
'use strict';

(function () {
  const POLL_MS = 1000;
  const MAX_SPAN_MS = 5 * 60 * 1000; // the most a chart shows ...
  const MIN_SPAN_MS = 60 * 1000; // ... and the least: a fresh page fills a minute, then widens
  const HISTORY = 330; // samples kept: a little over MAX_SPAN_MS at one a second
  const GAP_MS = 5000; // a longer silence (sluice down, tab asleep) breaks a chart's line
  const REASONS = ['rate_limited', 'queue_full', 'queue_timeout', 'breaker_open', 'no_healthy_upstream', 'shutting_down', 'overloaded'];
  const REASON_COLOR = {
    rate_limited: '#7048e8',
    queue_full: '#e03131',
    queue_timeout: '#f76707',
    breaker_open: '#c2255c',
    no_healthy_upstream: '#495057',
    shutting_down: '#adb5bd',
    overloaded: '#862e9c',
  };
  const ADMITTED_COLOR = '#1c7ed6';
  const LATENCY_COLOR = '#1c7ed6';
  const QWAIT_COLOR = '#f76707';
  const LEVEL_COLOR = { ok: '#2f9e44', low: '#e8890c', high: '#e03131' };
  const BREAKER_COLOR = { closed: LEVEL_COLOR.ok, 'half-open': LEVEL_COLOR.low, open: LEVEL_COLOR.high, none: '#ced4da' };
  const CODE_CLASSES = ['2xx', '3xx', '4xx', '5xx'];
  const CODE_COLOR = { '2xx': '#2f9e44', '3xx': '#66a80f', '4xx': '#f59f00', '5xx': '#e03131' };

  // Ring keeps the newest n values, oldest first.
  class Ring {
    constructor(n) { this.buf = new Array(n); this.head = 0; this.size = 0; }
    push(v) {
      const n = this.buf.length;
      this.buf[(this.head + this.size) % n] = v;
      if (this.size < n) this.size++;
      else this.head = (this.head + 1) % n;
    }
    at(i) { return this.buf[(this.head + i) % this.buf.length]; }
    last() { return this.size ? this.at(this.size - 1) : undefined; }
    since(t) {
      const out = [];
      for (let i = 0; i < this.size; i++) { const s = this.at(i); if (s.t >= t) out.push(s); }
      return out;
    }
  }

  const routes = new Map(); // name -> card
  const upstreams = new Map(); // name -> card
  let skew = 0; // the server's clock minus ours, in ms, as of the last poll
  let polls = 0;
  let lastNow = 0;
  let firstNow = 0; // the first poll's time: how much history the rings hold
  let span = MIN_SPAN_MS; // what the charts show now

  class AuthError extends Error {}

  async function getJSON(path) {
    const res = await fetch(path, { cache: 'no-store', credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (res.status === 401) throw new AuthError('401');
    if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
    return res.json();
  }

  async function poll() {
    const started = Date.now();
    try {
      const [ov, list, ups] = await Promise.all([
        getJSON('/api/v1/overview'), getJSON('/api/v1/routes'), getJSON('/api/v1/upstreams'),
      ]);
      const details = await Promise.all(list.map((r) =>
        getJSON('/api/v1/routes/' + encodeURIComponent(r.name)).catch((e) => {
          if (e instanceof AuthError) throw e;
          return r; // gone in a reload between the two calls: the summary will do
        })));
      skew = ov.timestamp - Date.now();
      lastNow = ov.timestamp;
      if (!firstNow || ov.timestamp < firstNow) firstNow = ov.timestamp;
      span = Math.min(MAX_SPAN_MS, Math.max(MIN_SPAN_MS, lastNow - firstNow));
      byId('span').textContent = fmtSpan(span);
      renderOverview(ov);
      renderCards('routes', 'route-card', 'route', routes, details, updateRoute, ov.timestamp);
      renderCards('upstreams', 'upstream-card', 'upstream', upstreams, ups, updateUpstream, ov.timestamp);
      polls++;
      document.body.dataset.polls = String(polls);
      setStatus('live', 'live · ' + new Date(ov.timestamp).toLocaleTimeString());
    } catch (e) {
      if (e instanceof AuthError) setStatus('unauthorized', 'not authorized: reload the page to log in');
      else setStatus('offline', 'cannot reach sluice, retrying…');
    }
    setTimeout(poll, Math.max(100, POLL_MS - (Date.now() - started)));
  }

  function setStatus(status, text) {
    document.body.dataset.status = status;
    byId('status-text').textContent = text;
  }

  function renderOverview(ov) {
    byId('version').textContent = ov.version || '';
    byId('uptime').textContent = fmtDuration(ov.uptime_ms);
    byId('requests-total').textContent = fmtCount(ov.requests_total);
    byId('admitted-total').textContent = fmtCount(ov.admitted_total);
    byId('rejected-total').textContent = fmtCount(ov.rejected_total);
    const by = ov.routes_by_level || {};
    for (const lv of ['ok', 'low', 'high']) {
      const n = by[lv] || 0;
      byId('level-' + lv).textContent = String(n);
      byId('level-' + lv).parentElement.dataset.count = String(n);
    }
    const shedding = overloadBanner(ov.overload);
    document.title = (shedding ? 'overloaded · ' : '') + (by.high ? by.high + ' high · ' : '') + 'sluice';
  }

  // overloadBanner shows, while the process-level overload manager sheds
  // (the overview's "overload"), what it refuses and why, e.g.
  // "overloaded: shedding sheddable requests (scheduling latency p99
  // 23 ms)". It reports whether it is shown.
  function overloadBanner(o) {
    const el = byId('overload');
    const on = !!o && o.state === 'shedding';
    document.body.dataset.overload = on ? 'shedding' : 'normal';
    el.hidden = !on;
    if (!on) { el.textContent = ''; return false; }
    const parts = [];
    if (o.memory_over) {
      parts.push('heap ' + fmtBytes(o.heap_bytes) + ' over the memory limit of ' + fmtBytes(o.memory_limit_bytes) + ': refusing new requests');
    }
    if (o.shedding && o.shedding.length) {
      parts.push('shedding ' + o.shedding.join(' and ') + ' requests (scheduling latency p99 ' + fmtMs(o.sched_latency_p99_ms) + ')');
    }
    el.textContent = 'overloaded: ' + parts.join('; ');
    return true;
  }

  // renderCards keeps one card per item, in the API's order, and drops
  // the cards of items a reload removed.
  function renderCards(boxId, tpl, kind, cards, items, update, now) {
    const box = byId(boxId);
    const seen = new Set();
    items.forEach((item, i) => {
      seen.add(item.name);
      let card = cards.get(item.name);
      if (!card) {
        card = makeCard(tpl, kind, item.name);
        cards.set(item.name, card);
      }
      if (box.children[i] !== card.el) box.insertBefore(card.el, box.children[i] || null);
      update(card, item, now);
    });
    for (const [name, card] of cards) {
      if (!seen.has(name)) { card.el.remove(); cards.delete(name); }
    }
  }

  function makeCard(tpl, kind, name) {
    const el = byId(tpl).content.firstElementChild.cloneNode(true);
    el.dataset[kind] = name;
    const f = {};
    for (const n of el.querySelectorAll('[data-f]')) f[n.dataset.f] = n;
    return { el, f, hist: new Ring(HISTORY) };
  }

  // ---- routes ----

  function updateRoute(card, d, now) {
    const { el, f } = card;
    const level = d.backpressure_level || 'ok';
    const rejected = d.rejected_total || {};
    const perSec = d.rejected_per_sec_by_reason || {};
    const rejectedTotal = REASONS.reduce((a, r) => a + (rejected[r] || 0), 0);
    el.dataset.level = level;
    el.dataset.rejectedTotal = String(rejectedTotal);
    el.dataset.admittedTotal = String(d.admitted_total || 0);

    f.name.textContent = d.name;
    f.upstream.textContent = d.upstream;
    f.level.textContent = level;
    f.ratio.textContent = pct(d.backpressure_ratio);
    f.limits.textContent = limitsText(d);
    storeText(f.store, d.rate_limit);
    faultText(f.fault, d.fault);
    errorsList(f.errors, d.recent_errors);
    meter(f['inflight-bar'], f.inflight, d.inflight, d.max_concurrent, d.max_concurrent ? '' : 'unlimited');
    meter(f['queue-bar'], f.queue, d.queue_depth, d.queue_capacity, d.max_concurrent ? '' : 'no queue');
    f['admitted-rate'].textContent = fmtRate(d.admitted_per_sec) + '/s';
    f['rejected-rate'].textContent = fmtRate(d.rejected_per_sec) + '/s';
    toggle(f['rejected-rate'], 'nonzero', d.rejected_per_sec > 0);
    f['latency-p99'].textContent = quantile(d.latency_ms);
    f['qwait-p99'].textContent = d.max_concurrent ? quantile(d.queue_wait_ms) : '–';
    reasonRows(f.reasons, rejected, perSec);

    card.hist.push({
      t: now,
      level,
      ratio: d.backpressure_ratio || 0,
      admitted: d.admitted_per_sec || 0,
      rejected: Object.assign({}, perSec),
      latency: d.latency_ms && d.latency_ms.count ? d.latency_ms.p99 : null,
      qwait: d.max_concurrent && d.queue_wait_ms && d.queue_wait_ms.count ? d.queue_wait_ms.p99 : null,
    });
    card.draw = () => drawRoute(card);
    card.draw();
  }

  // errorsList shows the route's last upstream failures (the API's
  // "recent_errors", newest first), one line each: time, kind, status,
  // target.
  function errorsList(el, errs) {
    errs = errs || [];
    el.hidden = errs.length === 0;
    const text = errs.map((e) => new Date(e.time).toLocaleTimeString() + ' ' + e.kind + ' ' + e.status + ' ' + e.target);
    if (el.dataset.text === text.join('\n')) return;
    el.dataset.text = text.join('\n');
    el.replaceChildren(...text.map((t) => {
      const li = document.createElement('li');
      li.textContent = t;
      return li;
    }));
  }

  // faultText shows the fault injected now (the API's "fault", absent
  // when none): its kinds with their percents, and when a runtime toggle
  // ends, e.g. "fault: delay 100%, abort 30% until 14:05:09".
  function faultText(el, fault) {
    el.hidden = !fault;
    if (!fault) { el.textContent = ''; return; }
    const kinds = (fault.kinds || []).map((k) => k.kind + ' ' + k.percent + '%').join(', ');
    let s = 'fault: ' + kinds;
    if (fault.header) s += ' (requests with ' + fault.header + ')';
    if (fault.until) s += ' until ' + new Date(fault.until).toLocaleTimeString();
    else s += ' (config)';
    el.textContent = s;
  }

  // storeText warns while a global rate limit cannot reach its Redis and
  // limits locally (the API's rate_limit.store), e.g. "redis down: limiting
  // locally to 33.3/s, burst 4".
  function storeText(el, rl) {
    const st = rl && rl.store;
    const down = !!st && !st.up;
    el.hidden = !down;
    el.textContent = down ? 'redis down: limiting locally to ' + fmtRate(st.fallback_rps) + '/s, burst ' + st.fallback_burst : '';
  }

  function limitsText(d) {
    const parts = [];
    if (d.rate_limit) parts.push('rate ' + fmtRate(d.rate_limit.rps) + '/s, burst ' + d.rate_limit.burst + (d.rate_limit.key !== 'none' ? ' per ' + d.rate_limit.key : '') + (d.rate_limit.scope === 'global' ? ' (global)' : ''));
    if (d.max_concurrent) parts.push(d.max_concurrent + ' concurrent');
    if (d.max_concurrent) parts.push('queue ' + d.queue_capacity + (d.queue_max_wait_ms ? ' × ' + fmtMs(d.queue_max_wait_ms) : ''));
    if (d.timeout_ms) parts.push('timeout ' + fmtMs(d.timeout_ms));
    if (d.breaker) parts.push('breaker');
    return parts.length ? parts.join(' · ') : 'no limits';
  }

  function meter(bar, label, n, cap, unlimited) {
    n = n || 0;
    if (!cap) {
      bar.parentElement.dataset.unlimited = '';
      bar.style.width = '0';
      label.textContent = unlimited ? (unlimited === 'unlimited' ? n + ' · unlimited' : unlimited) : n + ' / 0';
      return;
    }
    delete bar.parentElement.dataset.unlimited;
    const u = Math.min(1, n / cap);
    bar.style.width = (u * 100).toFixed(1) + '%';
    bar.dataset.usage = u >= 1 ? 'full' : u >= 0.75 ? 'warn' : 'ok';
    label.textContent = n + ' / ' + cap;
  }

  function reasonRows(tbody, totals, perSec) {
    const rows = [];
    for (const r of REASONS) {
      if (!totals[r] && !perSec[r]) continue;
      const tr = document.createElement('tr');
      tr.dataset.reason = r;
      const name = document.createElement('td');
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = REASON_COLOR[r];
      name.append(sw, r);
      tr.append(name, cell(fmtRate(perSec[r]) + '/s'), cell(fmtCount(totals[r])));
      rows.push(tr);
    }
    if (!rows.length) {
      const tr = document.createElement('tr');
      const td = cell('none yet');
      td.className = 'none';
      td.colSpan = 3;
      tr.append(td);
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
  }

  function drawRoute(card) {
    const { f } = card;
    const now = lastNow;
    const samples = card.hist.since(now - span - 2 * POLL_MS);
    const active = REASONS.filter((r) => samples.some((s) => s.rejected[r] > 0));
    const layers = [{ name: 'admitted', color: ADMITTED_COLOR, get: (s) => s.admitted }]
      .concat(active.map((r) => ({ name: r, color: REASON_COLOR[r], get: (s) => s.rejected[r] || 0 })));
    drawStacked(f['rate-chart'], samples, now, layers, (v) => fmtAxis(v));
    const last = card.hist.last() || {};
    legend(f['rate-legend'], layers.map((l) => [l.color, l.name + ' ' + fmtRate(l.get(last)) ]));
    const lines = [{ name: 'latency', color: LATENCY_COLOR, get: (s) => s.latency }];
    if (samples.some((s) => s.qwait != null)) lines.push({ name: 'queue wait', color: QWAIT_COLOR, get: (s) => s.qwait });
    drawLines(f['latency-chart'], samples, now, lines, (v) => fmtMs(v));
    legend(f['latency-legend'], lines.map((l) => [l.color, l.name + ' ' + (l.get(last) == null ? '–' : fmtMs(l.get(last)))]));
    drawLevels(f['bp-chart'], samples, now);
  }

  // ---- upstreams ----

  function updateUpstream(card, u, now) {
    const { el, f } = card;
    const br = u.breaker;
    const state = br ? br.state : 'none';
    el.dataset.breakerState = state;
    el.dataset.openUntil = br && br.open_until ? String(br.open_until) : '';
    f['breaker-figure'].hidden = !br;
    f.name.textContent = u.name;
    f.breaker.textContent = br ? 'breaker ' + state : 'no breaker';
    card.opened = br && br.transitions ? br.transitions.open || 0 : 0;
    breakerDetail(card);

    const items = (u.targets || []).map((t) => {
      const li = document.createElement('li');
      const dot = document.createElement('span');
      dot.className = 'health';
      dot.dataset.healthy = String(t.healthy);
      dot.title = t.healthy ? 'healthy' : 'unhealthy';
      const url = document.createElement('span');
      url.className = 'url';
      url.textContent = t.url;
      const inflight = document.createElement('span');
      inflight.className = 'inflight';
      inflight.textContent = t.inflight + ' in flight';
      li.append(dot, url, inflight);
      return li;
    });
    const bal = document.createElement('li');
    bal.className = 'muted';
    bal.textContent = u.healthy_targets + ' of ' + (u.targets || []).length + ' healthy · ' + u.balance;
    f.targets.replaceChildren(...items, bal);

    // Answers per second by class, from the growth of the counters since
    // the previous poll.
    const codes = classCounts(u.requests_by_code || {});
    const rates = {};
    const prev = card.prevCodes;
    for (const c of CODE_CLASSES) {
      rates[c] = prev && now > prev.t ? Math.max(0, (codes[c] - prev.codes[c]) * 1000 / (now - prev.t)) : 0;
    }
    card.prevCodes = { t: now, codes };
    card.hist.push({ t: now, state, codes: rates });
    card.draw = () => drawUpstream(card);
    card.draw();
  }

  function breakerDetail(card) {
    const { el, f } = card;
    const state = el.dataset.breakerState;
    const opened = card.opened ? 'opened ' + card.opened + (card.opened === 1 ? ' time' : ' times') : 'never opened';
    if (state === 'open' && el.dataset.openUntil) {
      const left = Number(el.dataset.openUntil) - (Date.now() + skew);
      const b = document.createElement('b');
      b.textContent = left > 0 ? (left / 1000).toFixed(1) + ' s' : 'now';
      f['breaker-detail'].replaceChildren('half-open in ', b, ' · ' + opened);
    } else if (state === 'half-open') {
      f['breaker-detail'].replaceChildren('probing: a few requests decide · ' + opened);
    } else if (state === 'closed') {
      f['breaker-detail'].replaceChildren('closed · ' + opened);
    } else {
      f['breaker-detail'].replaceChildren('no breaker configured');
    }
  }

  function classCounts(byCode) {
    const out = { '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 };
    for (const [code, n] of Object.entries(byCode)) {
      const c = code[0] + 'xx';
      if (c in out) out[c] += n;
    }
    return out;
  }

  function drawUpstream(card) {
    const { f } = card;
    const now = lastNow;
    const samples = card.hist.since(now - span - 2 * POLL_MS);
    const used = CODE_CLASSES.filter((c) => c === '2xx' || samples.some((s) => s.codes[c] > 0));
    const layers = used.map((c) => ({ name: c, color: CODE_COLOR[c], get: (s) => s.codes[c] }));
    drawStacked(f['codes-chart'], samples, now, layers, (v) => fmtAxis(v));
    const last = card.hist.last() || { codes: {} };
    legend(f['codes-legend'], layers.map((l) => [l.color, l.name + ' ' + fmtRate(l.get(last))]));
    if (!f['breaker-figure'].hidden) drawBand(f['breaker-chart'], samples, now);
  }

  // ---- charts ----

  function prepare(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return null;
    const W = Math.round(w * dpr);
    const H = Math.round(h * dpr);
    if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx, w, h };
  }

  // gridStep spaces the time grid so a chart has a handful of lines.
  function gridStep() { return span <= 90000 ? 10000 : span <= 180000 ? 30000 : 60000; }

  // frame draws the grid (time lines counted back from now, the top and
  // middle of the scale) and returns the scales of the plot area.
  function frame(c, now, yMax, fmt, ticks) {
    const L = fmt ? 44 : 0;
    const T = 3;
    const pw = c.w - L - 1;
    const ph = c.h - T - 1;
    const g = {
      L, T, pw, ph,
      x: (t) => L + pw * (1 - (now - t) / span),
      y: (v) => T + ph * (1 - Math.max(0, Math.min(v, yMax)) / yMax),
    };
    const { ctx } = c;
    ctx.save();
    ctx.lineWidth = 1;
    ctx.strokeStyle = '#eceef1';
    ctx.beginPath();
    for (let back = gridStep(); back < span; back += gridStep()) {
      const x = Math.round(g.x(now - back)) + 0.5;
      ctx.moveTo(x, T);
      ctx.lineTo(x, T + ph);
    }
    for (const v of ticks || [yMax, yMax / 2]) {
      const y = Math.round(g.y(v)) + 0.5;
      ctx.moveTo(L, y);
      ctx.lineTo(L + pw, y);
    }
    ctx.stroke();
    ctx.strokeStyle = '#ced4da';
    ctx.beginPath();
    ctx.moveTo(L, Math.round(g.y(0)) + 0.5);
    ctx.lineTo(L + pw, Math.round(g.y(0)) + 0.5);
    ctx.stroke();
    if (fmt) {
      ctx.fillStyle = '#868e96';
      ctx.font = '10px system-ui, sans-serif';
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      for (const v of ticks || [yMax, yMax / 2]) ctx.fillText(fmt(v), L - 5, Math.min(Math.max(g.y(v), T + 5), T + ph - 4));
    }
    ctx.restore();
    return g;
  }

  // segments splits samples where polling stopped for a while, so a chart
  // does not draw a line across an outage.
  function segments(samples) {
    const out = [];
    let cur = [];
    for (const s of samples) {
      if (cur.length && s.t - cur[cur.length - 1].t > GAP_MS) { out.push(cur); cur = []; }
      cur.push(s);
    }
    if (cur.length) out.push(cur);
    return out;
  }

  function drawStacked(canvas, samples, now, layers, fmt) {
    const c = prepare(canvas);
    if (!c) return;
    let max = 0;
    for (const s of samples) max = Math.max(max, layers.reduce((a, l) => a + (l.get(s) || 0), 0));
    const g = frame(c, now, niceCeil(max), fmt);
    const { ctx } = c;
    for (const seg of segments(samples)) {
      const base = seg.map(() => 0);
      for (const l of layers) {
        const top = seg.map((s, i) => base[i] + (l.get(s) || 0));
        if (top.every((v, i) => v === base[i])) continue;
        ctx.beginPath();
        seg.forEach((s, i) => (i ? ctx.lineTo(g.x(s.t), g.y(top[i])) : ctx.moveTo(g.x(s.t), g.y(top[i]))));
        for (let i = seg.length - 1; i >= 0; i--) ctx.lineTo(g.x(seg[i].t), g.y(base[i]));
        ctx.closePath();
        ctx.globalAlpha = 0.75;
        ctx.fillStyle = l.color;
        ctx.fill();
        ctx.globalAlpha = 1;
        ctx.beginPath();
        seg.forEach((s, i) => (i ? ctx.lineTo(g.x(s.t), g.y(top[i])) : ctx.moveTo(g.x(s.t), g.y(top[i]))));
        ctx.strokeStyle = l.color;
        ctx.lineWidth = 1.25;
        ctx.stroke();
        for (let i = 0; i < top.length; i++) base[i] = top[i];
      }
    }
  }

  function drawLines(canvas, samples, now, series, fmt) {
    const c = prepare(canvas);
    if (!c) return;
    let max = 0;
    for (const s of samples) for (const l of series) max = Math.max(max, l.get(s) || 0);
    const g = frame(c, now, niceCeil(max), fmt);
    const { ctx } = c;
    ctx.lineWidth = 1.75;
    ctx.lineJoin = 'round';
    for (const l of series) {
      ctx.strokeStyle = l.color;
      for (const seg of segments(samples)) {
        ctx.beginPath();
        let pen = false;
        for (const s of seg) {
          const v = l.get(s);
          if (v == null) { pen = false; continue; }
          if (pen) ctx.lineTo(g.x(s.t), g.y(v));
          else ctx.moveTo(g.x(s.t), g.y(v));
          pen = true;
        }
        ctx.stroke();
      }
    }
  }

  // drawLevels draws the backpressure ratio as bars coloured by level,
  // with the level thresholds dashed.
  function drawLevels(canvas, samples, now) {
    const c = prepare(canvas);
    if (!c) return;
    const g = frame(c, now, 1, (v) => pct(v), [0.5]);
    const { ctx } = c;
    let prevT = null;
    for (const s of samples) {
      const from = prevT != null && s.t - prevT <= GAP_MS ? prevT : s.t - POLL_MS;
      // Whole pixels: bars that meet on fractions leave seams.
      const x0 = Math.max(g.L, Math.floor(g.x(from)));
      const x1 = Math.ceil(g.x(s.t));
      const y = Math.round(g.y(s.ratio));
      ctx.fillStyle = LEVEL_COLOR[s.level] || LEVEL_COLOR.ok;
      ctx.fillRect(x0, y, Math.max(1, x1 - x0), Math.round(g.y(0)) - y);
      prevT = s.t;
    }
    ctx.save();
    ctx.setLineDash([3, 3]);
    ctx.strokeStyle = '#495057';
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (const v of [0.1, 0.5]) {
      const y = Math.round(g.y(v)) + 0.5;
      ctx.moveTo(g.L, y);
      ctx.lineTo(g.L + g.pw, y);
    }
    ctx.stroke();
    ctx.restore();
  }

  // drawBand draws the breaker's state over time as a coloured band.
  function drawBand(canvas, samples, now) {
    const c = prepare(canvas);
    if (!c) return;
    const L = 44;
    const x = (t) => L + (c.w - L - 1) * (1 - (now - t) / span);
    c.ctx.fillStyle = '#f1f3f5';
    c.ctx.fillRect(L, 0, c.w - L - 1, c.h);
    let prevT = null;
    for (const s of samples) {
      const from = prevT != null && s.t - prevT <= GAP_MS ? prevT : s.t - POLL_MS;
      const x0 = Math.max(L, Math.floor(x(from)));
      c.ctx.fillStyle = BREAKER_COLOR[s.state] || BREAKER_COLOR.none;
      c.ctx.fillRect(x0, 0, Math.max(1, Math.ceil(x(s.t)) - x0), c.h);
      prevT = s.t;
    }
  }

  function legend(el, items) {
    el.replaceChildren(...items.map(([color, label]) => {
      const span = document.createElement('span');
      span.className = 'item';
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = color;
      span.append(sw, label);
      return span;
    }));
  }

  // ---- formatting ----

  const nf = new Intl.NumberFormat('en-US');

  function byId(id) { return document.getElementById(id); }
  function cell(text) { const td = document.createElement('td'); td.textContent = text; return td; }
  function toggle(el, attr, on) { if (on) el.dataset[attr] = ''; else delete el.dataset[attr]; }
  function pct(r) { return Math.round((r || 0) * 100) + '%'; }
  function fmtCount(n) { return n == null ? '–' : nf.format(n); }
  function fmtRate(v) {
    if (v == null || isNaN(v)) return '–';
    if (v === 0) return '0';
    if (v < 10) return v.toFixed(1);
    return nf.format(Math.round(v));
  }
  function fmtMs(v) {
    if (v == null) return '–';
    if (v < 0.1) return '<0.1 ms';
    if (v < 10) return v.toFixed(1) + ' ms';
    if (v < 1000) return Math.round(v) + ' ms';
    return (v / 1000).toFixed(v < 10000 ? 2 : 1).replace(/\.?0+$/, '') + ' s';
  }
  function fmtBytes(n) {
    if (!n) return '0 B';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i && n < 10 ? n.toFixed(1) : String(Math.round(n))) + ' ' + units[i];
  }
  function fmtAxis(v) {
    if (v >= 1000) return (v / 1000).toFixed(v % 1000 ? 1 : 0) + 'k';
    return String(Math.round(v * 100) / 100);
  }
  function fmtSpan(ms) {
    const s = Math.round(ms / 1000);
    return s < 120 ? s + ' s' : (s / 60).toFixed(s % 60 ? 1 : 0) + ' min';
  }
  function fmtDuration(ms) {
    const s = Math.floor((ms || 0) / 1000);
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + (s % 60) + 's';
    return s + 's';
  }
  function quantile(q) { return q && q.count ? fmtMs(q.p99) : '–'; }
  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const e = Math.pow(10, Math.floor(Math.log10(v)));
    const f = v / e;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * e;
  }

  // The time until a breaker goes half-open counts down between polls.
  setInterval(() => { for (const card of upstreams.values()) breakerDetail(card); }, 200);
  window.addEventListener('resize', () => {
    for (const card of routes.values()) if (card.draw) card.draw();
    for (const card of upstreams.values()) if (card.draw) card.draw();
  });
  poll();
})();
