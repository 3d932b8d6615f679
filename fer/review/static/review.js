// fer review: keyboard decisions on the cards of one page. Each decision is POSTed at once;
// the server writes the decisions file and answers with the row it wrote.
(function () {
  "use strict";
  const cards = Array.from(document.querySelectorAll(".card"));
  const status = document.getElementById("status");
  const overlay = document.getElementById("overlay");
  const help = document.getElementById("help");
  let cur = 0;
  let busy = Promise.resolve();

  function say(text, err) {
    status.textContent = text;
    status.className = err ? "err" : "";
  }

  function select(i) {
    if (!cards.length) return;
    cur = Math.max(0, Math.min(cards.length - 1, i));
    cards.forEach((c, k) => c.classList.toggle("cur", k === cur));
    cards[cur].scrollIntoView({block: "nearest"});
    if (overlay.classList.contains("on")) showImage();
  }

  function paint(card, d) {
    const badge = card.querySelector(".badge");
    badge.className = "badge" + (d ? " " + d.action : "");
    badge.textContent = d ? d.action + (d.label ? " → " + d.label : "") : "";
    card.classList.toggle("decided", !!d);
  }

  async function post(url, body) {
    const resp = await fetch(url, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.detail || resp.statusText);
    return data;
  }

  function decide(action, label) {
    const card = cards[cur];
    if (!card) return;
    const item = card.dataset.item;
    // Queue the requests so the file sees decisions in the order they were typed.
    busy = busy.then(async () => {
      try {
        const data = await post("api/decide", {item: item, action: action, label: label || ""});
        cards.filter((c) => c.dataset.item === item).forEach((c) => paint(c, data.decision));
        say("saved: " + action + (label ? " → " + label : ""));
      } catch (e) {
        say(String(e.message || e), true);
      }
    });
    select(cur + 1);
  }

  function undo() {
    busy = busy.then(async () => {
      try {
        const items = cards.map((c) => c.dataset.item);
        const data = await post("api/undo", {items: items});
        cards.forEach((c) => paint(c, data.decisions[c.dataset.item]));
        say(data.undone ? "undone" : "nothing to undo");
      } catch (e) {
        say(String(e.message || e), true);
      }
    });
  }

  function showImage() {
    const card = cards[cur];
    if (!card || !card.dataset.image) return;
    const face = card.dataset.face ? "?face=" + encodeURIComponent(card.dataset.face) : "";
    overlay.querySelector("img").src = "image/" + card.dataset.image + face;
    overlay.classList.add("on");
  }

  function go(id, hash) {
    const link = document.getElementById(id);
    if (link) location.href = link.getAttribute("href") + (hash || "");
  }

  const ACTIONS = {
    "1": ["relabel", "positive"], "2": ["relabel", "negative"], "3": ["relabel", "neutral"],
    a: ["keep"], d: ["drop"], n: ["not_face"], r: ["restore"],
  };

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target.tagName === "SELECT" || ev.target.tagName === "INPUT") return;
    const k = ev.key;
    if (k in ACTIONS) decide(...ACTIONS[k]);
    else if (k === "j" || k === "ArrowDown" || k === "ArrowRight") {
      if (cur === cards.length - 1) go("next"); else select(cur + 1);
    } else if (k === "k" || k === "ArrowUp" || k === "ArrowLeft") {
      if (cur === 0) go("prev", "#last"); else select(cur - 1);
    } else if (k === "u") undo();
    else if (k === "f") overlay.classList.contains("on") ? overlay.classList.remove("on") : showImage();
    else if (k === "Escape") { overlay.classList.remove("on"); help.classList.add("off"); }
    else if (k === "]" || k === "PageDown") go("next");
    else if (k === "[" || k === "PageUp") go("prev");
    else if (k === "?") help.classList.toggle("off");
    else return;
    ev.preventDefault();
  });
  overlay.addEventListener("click", () => overlay.classList.remove("on"));
  cards.forEach((c, i) => c.addEventListener("click", (ev) => {
    select(i);
    if (ev.target.classList.contains("thumb")) showImage();
  }));
  window.ferReview = {
    idle: () => busy, current: () => cur, select: select,
  };
  select(location.hash === "#last" ? cards.length - 1 : 0);
})();
