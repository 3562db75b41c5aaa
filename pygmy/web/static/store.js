// The storefront: browse by topic, search titles, one book's stock and price, buy, this browser's orders.
"use strict";

const ORDERS_KEY = "pygmy.orders";   // orders placed from this browser (there are no accounts)
const PENDING_KEY = "pygmy.pendingBuy"; // a buy sent but not yet answered, finished after a reload

const state = { topics: [], books: [], selected: null, intent: null, inFlight: null };
const $ = (id) => document.getElementById(id);

function savedOrders() {
  try { return JSON.parse(localStorage.getItem(ORDERS_KEY)) || []; } catch (err) { return []; }
}

function rememberOrder(order) {
  const orders = savedOrders().filter((o) => o.order_id !== order.order_id); // the same key answers the same order
  orders.unshift({ order_id: order.order_id, item: order.item, title: order.title, cost: order.cost, time: order.time || new Date().toISOString() });
  localStorage.setItem(ORDERS_KEY, JSON.stringify(orders.slice(0, 200)));
  renderOrders();
}

function renderOrders() {
  const orders = savedOrders();
  $("orders").replaceChildren(...orders.map((o) => el("tr", {},
    el("td", { text: "#" + o.order_id }), el("td", { text: o.title }),
    el("td", { text: price(o.cost) }), el("td", { text: new Date(o.time).toLocaleString() }))));
  $("orders-empty").hidden = orders.length > 0;
}

const price = (cost) => "$" + Number(cost).toFixed(2);
const topicName = (code) => (state.topics.find((t) => t.code === code) || { name: code }).name;

async function loadBooks() {
  const topics = await callJson("GET", "/store/topics");
  state.topics = topics.ok ? topics.body.topics : [];
  $("topic").append(...state.topics.map((t) => el("option", { value: t.code, text: t.name })));
  const books = [];
  for (const topic of state.topics) {
    const found = await callJson("GET", `/search?topic=${encodeURIComponent(topic.code)}&limit=1000`);
    if (!found.ok) {
      say($("books-message"), found.status === 503 || found.status === 0 ? "warn" : "error",
        `Could not load the ${topic.name} books: ${found.error.message}. Reload the page to retry.`);
      continue;
    }
    books.push(...found.body.items.map((b) => ({ ...b, topic: topic.code })));
  }
  state.books = books.sort((a, b) => a.id - b.id);
  renderBooks();
}

function renderBooks() {
  const topic = $("topic").value;
  const words = $("query").value.trim().toLowerCase();
  const shown = state.books.filter((b) => (!topic || b.topic === topic) && (!words || b.title.toLowerCase().includes(words)));
  $("books").replaceChildren(...shown.map((b) => el("li", {},
    el("button", { type: "button", class: "book", "data-item": b.id, "aria-pressed": String(state.selected === b.id),
      onclick: () => selectBook(b.id) }, b.title + " ", el("span", { class: "topic-tag", text: "(" + topicName(b.topic) + ")" })))));
  $("count").textContent = `(${shown.length})`;
  if (!shown.length && state.books.length) say($("books-message"), "warn", "No book matches this search.");
  else if (state.books.length) say($("books-message"), "", "");
}

async function selectBook(item) {
  if (state.selected !== item) {
    state.selected = item;
    state.intent = { item, key: newKey() }; // one purchase intent per book chosen; kept across retries
    say($("buy-message"), "", "");
  }
  renderBooks();
  await showBook(item);
}

async function showBook(item) {
  const found = await callJson("GET", `/lookup/${item}`);
  if (!found.ok) {
    say($("buy-message"), found.status === 503 || found.status === 0 ? "warn" : "error",
      `Could not load this book: ${found.error.message}. Choose it again to retry.`);
    return;
  }
  const book = found.body;
  $("detail-empty").hidden = true;
  $("detail-body").hidden = false;
  $("detail-title").textContent = book.title;
  $("detail-topic").textContent = topicName(book.topic);
  $("detail-price").textContent = price(book.cost);
  $("detail-stock").textContent = book.stock > 0 ? `${book.stock} copies` : "out of stock";
  $("detail-stock").dataset.stock = book.stock;
}

// A second click while a buy is in flight sends the same Idempotency-Key: the store opens one order.
async function buy() {
  const intent = state.intent;
  if (!intent) return;
  localStorage.setItem(PENDING_KEY, JSON.stringify(intent));
  say($("buy-message"), "warn", "Placing your order…");
  const answer = await callJson("POST", `/buy/${intent.item}`, { headers: { "Idempotency-Key": intent.key } });
  settle(intent, answer);
}

function settle(intent, answer) {
  const message = $("buy-message");
  if (answer.ok) {
    localStorage.removeItem(PENDING_KEY);
    rememberOrder(answer.body);
    if (state.intent && state.intent.key === intent.key) state.intent = { item: intent.item, key: newKey() };
    say(message, "ok", `Order #${answer.body.order_id} placed: ${answer.body.title} for ${price(answer.body.cost)}.`);
  } else if (answer.error.code === "out_of_stock") {
    localStorage.removeItem(PENDING_KEY);
    say(message, "error", "Sorry, this book is out of stock. No order was placed.");
  } else if (answer.status === 503 || answer.status === 0) {
    // The key is kept: pressing Buy again retries this purchase and can never buy a second copy.
    say(message, "warn", `The store is briefly unavailable (${answer.error.message}). Press “Buy this book” again to retry; you will not buy it twice.`);
  } else if (answer.error.code === "idempotency_key_reused") {
    localStorage.removeItem(PENDING_KEY);
    state.intent = { item: intent.item, key: newKey() };
    say(message, "error", "This purchase could not be matched to your earlier click. Press Buy again.");
  } else {
    localStorage.removeItem(PENDING_KEY);
    say(message, "error", `The order was not placed: ${answer.error.message}.`);
  }
  if (state.selected === intent.item) showBook(intent.item);
}

// A reload while a buy was in flight: ask again with the same key to learn (or finish) that one order.
async function finishPendingBuy() {
  let intent = null;
  try { intent = JSON.parse(localStorage.getItem(PENDING_KEY)); } catch (err) { intent = null; }
  if (!intent || !intent.key) return;
  state.selected = intent.item;
  state.intent = intent;
  await showBook(intent.item);
  say($("buy-message"), "warn", "Finishing the purchase you started before the page reloaded…");
  settle(intent, await callJson("POST", `/buy/${intent.item}`, { headers: { "Idempotency-Key": intent.key } }));
}

$("search").addEventListener("submit", (event) => { event.preventDefault(); renderBooks(); });
$("topic").addEventListener("change", renderBooks);
$("query").addEventListener("input", renderBooks);
$("buy").addEventListener("click", buy);
renderOrders();
loadBooks().then(finishPendingBuy);
