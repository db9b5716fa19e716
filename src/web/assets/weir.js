// The pages of weir's web UI: the list of queries and a query's live charts, drawn as SVG from
// the JSON API (/api/queries, /api/queries/NAME, /api/queries/NAME/progress?last=N).
"use strict";

const weir = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const PHASES = [
    ["planMs", "plan"], ["readMs", "read"], ["executeMs", "execute"], ["sinkMs", "sink"], ["commitMs", "commit"],
  ];
  const BATCHES_SHOWN = 60;
  const BOX = { left: 84, right: 10, top: 22, bottom: 26, width: 560, height: 220 };

  async function getJson(url) {
    const response = await fetch(url, { cache: "no-store" });
    const json = (response.headers.get("content-type") || "").startsWith("application/json");
    const body = json ? await response.json() : { error: await response.text() };
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  function number(value, digits = 0) {
    if (value === null || value === undefined) return "–";
    return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  }

  // An axis label: k, M and G for large values, decimals where the axis spans little.
  function compact(value, span) {
    for (const [scale, suffix] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
      if (span >= 10 * scale) return `${number(value / scale, span / scale < 100 ? 1 : 0)}${suffix}`;
    }
    return number(value, span < 10 ? 1 : 0);
  }

  function clock(ms) {
    if (ms === null || ms === undefined) return "–";
    return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function svgElement(parent, tag, attributes, text) {
    const element = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    if (text !== undefined) element.textContent = text;
    parent.appendChild(element);
    return element;
  }

  function showFailure(error) {
    const failure = document.getElementById("failure");
    failure.hidden = !error;
    failure.textContent = error ? `Cannot reach weir: ${error.message}` : "";
  }

  // Axes, grid and y labels of a chart whose y runs from `low` to `high`.
  function frame(svg, low, high, label) {
    const plotHeight = BOX.height - BOX.top - BOX.bottom;
    for (let i = 0; i <= 4; i++) {
      const y = BOX.top + plotHeight - (plotHeight * i) / 4;
      svgElement(svg, "line", { x1: BOX.left, x2: BOX.width - BOX.right, y1: y, y2: y, class: "grid" });
      const value = low + ((high - low) * i) / 4;
      svgElement(svg, "text", { x: BOX.left - 4, y: y + 4, "text-anchor": "end" }, label(value, high - low));
    }
    svgElement(svg, "line", { x1: BOX.left, x2: BOX.left, y1: BOX.top, y2: BOX.height - BOX.bottom, class: "axis" });
  }

  function legend(svg, names) {
    let x = BOX.left;
    names.forEach((name, i) => {
      svgElement(svg, "rect", { x, y: 6, width: 10, height: 10, fill: COLORS[i % COLORS.length] });
      svgElement(svg, "text", { x: x + 14, y: 15 }, name);
      x += 22 + name.length * 6.5;
    });
  }

  function batchAxis(svg, batches, xOf) {
    const y = BOX.height - 8;
    svgElement(svg, "text", { x: xOf(0), y, "text-anchor": "start" }, `batch ${batches[0]}`);
    if (batches.length > 1) {
      svgElement(svg, "text", { x: xOf(batches.length - 1), y, "text-anchor": "end" }, `batch ${batches[batches.length - 1]}`);
    }
  }

  function clear(svg, emptyText) {
    svg.replaceChildren();
    if (emptyText) svgElement(svg, "text", { x: BOX.width / 2, y: BOX.height / 2, "text-anchor": "middle", class: "empty" }, emptyText);
  }

  // One line per series over the batches; every point is a circle carrying its batch and value.
  function lineChart(svg, batches, series, label = compact) {
    const values = series.flatMap((s) => s.values.filter((v) => v !== null));
    if (batches.length === 0 || values.length === 0) return clear(svg, "no batches yet");
    clear(svg);
    let low = Math.min(...values);
    let high = Math.max(...values);
    if (series.every((s) => s.fromZero !== false)) low = Math.min(0, low);
    if (high === low) high = low + 1;
    const plotWidth = BOX.width - BOX.left - BOX.right;
    const plotHeight = BOX.height - BOX.top - BOX.bottom;
    const xOf = (i) => BOX.left + (batches.length === 1 ? plotWidth / 2 : (plotWidth * i) / (batches.length - 1));
    const yOf = (v) => BOX.top + plotHeight - ((v - low) / (high - low)) * plotHeight;
    frame(svg, low, high, label);
    batchAxis(svg, batches, xOf);
    legend(svg, series.map((s) => s.name));
    series.forEach((s, index) => {
      const color = COLORS[index % COLORS.length];
      const points = s.values.map((v, i) => (v === null ? null : [xOf(i), yOf(v)]));
      const drawn = points.filter((p) => p !== null).map((p) => p.join(",")).join(" ");
      svgElement(svg, "polyline", { points: drawn, fill: "none", stroke: color, "stroke-width": 1.6 });
      s.values.forEach((v, i) => {
        if (v === null) return;
        const dot = svgElement(svg, "circle", {
          cx: points[i][0], cy: points[i][1], r: 2.4, fill: color,
          class: "point", "data-series": s.name, "data-batch": batches[i], "data-value": v,
        });
        svgElement(dot, "title", {}, `${s.name}, batch ${batches[i]}: ${number(v, 2)}`);
      });
    });
  }

  // One bar per batch, its phases stacked; every part carries its batch, phase and milliseconds.
  function phaseChart(svg, records) {
    if (records.length === 0) return clear(svg, "no batches yet");
    clear(svg);
    const totals = records.map((r) => PHASES.reduce((sum, [key]) => sum + r.durations[key], 0));
    const high = Math.max(...totals, 0.001);
    const plotWidth = BOX.width - BOX.left - BOX.right;
    const plotHeight = BOX.height - BOX.top - BOX.bottom;
    const slot = plotWidth / records.length;
    const xOf = (i) => BOX.left + slot * i + slot / 2;
    frame(svg, 0, high, compact);
    batchAxis(svg, records.map((r) => r.batchId), xOf);
    legend(svg, PHASES.map(([, name]) => name));
    records.forEach((record, i) => {
      let bottom = BOX.top + plotHeight;
      PHASES.forEach(([key, name], p) => {
        const ms = record.durations[key];
        const height = (ms / high) * plotHeight;
        const bar = svgElement(svg, "rect", {
          x: xOf(i) - Math.max(slot * 0.35, 0.5), width: Math.max(slot * 0.7, 1), y: bottom - height, height,
          fill: COLORS[p], class: "phase", "data-batch": record.batchId, "data-phase": name, "data-value": ms,
        });
        svgElement(bar, "title", {}, `batch ${record.batchId}, ${name}: ${number(ms, 2)} ms`);
        bottom -= height;
      });
    });
  }

  function lagSeries(records) {
    const names = [];
    for (const record of records) {
      for (const source of record.sources) {
        for (const p of source.partitions) {
          const name = `${p.topic}[${p.partition}]`;
          if (!names.includes(name)) names.push(name);
        }
      }
    }
    return names.map((name) => ({
      name,
      values: records.map((record) => {
        for (const source of record.sources) {
          for (const p of source.partitions) if (`${p.topic}[${p.partition}]` === name) return p.lag;
        }
        return null;
      }),
    }));
  }

  function totalLag(record) {
    return record.sources.reduce((sum, s) => sum + s.partitions.reduce((n, p) => n + p.lag, 0), 0);
  }

  function showLatest(record) {
    const shown = {
      batchId: record.batchId,
      numInputRows: number(record.numInputRows),
      inputRowsPerSecond: number(record.inputRowsPerSecond, 1),
      processedRowsPerSecond: number(record.processedRowsPerSecond, 1),
      totalMs: number(record.durations.totalMs, 2),
      lag: number(totalLag(record)),
      watermark: clock(record.eventTime.nextWatermarkMs),
      stateRows: number(record.eventTime.stateRows),
    };
    const latest = document.getElementById("latest");
    latest.dataset.batch = record.batchId;
    for (const [field, text] of Object.entries(shown)) {
      latest.querySelector(`[data-field="${field}"]`).textContent = text;
    }
    document.getElementById("progress").textContent = JSON.stringify(record, null, 2);
  }

  function drawCharts(records) {
    const batches = records.map((r) => r.batchId);
    lineChart(document.getElementById("rates"), batches, [
      { name: "input rows/s", values: records.map((r) => r.inputRowsPerSecond) },
      { name: "processed rows/s", values: records.map((r) => r.processedRowsPerSecond) },
    ]);
    phaseChart(document.getElementById("durations"), records);
    lineChart(document.getElementById("lag"), batches, lagSeries(records));
    const gaps = records.map((r) => {
      const watermark = r.eventTime.nextWatermarkMs;
      return watermark === null || watermark === undefined ? null : (r.timestampMs - watermark) / 1000;
    });
    if (gaps.every((g) => g === null)) {
      clear(document.getElementById("watermark"), "no watermark: the query reads no event time");
    } else {
      lineChart(document.getElementById("watermark"), batches, [
        { name: "wall clock minus watermark (s)", values: gaps, fromZero: false },
      ]);
    }
    lineChart(document.getElementById("state-rows"), batches, [
      { name: "rows", values: records.map((r) => r.eventTime.stateRows) },
    ]);
    lineChart(document.getElementById("state-bytes"), batches, [
      { name: "bytes", values: records.map((r) => r.eventTime.stateBytes) },
    ]);
  }

  // Runs `update` now and `ms` after each run ends, so that no two requests overlap.
  async function every(ms, update) {
    await update();
    setTimeout(() => every(ms, update), ms);
  }

  function listPage() {
    every(1000, async () => {
      try {
        const queries = await getJson("/api/queries");
        const body = document.querySelector("#queries tbody");
        body.replaceChildren();
        for (const q of queries) {
          const row = document.createElement("tr");
          const link = document.createElement("a");
          link.href = `/query/${encodeURIComponent(q.name)}`;
          link.textContent = q.name;
          cell(row, "").appendChild(link);
          cell(row, q.status, `status ${q.status}`);
          cell(row, q.batch ?? "–", "number");
          cell(row, number(q.inputRowsPerSecond, 1), "number");
          cell(row, number(q.processedRowsPerSecond, 1), "number");
          cell(row, number(q.lag), "number");
          cell(row, clock(q.watermarkMs));
          cell(row, q.sink);
          cell(row, q.error ?? "");
          body.appendChild(row);
        }
        document.getElementById("empty").hidden = queries.length > 0;
        showFailure(null);
      } catch (error) {
        showFailure(error);
      }
    });
  }

  function queryPage() {
    const path = location.pathname.replace(/^\/query\//, "");
    let name = path;
    try {
      name = decodeURIComponent(path);
    } catch {
      showFailure(new Error(`the address names no query: ${path}`));
    }
    const api = `/api/queries/${encodeURIComponent(name)}`;
    document.getElementById("title").textContent = name;
    document.title = `weir: ${name}`;
    every(1000, async () => {
      try {
        const records = await getJson(`${api}/progress?last=${BATCHES_SHOWN}`);
        if (records.length > 0) showLatest(records[records.length - 1]);
        drawCharts(records);
        document.body.dataset.updates = Number(document.body.dataset.updates || 0) + 1;
        showFailure(null);
      } catch (error) {
        showFailure(error);
      }
    });
    every(2000, async () => {
      try {
        const query = await getJson(api);
        const status = document.getElementById("status");
        status.textContent = query.error ? `failed: ${query.error}` : query.status;
        status.className = `status ${query.status}`;
        document.getElementById("sql").textContent = query.sql;
        document.getElementById("plan").textContent = query.plan ?? "no batch has run yet";
      } catch (error) {
        showFailure(error);
      }
    });
  }

  return { listPage, queryPage };
})();
