/**
 * The dashboard's one browser script, served as /assets/app.js (plain ES2020, no build step). It refreshes a
 * page's live part (`#live`, the server's `?fragment=1` of the same address), draws a run's training-loss and
 * evaluation curves with uPlot (served from node_modules as /assets/uplot.js) from its curve endpoint, asks
 * before a cancel, and says when the Temporal server (or the dashboard) stops answering and when it is back.
 * It writes only text (`textContent`) or the server's own escaped HTML into the page.
 */
export const CLIENT_JS = String.raw`(function () {
  'use strict';
  var body = document.body;
  var refresh = Number(body.getAttribute('data-refresh') || 0);
  var banner = document.getElementById('banner');
  var wasDown = false;

  function say(cls, text) {
    banner.className = cls;
    banner.textContent = text;
  }

  function health() {
    return fetch('/api/health', { cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (h) {
        if (h.temporal === 'down') {
          wasDown = true;
          say('down', 'The Temporal server at ' + h.address + ' does not answer (since ' + h.since + ': ' + h.error + '); reconnecting…');
        } else if (wasDown) {
          wasDown = false;
          say('up', 'Reconnected to the Temporal server at ' + h.address + '.');
          if (document.getElementById('error-page')) location.reload(); // a page that failed while it was down
          setTimeout(function () { if (!wasDown) banner.className = ''; }, 10000);
        }
        body.setAttribute('data-temporal', h.temporal);
      })
      .catch(function () {
        wasDown = true;
        body.setAttribute('data-temporal', 'unknown');
        say('down', 'The dashboard server does not answer; retrying…');
      });
  }

  function fragmentUrl() {
    var q = new URLSearchParams(location.search);
    q.set('fragment', '1');
    return location.pathname + '?' + q.toString();
  }

  function refreshLive() {
    var live = document.getElementById('live');
    if (!live) return Promise.resolve();
    return fetch(fragmentUrl(), { cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.text(); })
      .then(function (html) {
        live.innerHTML = html;
        body.setAttribute('data-refreshed', String(Date.now()));
      })
      .catch(function () { /* the health banner says why */ });
  }

  document.addEventListener('submit', function (e) {
    var f = e.target;
    var msg = f && f.getAttribute && f.getAttribute('data-confirm');
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  // ---- curves ---------------------------------------------------------------------------------------------
  var charts = {};
  function draw(el, label, xs, series) {
    el.setAttribute('data-points', String(xs.length));
    if (!window.uPlot || xs.length === 0) {
      if (xs.length === 0) el.textContent = 'no points yet';
      return;
    }
    var key = el.id + ':' + series.map(function (s) { return s.label; }).join(',');
    var data = [xs].concat(series.map(function (s) { return s.values; }));
    var colors = ['#3a7bd5', '#d5663a', '#3ab56b', '#9b3ad5', '#d5b53a'];
    if (charts[el.id] && charts[el.id].key === key) { charts[el.id].plot.setData(data); return; }
    if (charts[el.id]) charts[el.id].plot.destroy();
    el.textContent = '';
    var opts = {
      width: Math.max(320, Math.min(el.clientWidth || 740, 740)),
      height: 220,
      scales: { x: { time: false } },
      axes: [{ label: 'step' }, { label: label }],
      series: [{ label: 'step' }].concat(series.map(function (s, i) {
        return { label: s.label, stroke: colors[i % colors.length], width: 2, points: { show: xs.length < 60 } };
      })),
    };
    charts[el.id] = { key: key, plot: new window.uPlot(opts, data, el) };
  }

  function refreshCurves() {
    var loss = document.getElementById('loss-chart');
    var ev = document.getElementById('eval-chart');
    if (!loss) return Promise.resolve();
    return fetch(loss.getAttribute('data-src'), { cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(function (c) {
        draw(loss, 'loss', c.curve.map(function (p) { return p.step; }), [
          { label: 'training loss', values: c.curve.map(function (p) { return p.loss; }) },
        ]);
        var names = [];
        c.evals.forEach(function (p) { Object.keys(p.metrics).forEach(function (k) { if (names.indexOf(k) < 0) names.push(k); }); });
        draw(ev, 'metric', c.evals.map(function (p) { return p.step; }), names.map(function (k) {
          return { label: k, values: c.evals.map(function (p) { return k in p.metrics ? p.metrics[k] : null; }) };
        }));
        loss.setAttribute('data-state', c.state);
      })
      .catch(function () { /* the health banner says why */ });
  }

  function loop(fn, ms) {
    var run = function () { fn().then(function () { setTimeout(run, ms); }); };
    run();
  }

  loop(health, 2000);
  if (document.getElementById('loss-chart')) loop(refreshCurves, 1000);
  if (refresh > 0) setTimeout(function () { loop(refreshLive, refresh); }, refresh);
})();
`;
