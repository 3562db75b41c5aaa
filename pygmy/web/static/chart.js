// A small line chart on a canvas: one line per series, a y axis scaled to the data, time on x.
"use strict";

const TIER_COLOURS = { frontend: "#1f5fbf", catalog: "#1b7f3b", order: "#b35c00" };

function drawChart(canvas, points, field, windowSeconds) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300, height = canvas.clientHeight || 150;
  if (canvas.width !== width * ratio) { canvas.width = width * ratio; canvas.height = height * ratio; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const now = Date.now() / 1000, left = 40, bottom = height - 18, top = 8, right = width - 6;
  let max = 0;
  for (const p of points) for (const tier in p.rates) max = Math.max(max, p.rates[tier][field] || 0);
  max = niceCeiling(max);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#5b6475";
  ctx.strokeStyle = "#e3e7ee";
  for (let i = 0; i <= 2; i++) {
    const y = bottom - (bottom - top) * i / 2;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke();
    ctx.fillText(formatNumber(max * i / 2), 2, y + 4);
  }
  ctx.fillText(`-${Math.round(windowSeconds / 60)} min`, left, height - 4);
  ctx.fillText("now", right - 22, height - 4);
  const x = (t) => left + (right - left) * (1 - (now - t) / windowSeconds);
  const y = (v) => bottom - (bottom - top) * (max ? v / max : 0);
  for (const tier of Object.keys(TIER_COLOURS)) {
    ctx.strokeStyle = TIER_COLOURS[tier];
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    let drawing = false;
    for (const p of points) {
      const value = p.rates[tier] ? p.rates[tier][field] : null;
      if (value === null || value === undefined || now - p.time > windowSeconds) { drawing = false; continue; }
      if (drawing) ctx.lineTo(x(p.time), y(value)); else ctx.moveTo(x(p.time), y(value));
      drawing = true;
    }
    ctx.stroke();
  }
}

function niceCeiling(v) {
  if (v <= 0) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * step) return m * step;
  return 10 * step;
}

function formatNumber(v) {
  return v >= 100 ? String(Math.round(v)) : String(Math.round(v * 10) / 10);
}
