/* shieldware challenge: find a counter so that SHA-256(token + ":" + counter) starts with
   `difficulty` zero bits, post it with the browser's first telemetry, go back to the page.
   Web Crypto where the page is a secure context; our own SHA-256 where it is not (plain http
   on a shop's host name has no crypto.subtle). No external resources, no globals but one. */
(function () {
  "use strict";

  var K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ]);
  var IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
  var W = new Int32Array(64);

  // One SHA-256 compression of the 64-byte block at bytes[offset..] into state (8 words).
  function compress(state, bytes, offset) {
    var i, t1, t2;
    for (i = 0; i < 16; i++) {
      var o = offset + i * 4;
      W[i] = (bytes[o] << 24) | (bytes[o + 1] << 16) | (bytes[o + 2] << 8) | bytes[o + 3];
    }
    for (i = 16; i < 64; i++) {
      var w15 = W[i - 15], w2 = W[i - 2];
      var s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
      var s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
      W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
    }
    var a = state[0], b = state[1], c = state[2], d = state[3];
    var e = state[4], f = state[5], g = state[6], h = state[7];
    for (i = 0; i < 64; i++) {
      var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
      var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    state[0] = (state[0] + a) | 0; state[1] = (state[1] + b) | 0;
    state[2] = (state[2] + c) | 0; state[3] = (state[3] + d) | 0;
    state[4] = (state[4] + e) | 0; state[5] = (state[5] + f) | 0;
    state[6] = (state[6] + g) | 0; state[7] = (state[7] + h) | 0;
  }

  // Hash a fixed prefix once up to its last whole block (the midstate), then each
  // prefix+suffix costs only the one or two blocks of its tail.
  function prefixHasher(prefix) {
    var whole = prefix.length - (prefix.length % 64);
    var mid = new Int32Array(IV);
    for (var off = 0; off < whole; off += 64) compress(mid, prefix, off);
    var rest = prefix.subarray(whole);
    var tail = new Uint8Array(192);
    var state = new Int32Array(8);
    return function (suffix) {
      var n = rest.length + suffix.length;
      var blocks = n + 9 <= 64 ? 1 : (n + 9 <= 128 ? 2 : 3);
      tail.fill(0);
      tail.set(rest, 0);
      tail.set(suffix, rest.length);
      tail[n] = 0x80;
      var bits = (prefix.length + suffix.length) * 8;
      var end = blocks * 64;
      tail[end - 4] = (bits >>> 24) & 255; tail[end - 3] = (bits >>> 16) & 255;
      tail[end - 2] = (bits >>> 8) & 255; tail[end - 1] = bits & 255;
      tail[end - 5] = Math.floor(bits / 4294967296) & 255;
      state.set(mid);
      for (var b = 0; b < blocks; b++) compress(state, tail, b * 64);
      return state;
    };
  }

  function hex(words) {
    var out = "";
    for (var i = 0; i < 8; i++) out += ("00000000" + (words[i] >>> 0).toString(16)).slice(-8);
    return out;
  }

  // SHA-256 of a byte array, as hex (exposed for the tests that compare it with Python's).
  function sha256Hex(bytes) {
    var whole = bytes.length - (bytes.length % 64);
    return hex(prefixHasher(bytes.subarray(0, whole))(bytes.subarray(whole)));
  }

  function zeroBits(word0, word1, bits) {
    if (bits <= 32) return bits === 32 ? word0 === 0 : (word0 >>> (32 - bits)) === 0;
    return word0 === 0 && (word1 >>> (64 - bits)) === 0;
  }

  var encoder = new TextEncoder();

  function solveFallback(token, bits, onProgress) {
    var hashWith = prefixHasher(encoder.encode(token + ":"));
    var counter = 0;
    return new Promise(function (resolve) {
      (function slice() {
        // Work in slices so the page stays responsive and can show progress.
        for (var stop = counter + 20000; counter < stop; counter++) {
          var state = hashWith(encoder.encode(String(counter)));
          if (zeroBits(state[0], state[1], bits)) { resolve(counter); return; }
        }
        onProgress(counter);
        setTimeout(slice, 0);
      })();
    });
  }

  function solveSubtle(token, bits, onProgress) {
    var subtle = crypto.subtle;
    var prefix = token + ":";
    var batch = 256;
    var start = 0;
    function round() {
      var pending = [];
      for (var i = 0; i < batch; i++) {
        pending.push(subtle.digest("SHA-256", encoder.encode(prefix + (start + i))));
      }
      return Promise.all(pending).then(function (digests) {
        for (var i = 0; i < digests.length; i++) {
          var view = new DataView(digests[i]);
          if (zeroBits(view.getUint32(0) | 0, view.getUint32(4) | 0, bits)) return start + i;
        }
        start += batch;
        onProgress(start);
        return round();
      });
    }
    return round();
  }

  function hasSubtle() {
    return !!(window.isSecureContext && window.crypto && crypto.subtle && crypto.subtle.digest);
  }

  function solve(token, bits, onProgress, forceFallback) {
    onProgress = onProgress || function () {};
    if (!forceFallback && hasSubtle()) return solveSubtle(token, bits, onProgress);
    return solveFallback(token, bits, onProgress);
  }

  // The collector's first telemetry: automation flags and a few cheap facts. The biometrics
  // work adds pointer and keyboard features under their own keys in this object.
  function telemetry() {
    var nav = navigator;
    var result = {
      webdriver: nav.webdriver === true,
      languages: (nav.languages || []).length,
      plugins: nav.plugins ? nav.plugins.length : -1,
      hardware_concurrency: nav.hardwareConcurrency || 0,
      device_memory: nav.deviceMemory || 0,
      max_touch_points: nav.maxTouchPoints || 0,
      cookie_enabled: nav.cookieEnabled === true,
      screen: [screen.width, screen.height, screen.colorDepth],
      window_outer: [window.outerWidth, window.outerHeight],
      timezone: "",
      web_crypto: hasSubtle(),
      chrome_object: typeof window.chrome === "object"
    };
    try { result.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { /* old browser */ }
    return result;
  }

  // Leave only once the clearance cookie demonstrably comes back: a browser that drops it
  // would otherwise meet this page again on every click.
  function leaveIfCleared(redirect) {
    return fetch(config.check, {credentials: "same-origin", headers: {"accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        if (answer.clearance === "valid") {
          say(config.texts.done);
          window.location.replace(redirect);
        } else {
          say(config.texts.cookies);
        }
      });
  }

  var config, status, progress;
  function say(text) { status.textContent = text; }

  function run() {
    var configNode = document.getElementById("shield-config");
    if (!configNode) return;
    config = JSON.parse(configNode.textContent);
    status = document.getElementById("shield-status");
    progress = document.getElementById("shield-progress");
    if (!navigator.cookieEnabled) { say(config.texts.cookies); return; }
    var expected = Math.pow(2, config.difficulty);
    var started = performance.now();
    solve(config.token, config.difficulty, function (tried) {
      if (progress) progress.value = Math.min(0.95, tried / (expected * 2));
    }).then(function (counter) {
      var body = {
        challenge: config.token,
        counter: String(counter),
        url: config.url,
        solve_ms: Math.round(performance.now() - started),
        telemetry: telemetry()
      };
      return fetch(config.verify, {
        method: "POST",
        credentials: "same-origin",
        headers: {"content-type": "application/json", "accept": "application/json"},
        body: JSON.stringify(body)
      });
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (response.ok && answer.ok) {
          if (progress) progress.value = 1;
          return leaveIfCleared(answer.redirect);
        } else if (answer.reason === "challenge.cookies_disabled") {
          say(config.texts.cookies);
        } else {
          say(config.texts.failed + " (" + (answer.reason || response.status) + ")");
        }
      });
    }).catch(function (error) {
      say(config.texts.failed + " (" + error + ")");
    });
  }

  window.ShieldChallenge = {sha256Hex: sha256Hex, solve: solve, telemetry: telemetry};
  run();
})();
