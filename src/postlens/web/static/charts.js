/* charts.js: the time-series charts of the postlens dashboard and HTML report, drawn with
 * uPlot (vendor/uPlot.iife.min.js, loaded first). Plain ES2017, no build step; it evaluates
 * no strings and writes no markup, so it runs under Content-Security-Policy script-src 'self'.
 *
 * A chart is <div class="chart" data-chart="NAME"></div> (an optional data-height="PX" sets
 * the plot's height), with its data in <script type="application/json" id="NAME-data">:
 *
 *   {"kind": "stacked" | "lines",
 *    "x": [unix seconds, ascending],
 *    "series": [{"name": "delivered", "values": [number or null, one per x]}, ...],
 *    "tz": "UTC" | an IANA zone | absent (the browser's zone),
 *    "title": "optional", "unit": "optional label of the y axis",
 *    "step": optional seconds per point (default: the smallest gap between x values),
 *    "xformat": optional "time": x are times of one day, labelled by the clock only}
 *
 * "stacked" draws stacked bars (one pixel wide at least, so 1,500 points still read as a
 * shape), "lines" unstacked lines. A step of whole days labels x by date only.
 *
 * On DOMContentLoaded every [data-chart] element is drawn, as wide as the element, and
 * follows its width. window.PostlensCharts.draw() draws elements added since, and redraws
 * those whose data script changed; PostlensCharts.update(name, data) redraws chart NAME with
 * new data (an object, or JSON text) in place, and returns whether there is such a chart.
 * Both destroy the charts whose element has left the page. After each drawing
 * el.dataset.drawn is the number of points drawn: "0" with no data, and then the element
 * holds only <p class="chart-empty"> saying so.
 *
 * Names and titles come from log text that strangers write: they reach the page only as
 * text (uPlot sets its labels with textContent too), never as markup.
 */
