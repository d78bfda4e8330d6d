// Chart wraps uPlot: a time series chart that fills its container's width
// and follows resizes. data is [times (Unix seconds), series...]; null
// values are gaps and break the line. span (seconds), if given, fixes the
// time axis to the last span seconds, however few points there are yet.

import { html, useEffect, useRef } from './lib.js';

const colors = ['#1f6feb', '#2da44e', '#cf222e', '#bf8700', '#8250df'];

export function Chart({ title, series, data, height, fmt, span }) {
  const box = useRef(null);
  const plot = useRef(null);
  const names = series.join('|');
  useEffect(() => {
    const el = box.current;
    const opts = {
      width: Math.max(el.clientWidth, 200),
      height: height || 180,
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: span ? { time: true, range: () => { const now = Date.now() / 1000; return [now - span, now]; } } : { time: true } },
      axes: [{ stroke: '#57606a', grid: { stroke: '#eaeef2' } },
        { stroke: '#57606a', grid: { stroke: '#eaeef2' }, size: 56, values: (u, vals) => vals.map((v) => (fmt ? fmt(v) : v)) }],
      series: [{}].concat(series.map((name, i) => ({ label: name, stroke: colors[i % colors.length], width: 1.5, spanGaps: false, points: { show: false } }))),
    };
    plot.current = new window.uPlot(opts, data, el);
    const ro = new ResizeObserver(() => {
      if (plot.current) plot.current.setSize({ width: Math.max(el.clientWidth, 200), height: opts.height });
    });
    ro.observe(el);
    return () => { ro.disconnect(); plot.current.destroy(); plot.current = null; };
  }, [names, span]);
  useEffect(() => {
    if (plot.current) plot.current.setData(data);
  }, [data]);
  return html`<figure class="chart"><figcaption>${title}</figcaption><div ref=${box} class="plot"></div></figure>`;
}
