// ucf connector editor. The JSON textarea is the descriptor: the form view reads from it
// and writes into it (so switching views loses nothing, and keys the form does not show
// stay as they are), and it is what the Save button posts. Problems come from
// POST /api/connectors/validate as the author types; "Try it" and the webhook preview
// call /api/connectors/try and /preview. The page works without this file: the JSON
// view is then the editor, and saving lists every problem.
(function () {
  "use strict";

  var form = document.getElementById("editor");
  if (form === null) return;
  var json = document.getElementById("descriptor-json");
  var csrf = form.querySelector('input[name="csrf"]').value;
  var csrfHeader = form.getAttribute("data-csrf-header");
  var statusLine = document.getElementById("editor-status");
  var problemList = document.getElementById("problem-list");
  var problemBox = document.getElementById("editor-problems");
  var DEBOUNCE_MS = 400;

  // ---------------------------------------------------------------- calls
  function post(path, body) {
    var headers = { "Content-Type": "application/json" };
    headers[csrfHeader] = csrf;
    return fetch(path, {
      method: "POST", credentials: "same-origin", headers: headers, body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) { return { status: response.status, data: data }; });
    });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key]; else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  // ---------------------------------------------------------------- the descriptor
  function current() {
    try { return { data: JSON.parse(json.value), error: null }; }
    catch (error) { return { data: null, error: String(error.message || error) }; }
  }

  // "@poll.x" is x in the polling block, wherever the mode puts it.
  function resolve(path, data) {
    if (path.indexOf("@poll.") !== 0) return path;
    var mode = data && data.ingestion && data.ingestion.mode;
    return (mode === "polling_and_webhook" ? "ingestion.polling." : "ingestion.") + path.slice(6);
  }

  // "a.b[2].c" → ["a", "b", 2, "c"]: the paths problems are reported at.
  function keysOf(path) {
    var keys = [];
    path.split(".").forEach(function (part) {
      var match = /^([^[]*)((?:\[\d+\])*)$/.exec(part);
      if (match === null) { keys.push(part); return; }
      if (match[1]) keys.push(match[1]);
      (match[2].match(/\d+/g) || []).forEach(function (n) { keys.push(parseInt(n, 10)); });
    });
    return keys;
  }

  function read(data, path) {
    return keysOf(path).reduce(function (node, key) {
      return node !== null && typeof node === "object" && key in node ? node[key] : undefined;
    }, data);
  }

  function write(data, path, value) {
    var keys = keysOf(path);
    var node = data;
    for (var i = 0; i < keys.length - 1; i++) {
      if (node[keys[i]] === null || typeof node[keys[i]] !== "object") {
        node[keys[i]] = typeof keys[i + 1] === "number" ? [] : {};
      }
      node = node[keys[i]];
    }
    var last = keys[keys.length - 1];
    if (value === undefined) delete node[last]; else node[last] = value;
  }

  function inputs() {
    return Array.prototype.slice.call(form.querySelectorAll("#view-form [data-path]"));
  }

  // Lists (rules, credential and config fields): one row of inputs per entry. Keys a row
  // does not show (a rule's "all", a field's helpText) stay in the JSON untouched.
  function buildLists(data) {
    form.querySelectorAll("#view-form [data-list]").forEach(function (box) {
      var base = resolve(box.getAttribute("data-list"), data);
      var columns = JSON.parse(box.getAttribute("data-columns"));
      var rows = read(data, base);
      var body = box.querySelector("tbody");
      body.innerHTML = "";
      (Array.isArray(rows) ? rows : []).forEach(function (row, index) {
        var cells = columns.map(function (column) {
          var path = base + "[" + index + "]." + column.key;
          var label = column.label + " " + (index + 1);
          var input;
          if (column.options) {
            input = el("select", { "data-path": path, "aria-label": label });
            column.options.forEach(function (option) { input.appendChild(el("option", { text: option })); });
          } else if (column.type === "bool") {
            input = el("select", { "data-path": path, "aria-label": label, "data-type": "bool" });
            ["true", "false"].forEach(function (option) { input.appendChild(el("option", { text: option })); });
          } else {
            input = el("input", { type: "text", "data-path": path, "aria-label": label, spellcheck: "false", autocomplete: "off" });
            if (column.type === "list-if-in") input.setAttribute("data-type", "list-if-in");
          }
          return el("td", {}, [input]);
        });
        var remove = el("button", { type: "button", "class": "btn btn--ghost btn--sm", text: "Remove", "aria-label": "Remove row " + (index + 1) });
        remove.addEventListener("click", function () {
          var parsed = current();
          if (parsed.data === null) return;
          var list = read(parsed.data, base);
          if (Array.isArray(list)) list.splice(index, 1);
          json.value = JSON.stringify(parsed.data, null, 2);
          fillForm();
          scheduleValidate();
        });
        cells.push(el("td", {}, [remove]));
        body.appendChild(el("tr", {}, cells));
      });
    });
  }

  form.querySelectorAll("#view-form [data-list] [data-add]").forEach(function (button) {
    button.addEventListener("click", function () {
      var parsed = current();
      if (parsed.data === null) return;
      var box = button.closest("[data-list]");
      var base = resolve(box.getAttribute("data-list"), parsed.data);
      var list = read(parsed.data, base);
      if (!Array.isArray(list)) { list = []; write(parsed.data, base, list); }
      list.push(JSON.parse(button.getAttribute("data-add")));
      json.value = JSON.stringify(parsed.data, null, 2);
      fillForm();
      scheduleValidate();
    });
  });

  function shownValue(input, value) {
    if (value === undefined || value === null) return "";
    if (Array.isArray(value)) return value.join(", ");
    return String(value);
  }

  function fillForm() {
    var parsed = current();
    if (parsed.data !== null) buildLists(parsed.data);
    inputs().forEach(function (input) {
      input.disabled = parsed.data === null;
      if (parsed.data === null) return;
      input.value = shownValue(input, read(parsed.data, resolve(input.getAttribute("data-path"), parsed.data)));
    });
  }

  function typed(input, path, data) {
    var raw = input.value;
    var kind = input.getAttribute("data-type");
    if (raw === "") return undefined;
    if (kind === "number") { var n = Number(raw); return isFinite(n) ? n : raw; }
    if (kind === "bool") return raw === "true";
    if (kind === "list-if-in" && read(data, path.replace(/\.value$/, ".operator")) === "in") {
      return raw.split(",").map(function (v) { return v.trim(); }).filter(function (v) { return v; });
    }
    return raw;
  }

  form.querySelector("#view-form").addEventListener("input", function (event) {
    var input = event.target;
    if (!input.hasAttribute || !input.hasAttribute("data-path")) return;
    var parsed = current();
    if (parsed.data === null) return;
    var path = resolve(input.getAttribute("data-path"), parsed.data);
    write(parsed.data, path, typed(input, path, parsed.data));
    json.value = JSON.stringify(parsed.data, null, 2);
    scheduleValidate();
  });

  // ---------------------------------------------------------------- views
  var tabs = Array.prototype.slice.call(form.querySelectorAll(".editor__tab"));
  function show(view) {
    tabs.forEach(function (tab) {
      var on = tab.getAttribute("data-view") === view;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      document.getElementById("view-" + tab.getAttribute("data-view")).hidden = !on;
    });
    if (view === "form") fillForm();
    if (view === "try") buildTryFields();
  }
  tabs.forEach(function (tab) {
    tab.addEventListener("click", function () { show(tab.getAttribute("data-view")); });
  });
  form.querySelector(".editor__tabs").hidden = false;

  // ---------------------------------------------------------------- problems
  var timer = null;
  var sequence = 0;
  function scheduleValidate() {
    window.clearTimeout(timer);
    timer = window.setTimeout(validate, DEBOUNCE_MS);
  }

  function showProblems(problems) {
    problemList.innerHTML = "";
    form.querySelectorAll("#view-form .field__error").forEach(function (node) { node.remove(); });
    form.querySelectorAll("#view-form .field--invalid").forEach(function (node) {
      node.classList.remove("field--invalid");
    });
    var data = current().data;
    problems.forEach(function (problem) {
      var item = el("li", { "data-path": problem.path }, [
        el("code", { text: problem.path || "(root)" }),
        document.createTextNode(" " + problem.message),
        problem.hint ? el("span", { "class": "muted", text: " — " + problem.hint }) : null
      ]);
      problemList.appendChild(item);
      inputs().forEach(function (input) {
        if (resolve(input.getAttribute("data-path"), data) !== problem.path) return;
        var field = input.closest(".field");
        field.classList.add("field--invalid");
        field.appendChild(el("p", { "class": "field__error", role: "alert", text: problem.message + (problem.hint ? " (" + problem.hint + ")" : "") }));
      });
    });
    statusLine.textContent = problems.length === 0 ? "No problems found."
      : problems.length + " problem" + (problems.length === 1 ? "" : "s");
    problemBox.classList.toggle("is-clean", problems.length === 0);
  }

  function validate() {
    var parsed = current();
    if (parsed.data === null) {
      showProblems([{ path: "", message: "not JSON: " + parsed.error, hint: null }]);
      return;
    }
    var mine = ++sequence;
    post("/api/connectors/validate", parsed.data).then(function (answer) {
      if (mine !== sequence) return; // a later edit is on its way
      if (answer.status === 200) showProblems(answer.data.problems);
      else showProblems([{ path: "", message: (answer.data.error || {}).message || "not a descriptor", hint: null }]);
    }).catch(function () { statusLine.textContent = "Could not reach the server to check."; });
  }

  json.addEventListener("input", scheduleValidate);

  var file = document.getElementById("descriptor-file");
  if (file !== null) {
    file.addEventListener("change", function () {
      if (!file.files || !file.files[0]) return;
      file.files[0].text().then(function (text) { json.value = text; validate(); });
    });
  }

  // ---------------------------------------------------------------- try it
  var tryFields = document.getElementById("try-fields");
  function fieldInput(kind, spec) {
    var id = "try-" + kind + "-" + spec.key;
    var secret = kind === "credentials" && spec.type === "password";
    var input = el("input", {
      id: id, type: secret ? "password" : "text", autocomplete: secret ? "new-password" : "off",
      spellcheck: "false", "data-try": kind, "data-key": spec.key
    });
    if (spec.default) input.value = spec.default;
    if (spec.placeholder) input.setAttribute("placeholder", spec.placeholder);
    return el("div", { "class": "field" }, [el("label", { "for": id, text: spec.label || spec.key }), input]);
  }

  function buildTryFields() {
    var data = current().data;
    if (data === null) return;
    var kept = {};
    tryFields.querySelectorAll("input").forEach(function (input) { kept[input.id] = input.value; });
    tryFields.innerHTML = "";
    var config = (data.configFields || []).slice();
    var polling = read(data, resolve("@poll.endpoint", data)) || "";
    var health = read(data, "healthCheck.endpoint") || "";
    var declared = config.some(function (f) { return f.key === "baseUrl"; });
    if (!declared && (polling + health).indexOf("{{baseUrl}}") >= 0) config.unshift({ key: "baseUrl", label: "Base URL" });
    config.forEach(function (spec) { tryFields.appendChild(fieldInput("config", spec)); });
    var creds = (data.auth && data.auth.config && data.auth.config.credentialFields) || [];
    creds.forEach(function (spec) { tryFields.appendChild(fieldInput("credentials", spec)); });
    tryFields.querySelectorAll("input").forEach(function (input) {
      if (kept[input.id] !== undefined) input.value = kept[input.id];
    });
  }

  function collect(kind) {
    var values = {};
    tryFields.querySelectorAll('input[data-try="' + kind + '"]').forEach(function (input) {
      if (input.value !== "") values[input.getAttribute("data-key")] = input.value;
    });
    return values;
  }

  function pre(text) { return el("pre", { "class": "editor__pre" }, [document.createTextNode(text)]); }

  function signalList(signals) {
    return el("ol", { "class": "editor__signals" }, signals.map(function (shown) {
      var s = shown.signal;
      var reason = shown.typeReason;
      var why = reason.rule === null ? reason.because : "rule " + reason.rule + ": " + reason.because;
      return el("li", { "class": "editor__signal" }, [
        el("strong", { text: s.type }), document.createTextNode(" " + s.summary),
        el("div", { "class": "muted small", text: "type from " + why + " · " + s.timestamp }),
        el("details", {}, [el("summary", { text: "Signal JSON" }), pre(JSON.stringify(s, null, 2))])
      ]);
    }));
  }

  function itemErrors(errors) {
    if (!errors.length) return null;
    return el("ul", { "class": "editor__item-errors" }, errors.map(function (e) {
      return el("li", { text: "item " + e.index + (e.itemId ? " (id " + e.itemId + ")" : "") + ": " + e.reason });
    }));
  }

  function notes(list) {
    return (list || []).length ? el("ul", { "class": "muted" }, list.map(function (n) { return el("li", { text: n }); })) : null;
  }

  var tryResult = document.getElementById("try-result");
  var tryButton = document.getElementById("try-run");
  tryButton.addEventListener("click", function () {
    var data = current().data;
    if (data === null) { tryResult.textContent = "Fix the JSON first."; return; }
    tryButton.setAttribute("aria-busy", "true");
    tryResult.textContent = "Sending…";
    post("/api/connectors/try", {
      descriptor: data, credentials: collect("credentials"), config: collect("config"), maxPages: 1
    }).then(function (answer) {
      tryResult.innerHTML = "";
      var body = answer.data;
      if (answer.status !== 200) {
        var error = body.error || {};
        tryResult.appendChild(el("p", { "class": "field__error", role: "alert", text: error.message || "The try-out was refused." }));
        return;
      }
      if (body.error) tryResult.appendChild(el("p", { "class": "field__error", role: "alert", text: body.error.message }));
      if (body.request) tryResult.appendChild(el("section", { "class": "editor__exchange" }, [
        el("h3", { text: "Request" }),
        pre(body.request.method + " " + body.request.url + "\n" + Object.keys(body.request.headers).map(function (k) { return k + ": " + body.request.headers[k]; }).join("\n"))
      ]));
      if (body.response) tryResult.appendChild(el("section", { "class": "editor__exchange" }, [
        el("h3", { text: "Response: HTTP " + body.response.status }),
        pre(Object.keys(body.response.headers).map(function (k) { return k + ": " + body.response.headers[k]; }).join("\n")),
        pre(body.response.body + (body.response.truncated ? "\n… (cut)" : ""))
      ]));
      tryResult.appendChild(el("h3", { text: body.signals.length + " signal" + (body.signals.length === 1 ? "" : "s") + ", " + body.itemErrors.length + " item error" + (body.itemErrors.length === 1 ? "" : "s") }));
      tryResult.appendChild(signalList(body.signals));
      var errors = itemErrors(body.itemErrors);
      if (errors) tryResult.appendChild(errors);
      var said = notes(body.notes);
      if (said) tryResult.appendChild(said);
    }).catch(function () { tryResult.textContent = "Could not reach the server."; })
      .then(function () { tryButton.removeAttribute("aria-busy"); });
  });

  // ---------------------------------------------------------------- webhook preview
  var previewResult = document.getElementById("preview-result");
  document.getElementById("preview-run").addEventListener("click", function () {
    var data = current().data;
    var raw = document.getElementById("preview-sample").value;
    try { JSON.parse(raw); }
    catch (error) { previewResult.textContent = "The payload is not JSON: " + error.message; return; }
    var secret = document.getElementById("preview-secret").value;
    var headers = {};
    document.getElementById("preview-headers").value.split("\n").forEach(function (line) {
      var at = line.indexOf(":");
      if (at > 0) headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    });
    post("/api/connectors/preview", {
      descriptor: data, body: raw, headers: headers, mode: document.getElementById("preview-mode").value,
      secret: secret === "" ? null : secret
    }).then(function (answer) {
      previewResult.innerHTML = "";
      var body = answer.data;
      if (answer.status !== 200) { previewResult.textContent = (body.error || {}).message || "Refused."; return; }
      (body.problems || []).forEach(function (p) {
        previewResult.appendChild(el("p", { "class": "field__error", role: "alert", text: (p.path ? p.path + ": " : "") + p.message }));
      });
      if (body.eventType) previewResult.appendChild(el("p", { text: "Event type: " + body.eventType }));
      var check = body.verification;
      if (check && check.checked) {
        previewResult.appendChild(el("p", { "class": check.ok ? "" : "field__error", text: check.ok ? "Verified as the gateway would." : "Verification fails: " + check.reason }));
      }
      if (body.handshake) {
        previewResult.appendChild(el("p", { text: "Handshake '" + body.handshake.kind + "': the gateway answers HTTP " + body.handshake.status }));
        previewResult.appendChild(pre(body.handshake.body));
      }
      previewResult.appendChild(el("h3", { text: body.signals.length + " signal" + (body.signals.length === 1 ? "" : "s") }));
      previewResult.appendChild(signalList(body.signals));
      var errors = itemErrors(body.itemErrors || []);
      if (errors) previewResult.appendChild(errors);
      var said = notes(body.notes);
      if (said) previewResult.appendChild(said);
    }).catch(function () { previewResult.textContent = "Could not reach the server."; });
  });

  show("form");
  validate();
})();
