"use strict";
// The demo store page: one search, two columns (plain BM25, and the lref-rerank pipeline).

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function ms(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value)} ms`;
}

function latency(section, result) {
  const box = $(".latency", section);
  box.replaceChildren(ms(result.latency_ms), " ", el("em", { text: `(took ${ms(result.took_ms)})` }));
}

function meta(hit) {
  const parts = [];
  if (hit.brand) parts.push(hit.brand);
  if (hit.category) parts.push(hit.category);
  const line = el("div", { class: "meta" }, parts.join(" · "));
  if (hit.price !== undefined) line.append(parts.length ? " · " : "", el("span", { class: "price", text: `$${Number(hit.price).toFixed(2)}` }));
  return line;
}

function movement(hit) {
  if (!hit.bm25_rank) return null;
  const delta = hit.bm25_rank - hit.rank;
  const cls = delta > 0 ? "move-up" : delta < 0 ? "move-down" : "";
  const arrow = delta > 0 ? `▲${delta}` : delta < 0 ? `▼${-delta}` : "=";
  return el("div", { class: cls, title: `BM25 rank ${hit.bm25_rank}`, text: `BM25 #${hit.bm25_rank} ${arrow}` });
}

function badge(hit) {
  if (!hit.tier) return null;
  const text = hit.label ? `${hit.tier} · ${hit.label}` : hit.tier;
  return el("span", { class: `badge tier-${hit.tier}`, "data-testid": "tier-badge", "data-tier": hit.tier, text });
}

function bm25Item(hit) {
  return el("li", { class: "hit", "data-id": hit.id },
    el("span", { class: "rank", text: hit.rank }), el("span", { class: "title", text: hit.title }),
    el("div", { class: "side", text: `score ${hit.score.toFixed(2)}` }), meta(hit));
}

function llmItem(hit) {
  return el("li", { class: "hit", "data-id": hit.id, "data-tier": hit.tier || "" },
    el("span", { class: "rank", text: hit.rank }), el("span", { class: "title", text: hit.title }),
    el("div", { class: "side" }, badge(hit), movement(hit)), meta(hit));
}

function probabilities(probs) {
  const box = el("div", { class: "probs", "data-testid": "probabilities" });
  if (!probs) return box;
  const best = Object.entries(probs).reduce((a, b) => (b[1] > a[1] ? b : a))[0];
  for (const [label, p] of Object.entries(probs)) {
    const pct = (100 * p).toFixed(1);
    const bar = el("div", { class: "bar" }, el("span", { style: `width:${pct}%` }));
    box.append(el("div", { class: label === best ? "prob top" : "prob", "data-label": label, "data-p": p },
      `P(${label}) ${pct}%`, bar));
  }
  return box;
}

function droppedItem(hit) {
  return el("li", { class: "hit", "data-id": hit.id, "data-testid": "dropped-item" },
    el("span", { class: "rank", text: hit.bm25_rank ? `#${hit.bm25_rank}` : "" }), el("span", { class: "title", text: hit.title }),
    el("div", { class: "side" }, badge(hit)), meta(hit), probabilities(hit.probabilities));
}

function render(data) {
  const bm25 = $("#bm25"), llm = $("#llm");
  latency(bm25, data.bm25);
  latency(llm, data.llm);
  $(".summary", bm25).textContent = `${data.bm25.hits.length} of ${data.bm25.total} matches`;
  $(".results", bm25).replaceChildren(...data.bm25.hits.map(bm25Item));

  const tiers = data.llm.tiers || {};
  $(".summary", llm).textContent = data.llm.reranked
    ? `${data.llm.hits.length} kept (Good ${tiers.Good || 0}, Mid ${tiers.Mid || 0}), ${data.llm.dropped.length} dropped below ${data.llm.min_tier}`
    : `${data.llm.hits.length} hits`;
  const notice = $(".notice", llm);
  notice.hidden = data.llm.reranked;
  notice.textContent = data.llm.reranked ? "" : `Not reranked (${data.llm.reason || "reranker unavailable"}): BM25 order, nothing dropped.`;
  $(".results", llm).replaceChildren(...data.llm.hits.map(llmItem));

  const dropped = $("details.dropped", llm);
  dropped.open = false;
  dropped.hidden = data.llm.dropped.length === 0;
  $("summary", dropped).textContent = `${data.llm.dropped.length} dropped (tier Bad) — show with label probabilities`;
  $(".dropped-note", dropped).textContent = data.llm.probabilities_error
    ? `Label probabilities unavailable: ${data.llm.probabilities_error}`
    : `Label probabilities from the reranker's /v1/classify (${ms(data.llm.probabilities_ms)}, not part of the search latency).`;
  $(".dropped-list", dropped).replaceChildren(...data.llm.dropped.map(droppedItem));
  document.body.dataset.state = "done";
}

async function search(query, size) {
  const button = $("#search-form button");
  button.disabled = true;
  document.body.dataset.state = "searching";
  $("#error").hidden = true;
  for (const section of [$("#bm25"), $("#llm")]) $(".latency", section).textContent = "…";
  try {
    const response = await fetch(`/api/search?q=${encodeURIComponent(query)}&size=${size}`);
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    render(data);
  } catch (err) {
    $("#error").textContent = `Search failed: ${err.message}`;
    $("#error").hidden = false;
    document.body.dataset.state = "error";
  } finally {
    button.disabled = false;
  }
}

function setSize(size) {
  const select = $("#size");
  const value = String(size);
  if (![...select.options].some((o) => o.value === value)) select.append(el("option", { value, text: `${value} hits` }));
  select.value = value;
}

async function showInfo() {
  try {
    const info = await (await fetch("/api/info")).json();
    setSize(info.default_size);
    const parts = [`catalog: ${info.catalog || info.index}`];
    if (info.products !== null) parts.push(`${info.products.toLocaleString()} products`);
    if (info.model) parts.push(`judge: ${info.model}`);
    if (info.opensearch) parts.push(`OpenSearch ${info.opensearch}`);
    $("#info").textContent = parts.join(" · ");
  } catch (err) {
    $("#info").textContent = "";
  }
}

$("#search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const query = $("#q").value.trim();
  if (!query) return;
  const size = $("#size").value;
  history.replaceState(null, "", `?q=${encodeURIComponent(query)}&size=${size}`);
  search(query, size);
});

// Read the URL now: a search submitted before /api/info answers rewrites it, and must not run twice.
const params = new URLSearchParams(location.search);
showInfo().then(() => {
  if (document.body.dataset.state) return; // the visitor searched already
  if (params.get("size")) setSize(params.get("size"));
  if (params.get("q")) {
    $("#q").value = params.get("q");
    search(params.get("q"), $("#size").value);
  }
});