(function () {
  "use strict";

  // One colour per status on every chart: the first five of the palette.
  const STATUS_COLORS = {
    received: "#4e79a7",
    delivered: "#59a14f",
    deferred: "#f28e2b",
    bounced: "#e15759",
    rejected: "#b07aa1",
  };
  // Tableau 10, colour-blind-safe: render/charts.py's PALETTE.
  const PALETTE = ["#4e79a7", "#59a14f", "#f28e2b", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f"];
  const HEIGHT = 260;
  const EMPTY_TEXT = "no data in this period";
  const MINUTE = 60;
  const HOUR = 3600;
  const DAY = 86400;
  const NUMBER = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
  const WHOLE_INCRS = [];
  for (let mag = 1; mag <= 1e15; mag *= 10) WHOLE_INCRS.push(mag, 2 * mag, 5 * mag);

  const charts = new Map(); // element -> record {el, data, source, shape, plot, height}
  let observer = null;
  let listening = false;

  // -- data ---------------------------------------------------------------------------------

  function finite(v) {
    return typeof v === "number" && isFinite(v) ? v : null;
  }

  function validZone(tz) {
    if (typeof tz !== "string" || tz === "") return null;
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: tz });
      return tz;
    } catch (e) {
      console.warn("postlens charts: unknown time zone, using the browser's", tz);
      return null;
    }
  }

  /* The data as drawn: points sorted by x (those without a number for x left out), every
   * series as long as x, values numbers or null. */
  function normalise(raw) {
    const d = raw !== null && typeof raw === "object" ? raw : {};
    const rawX = Array.isArray(d.x) ? d.x : [];
    const keep = [];
    rawX.forEach((v, i) => {
      if (finite(v) !== null) keep.push(i);
    });
    keep.sort((a, b) => rawX[a] - rawX[b]);
    const series = (Array.isArray(d.series) ? d.series : []).map((s, i) => {
      const obj = s !== null && typeof s === "object" ? s : {};
      const values = Array.isArray(obj.values) ? obj.values : [];
      const name = obj.name === undefined || obj.name === null ? "series " + (i + 1) : String(obj.name);
      return { name: name, values: keep.map((j) => finite(values[j])) };
    });
    const x = keep.map((i) => rawX[i]);
    let step = finite(d.step) !== null && d.step > 0 ? d.step : null;
    if (step === null) {
      for (let i = 1; i < x.length; i++) {
        const gap = x[i] - x[i - 1];
        if (gap > 0 && (step === null || gap < step)) step = gap;
      }
    }
    const clock = d.xformat === "time";
    const integral = series.every((s) => s.values.every((v) => v === null || v % 1 === 0));
    return {
      kind: d.kind === "stacked" ? "stacked" : "lines",
      x: x,
      series: series,
      tz: validZone(d.tz),
      title: typeof d.title === "string" ? d.title : "",
      unit: typeof d.unit === "string" ? d.unit : "",
      step: step === null ? (clock ? HOUR : DAY) : step,
      mode: clock ? "time" : step !== null && step % DAY === 0 ? "date" : "datetime",
      integral: integral,
    };
  }

  function pointCount(d) {
    const any = d.series.some((s) => s.values.some((v) => v !== null));
    return any ? d.x.length : 0;
  }

  /* What cannot change without building the chart anew. */
  function shapeOf(d) {
    return JSON.stringify([d.kind, d.series.map((s) => s.name), d.tz, d.title, d.unit, d.mode, d.integral]);
  }

  /* uPlot's data: x, then each series; stacked, every visible series on the ones below it. */
  function plotData(d, shown) {
    const out = [d.x];
    const acc = d.x.map(() => 0);
    d.series.forEach((s, i) => {
      if (d.kind !== "stacked" || !shown(i + 1)) {
        out.push(s.values);
        return;
      }
      out.push(s.values.map((v, j) => (acc[j] += v === null ? 0 : v)));
    });
    return out;
  }

  /* Each visible stacked series is a band drawn from the visible series below it. */
  function stackBands(d, shown) {
    const bands = [];
    let below = 0;
    for (let i = 1; i <= d.series.length; i++) {
      if (!shown(i)) continue;
      if (below) bands.push({ series: [i, below] });
      below = i;
    }
    return bands;
  }

  // -- look ---------------------------------------------------------------------------------

  /* A status's own colour; other names take the palette's colours that no status owns,
   * then those of statuses absent from this chart, then the palette over again. */
  function statusColour(name) {
    return Object.prototype.hasOwnProperty.call(STATUS_COLORS, name) ? STATUS_COLORS[name] : null;
  }

  function colours(names) {
    const owned = new Set(Object.keys(STATUS_COLORS).map((k) => STATUS_COLORS[k]));
    const present = new Set(names.map(statusColour).filter((c) => c !== null));
    const pool = PALETTE.filter((c) => !owned.has(c)).concat(PALETTE.filter((c) => owned.has(c) && !present.has(c)));
    let k = 0;
    return names.map((n) => {
      if (statusColour(n) !== null) return statusColour(n);
      const c = k < pool.length ? pool[k] : PALETTE[(k - pool.length) % PALETTE.length];
      k += 1;
      return c;
    });
  }

  const NL = "\n";
  const ISO_DAY = "{YYYY}-{MM}-{DD}";

  /* x axis labels, in uPlot's table form: [smallest tick step, label, label on a new year,
   * month, day, hour, minute, second, 1 = add the second to the first]. */
  function xStamps(mode) {
    if (mode === "time") return [[1, "{HH}:{mm}", null, null, null, null, null, null, 1]];
    return [
      [365 * DAY, "{YYYY}", null, null, null, null, null, null, 1],
      [28 * DAY, "{MMM}", NL + "{YYYY}", null, null, null, null, null, 1],
      [DAY, "{MMM} {D}", NL + "{YYYY}", null, null, null, null, null, 1],
      [MINUTE, "{HH}:{mm}", NL + ISO_DAY, null, NL + ISO_DAY, null, null, null, 1],
      [1, "{HH}:{mm}:{ss}", NL + ISO_DAY, null, NL + ISO_DAY, null, null, null, 1],
    ];
  }

  function xIncrs(mode) {
    if (mode === "time") return [15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 6 * HOUR, 12 * HOUR];
    if (mode === "date") {
      const days = [1, 2, 3, 7, 14, 30, 60, 90, 180, 365, 730, 1825, 3650];
      return days.map((n) => n * DAY);
    }
    return undefined; // uPlot's
  }

  /* The hovered point's time: its bucket, from x to x + step, in the data's zone. */
  function xValue(rec, tzDate) {
    const mode = rec.data.mode;
    const start = uPlot.fmtDate(
      mode === "time" ? "{HH}:{mm}" : mode === "date" ? "{WWW} " + ISO_DAY : ISO_DAY + " {HH}:{mm}"
    );
    const end = uPlot.fmtDate("{HH}:{mm}");
    return (u, v) => {
      if (v === null || v === undefined) return null;
      const text = start(tzDate(v));
      return mode === "date" ? text : text + "\u2013" + end(tzDate(v + rec.data.step));
    };
  }

  function numberText(v) {
    return v === null || v === undefined ? null : NUMBER.format(v);
  }

  /* The y axis as wide as its longest label. */
  function yAxisSize(u, values, axisIdx, cycleNum) {
    const axis = u.axes[axisIdx];
    if (cycleNum > 1) return axis._size;
    let size = axis.ticks.size + axis.gap;
    const longest = (values || []).reduce((a, v) => (String(v).length > a.length ? String(v) : a), "");
    if (longest !== "") {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / uPlot.pxRatio;
    }
    return Math.ceil(size);
  }

  function contentWidth(el) {
    const css = getComputedStyle(el);
    const padding = (parseFloat(css.paddingLeft) || 0) + (parseFloat(css.paddingRight) || 0);
    return Math.max(0, Math.floor(el.clientWidth - padding));
  }

  // -- drawing ------------------------------------------------------------------------------

  function options(rec) {
    const d = rec.data;
    const stacked = d.kind === "stacked";
    const tzDate = d.tz ? (ts) => uPlot.tzDate(new Date(ts * 1e3), d.tz) : (ts) => new Date(ts * 1e3);
    const integral = d.integral;
    const palette = colours(d.series.map((s) => s.name));
    const series = [{ label: d.mode === "date" ? "day" : "time", value: xValue(rec, tzDate) }];
    d.series.forEach((s, i) => {
      const colour = palette[i];
      // the legend shows each series' own value, not its height in the stack
      const value = (u, v, si, idx) =>
        idx === null || idx === undefined ? null : numberText(rec.data.series[si - 1].values[idx]);
      series.push(
        stacked
          ? { label: s.name, stroke: colour, fill: colour, width: 0, value: value, points: { show: false },
              paths: uPlot.paths.bars({ size: [0.8, Infinity, 1], align: 0 }) }
          : { label: s.name, stroke: colour, width: 2, value: value, spanGaps: false }
      );
    });
    const opts = {
      width: contentWidth(rec.el),
      height: rec.height,
      tzDate: tzDate,
      series: series,
      bands: stacked ? stackBands(d, () => true) : [],
      scales: {
        x: {
          time: true,
          // half a step either side, so that the first and last bars are whole
          range: (u, min, max) => {
            const half = rec.data.step / 2;
            return min === null ? [0, 2 * half] : [min - half, max + half];
          },
        },
        y: {
          range: (u, min, max) => {
            const lo = Math.min(0, min === null ? 0 : min);
            const hi = Math.max(max === null ? 0 : max, lo + (integral ? 1 : 1e-9));
            const r = uPlot.rangeNum(lo, hi, 0.1, true);
            return [lo === 0 ? 0 : r[0], r[1]];
          },
        },
      },
      axes: [
        { space: 60, values: xStamps(d.mode), incrs: xIncrs(d.mode) },
        { values: (u, splits) => splits.map(numberText), size: yAxisSize, incrs: integral ? WHOLE_INCRS : undefined },
      ],
      legend: { live: true },
      hooks: {
        draw: [() => { rec.el.dataset.drawn = String(pointCount(rec.data)); }],
        setSeries: stacked ? [(u) => restack(rec)] : [],
      },
    };
    if (d.title) opts.title = d.title;
    if (d.unit) opts.axes[1].label = d.unit;
    return opts;
  }

  /* Stacked charts are stacked again over the series still shown. */
  function restack(rec) {
    const u = rec.plot;
    const shown = (i) => u.series[i].show;
    u.delBand(null);
    stackBands(rec.data, shown).forEach((b) => u.addBand(b));
    u.setData(plotData(rec.data, shown));
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
  }

  function destroyPlot(rec) {
    if (rec && rec.plot) {
      rec.plot.destroy();
      rec.plot = null;
    }
  }

  function render(el, raw, source) {
    const d = normalise(raw);
    let rec = charts.get(el);
    if (!rec) {
      rec = { el: el, data: d, source: source, shape: "", plot: null, height: 0 };
      charts.set(el, rec);
      watch(el);
    }
    rec.data = d;
    rec.source = source;
    if (pointCount(d) === 0) {
      destroyPlot(rec);
      clear(el);
      const p = document.createElement("p");
      p.className = "chart-empty";
      p.textContent = EMPTY_TEXT;
      el.appendChild(p);
      el.dataset.drawn = "0";
      return;
    }
    const shape = shapeOf(d);
    if (rec.plot && rec.shape === shape) {
      if (d.kind === "stacked") restack(rec);
      else rec.plot.setData(plotData(d, () => true));
      fitSinglePoint(rec);
      return;
    }
    destroyPlot(rec);
    clear(el);
    rec.shape = shape;
    rec.height = parseInt(el.dataset.height, 10) > 0 ? parseInt(el.dataset.height, 10) : HEIGHT;
    rec.plot = new uPlot(options(rec), plotData(d, () => true), el);
    fitSinglePoint(rec);
  }

  /* uPlot leaves out the x range function when all data is at one x, and spans years: one
     point is one step wide, as with more. */
  function fitSinglePoint(rec) {
    if (rec.data.x.length !== 1) return;
    // the scale's range function (options) widens this by half a step either side
    rec.plot.setScale("x", { min: rec.data.x[0], max: rec.data.x[0] });
  }

  function resize(el) {
    const rec = charts.get(el);
    if (!rec || !rec.plot) return;
    const width = contentWidth(el);
    if (width !== rec.plot.width) rec.plot.setSize({ width: width, height: rec.height });
  }

  function watch(el) {
    if (typeof ResizeObserver === "undefined") {
      if (!listening) window.addEventListener("resize", () => charts.forEach((rec, e) => resize(e)));
      listening = true;
      return;
    }
    if (!observer) {
      // resized on the next frame: changing sizes inside the observer's callback loops
      observer = new ResizeObserver((entries) => {
        requestAnimationFrame(() => entries.forEach((entry) => resize(entry.target)));
      });
    }
    observer.observe(el);
  }

  function forget(el) {
    destroyPlot(charts.get(el));
    if (observer) observer.unobserve(el);
    charts.delete(el);
  }

  function dataScript(name) {
    return document.getElementById(name + "-data");
  }

  function parse(text, name) {
    try {
      return JSON.parse(text);
    } catch (e) {
      console.error("postlens charts: the data of chart " + JSON.stringify(name) + " is not JSON", e);
      return {};
    }
  }

  /* Charts whose element left the page are destroyed. */
  function purge() {
    charts.forEach((rec, el) => {
      if (!el.isConnected) forget(el);
    });
  }

  function draw() {
    purge();
    document.querySelectorAll("[data-chart]").forEach((el) => {
      const name = el.dataset.chart;
      const script = dataScript(name);
      const source = script ? script.textContent : "";
      const rec = charts.get(el);
      if (rec && rec.source === source) return; // drawn, or updated live since
      render(el, source ? parse(source, name) : {}, source);
    });
  }

  function update(name, data) {
    purge();
    let done = false;
    document.querySelectorAll("[data-chart]").forEach((el) => {
      if (el.dataset.chart !== String(name)) return;
      // the data script stays what draw() last read, so that draw() keeps the live data
      const rec = charts.get(el);
      const script = dataScript(el.dataset.chart);
      const source = rec ? rec.source : script ? script.textContent : "";
      render(el, typeof data === "string" ? parse(data, name) : data, source);
      done = true;
    });
    return done;
  }

  window.PostlensCharts = { draw: draw, update: update };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
