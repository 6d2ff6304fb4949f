/* shieldware collector, telemetry format v1 (docs/telemetry.md).
   Records HOW the pointer, keys, scroll and touch move, never WHAT is typed: key events keep
   only down/up times. Sends batches with navigator.sendBeacon; window.shieldware.telemetry()
   hands the current batch to the challenge page. No dependencies, no external resources. */
(function () {
"use strict";
var w = window, d = document, n = navigator;
if (w.shieldware && w.shieldware.telemetry) return;
var me = d.currentScript;
var URL_ = (me && me.getAttribute("data-endpoint")) || "/.shieldware/telemetry";
// Caps: events per batch, batches per minute and per page, bytes per batch (server refuses more).
var CAP = {pointer: 2000, keys: 400, scroll: 400, touch: 1000, focus: 100, fills: 100};
var MOVE_MS = 8, TOUCH_MS = 16, SCROLL_MS = 30, EVERY_MS = 5000, PER_MIN = 12, PER_PAGE = 120, MAX_BYTES = 60000;
var b, seq = 0, sent = [], lastMove = -1e9, lastTouch = -1e9, lastScroll = -1e9, lastKey = -1e9;
var held = {}, sx = w.scrollX || 0, sy = w.scrollY || 0;
function now() { return Math.round(w.performance.now()); }
function reset() { b = {pointer: [], keys: [], scroll: [], touch: [], focus: [], fills: []}; }
function push(list, row) { if (b[list].length < CAP[list]) b[list].push(row); }
function on(target, type, fn) { target.addEventListener(type, fn, {capture: true, passive: true}); }
reset();

function env() {
  var ua = n.userAgent || "", flags = {}, found = [];
  flags.webdriver = n.webdriver === true;
  var brands = (n.userAgentData && n.userAgentData.brands) || [];
  flags.headless = /Headless/.test(ua) || brands.some(function (x) { return /Headless/.test(x.brand); });
  flags.outer_zero = w.outerWidth === 0 && w.outerHeight === 0;
  flags.no_plugins = /Chrome\//.test(ua) && !/Mobile|Android/.test(ua) && !!n.plugins && n.plugins.length === 0;
  flags.no_languages = !n.languages || n.languages.length === 0;
  var names = ["callPhantom", "_phantom", "__nightmare", "domAutomation", "domAutomationController",
               "_selenium", "calledSelenium", "_Selenium_IDE_Recorder", "__webdriver_script_fn"];
  for (var i = 0; i < names.length; i++) if (names[i] in w) found.push(names[i]);
  var re = /^(\$?cdc_|\$wdc_|__playwright|__pw|__puppeteer|__selenium|__webdriver|__driver|__fxdriver)/;
  [w, d].forEach(function (o) {
    try { Object.keys(o).forEach(function (k) { if (re.test(k) && found.length < 16) found.push(k.slice(0, 40)); }); }
    catch (e) { /* an exotic host object: nothing to report */ }
  });
  if (found.length) flags.globals = found;
  return flags;
}

// Pointer (mouse and pen; touch has its own list): kind 0 move, 1 down, 2 up, 3 left the page.
function pointer(kind) {
  return function (e) {
    if (e.pointerType === "touch") return;
    var t = now();
    if (kind === 0) { if (t - lastMove < MOVE_MS) return; lastMove = t; }
    push("pointer", [t, Math.round(e.clientX), Math.round(e.clientY), kind]);
  };
}
on(d, "pointermove", pointer(0));
on(d, "pointerdown", pointer(1));
on(d, "pointerup", pointer(2));
on(d, "mouseout", function (e) { if (!e.relatedTarget) push("pointer", [now(), Math.round(e.clientX), Math.round(e.clientY), 3]); });

// Keys: only the times a key went down and up. e.code pairs them in memory and is never sent.
on(d, "keydown", function (e) {
  lastKey = now();
  if (!e.repeat && !(e.code in held)) held[e.code] = lastKey;
});
on(d, "keyup", function (e) {
  var t = now(), t0 = held[e.code];
  if (t0 !== undefined) { delete held[e.code]; push("keys", [t0, t]); }
});
// A field that changed with no key pressed: 0 pasted, 1 filled (autofill or script). No contents.
on(d, "input", function (e) {
  var t = now();
  if (e.inputType === "insertFromPaste") push("fills", [t, 0]);
  else if (t - lastKey > 100 && e.inputType !== "insertCompositionText") push("fills", [t, 1]);
});

on(w, "scroll", function () {
  var t = now(), x = w.scrollX || 0, y = w.scrollY || 0;
  if (t - lastScroll < SCROLL_MS) return;
  lastScroll = t;
  push("scroll", [t, Math.round(x - sx), Math.round(y - sy)]);
  sx = x; sy = y;
});

// Touch: first finger only; kind 0 move, 1 start, 2 end.
function touch(kind) {
  return function (e) {
    var p = (e.changedTouches || [])[0], t = now();
    if (!p) return;
    if (kind === 0) { if (t - lastTouch < TOUCH_MS) return; lastTouch = t; }
    push("touch", [t, Math.round(p.clientX), Math.round(p.clientY), kind]);
  };
}
on(d, "touchstart", touch(1));
on(d, "touchmove", touch(0));
on(d, "touchend", touch(2));

// Focus: 0 blur, 1 focus, 2 hidden, 3 visible.
on(w, "blur", function () { push("focus", [now(), 0]); });
on(w, "focus", function () { push("focus", [now(), 1]); });

function batch() {
  var out = {v: 1, seq: seq++, t: now(), page: location.pathname.slice(0, 200), env: env()};
  for (var k in b) out[k] = b[k];
  var text = JSON.stringify(out);
  // Over the byte cap: drop the oldest half of the pointer trail until it fits.
  while (text.length > MAX_BYTES && out.pointer.length > 1) {
    out.pointer = out.pointer.slice(out.pointer.length >> 1);
    text = JSON.stringify(out);
  }
  reset();
  return {body: out, text: text};
}
function empty() { for (var k in b) if (b[k].length) return false; return true; }
function send(force) {
  var t = now();
  sent = sent.filter(function (x) { return t - x < 60000; });
  if ((!force && empty() && seq > 0) || sent.length >= PER_MIN || seq >= PER_PAGE) return false;
  sent.push(t);
  var text = batch().text;
  try {
    if (n.sendBeacon && n.sendBeacon(URL_, text)) return true;
  } catch (e) { /* fall through to fetch */ }
  try { w.fetch(URL_, {method: "POST", body: text, keepalive: true, credentials: "same-origin"}); }
  catch (e) { /* nowhere to send: drop the batch rather than break the page */ }
  return true;
}
on(d, "visibilitychange", function () {
  push("focus", [now(), d.visibilityState === "hidden" ? 2 : 3]);
  if (d.visibilityState === "hidden") send(true);
});
on(w, "pagehide", function () { send(true); });
w.setTimeout(function () { send(true); }, 1500);
w.setInterval(function () { send(false); }, EVERY_MS);

w.shieldware = {
  version: 1,
  // The current batch as an object (then cleared): the challenge page posts it with its solution.
  telemetry: function () { return batch().body; },
  flush: function () { return send(true); }
};
})();
