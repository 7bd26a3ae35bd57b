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
  // The path prefix ucf is served under behind a proxy ("" at a host's root): the
  // page's own paths below are the app's, and the browser must ask under the prefix.
  var ROOT = document.documentElement.getAttribute("data-root") || "";

  function post(path, body) {
    var headers = { "Content-Type": "application/json" };
    headers[csrfHeader] = csrf;
    return fetch(ROOT + path, {
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

  // The form is drawn from the descriptor's JSON Schema; these tables only order and group it.
  var RULE = ["when", "operator", "value", "valuePath", "then", "eventTypes", "all"];
  var FIELD = ["key", "label", "type", "required", "default", "placeholder", "helpText", "options"];
  var POLL = ["endpoint", "method", "query", "rateLimitRpm", "intervalSeconds", "delta", "pagination"];
  var HOOK = ["eventTypes", "eventTypeHeader", "eventTypePath", "actionPath", "deliveryIdHeader", "deliveryIdPath", "verification", "signature", "token", "handshakes", "fieldMapping"];
  var KEYED = ["delivery", "paramName", "valuePrefix", "credentialFields"];
  var MAPPING = ["itemsPath", "idPath", "timestampPath", "summaryTemplate", "defaultType", "signalTypeRules", "priorityMapping", "skip"];
  var FORM_OPTIONS = {
    groups: [
      { title: "Identity", keys: ["id", "name", "description", "category", "icon", "version", "kind", "docsUrl"] },
      { title: "Authentication", keys: ["auth", "authAlternatives"] },
      { title: "Settings", keys: ["configFields"] },
      { title: "Ingestion (endpoint, delta, pagination, webhook)", keys: ["ingestion"] },
      { title: "Items to signals", keys: ["fieldMapping"] },
      { title: "Health check", keys: ["healthCheck"] }
    ],
    order: {
      ApiKeyConfig: KEYED, PatConfig: KEYED, PollingDescriptor: POLL, _PollingSpec: POLL,
      WebhookDescriptor: HOOK, _WebhookSpec: HOOK, FieldMappingDescriptor: MAPPING,
      SignalTypeRule: RULE, PriorityRule: RULE, Condition: RULE, CredentialField: FIELD, ConfigField: FIELD,
      HealthCheckDescriptor: ["endpoint", "method", "expectStatus", "timeoutMs"],
      PaginationDescriptor: ["type", "pageSize", "nextParam", "pageSizeParam", "nextPath", "nextHeader"],
      SignatureVerification: ["header", "algorithm", "encoding", "prefix", "secretCredential", "signedPayload"],
      TokenVerification: ["header", "queryParam", "bodyPath", "secretCredential", "valuePrefix"],
      "#Identity": ["id", "name", "description", "category", "icon", "version", "kind", "docsUrl"]
    },
    primary: {  // what shows outside "More options" (besides required keys and set values)
      ApiKeyConfig: KEYED, PatConfig: KEYED, PollingDescriptor: POLL, _PollingSpec: POLL,
      WebhookDescriptor: HOOK, _WebhookSpec: HOOK, FieldMappingDescriptor: MAPPING,
      SignalTypeRule: RULE, PriorityRule: RULE, CredentialField: FIELD.slice(0, 4), ConfigField: FIELD.slice(0, 5),
      OAuth2Config: ["authoriseUrl", "tokenUrl", "scopes", "grant", "pkce"],
      PaginationDescriptor: ["type", "pageSize", "nextParam", "pageSizeParam", "nextPath", "nextHeader"],
      SignatureVerification: ["header", "algorithm", "encoding", "prefix", "secretCredential", "signedPayload"],
      TimestampFilterDelta: ["queryParam", "format"]
    },
    switches: { verification: { signature: "signature", token: "token" } },
    relevant: { PaginationDescriptor: { key: "type", fields: {  // as runtime/pagination.py reads them
      link_header: ["pageSize", "pageSizeParam", "maxPages"],
      cursor: ["nextPath", "nextHeader", "nextParam", "hasMorePath", "pageSize", "pageSizeParam", "maxPages"],
      next_url: ["nextPath", "nextHeader", "baseUrlPath", "hasMorePath", "pageSize", "pageSizeParam", "maxPages"],
      offset: ["nextParam", "totalPath", "totalHeader", "hasMorePath", "pageSize", "pageSizeParam", "maxPages"],
      page_number: ["nextParam", "nextHeader", "totalPath", "totalHeader", "hasMorePath", "pageSize", "pageSizeParam", "maxPages"]
    } } },
    listWhen: function (rule, key) { return key === "value" && rule !== undefined && rule.operator === "in"; },
    labels: { all: "All of", docsUrl: "Docs URL", rateLimitRpm: "Requests per minute", timeoutMs: "Timeout (ms)", expectStatus: "Expected status", then: "Then" },
    onChange: function (data) {
      json.value = JSON.stringify(data, null, 2);
      scheduleValidate();
    }
  };
  var schema = JSON.parse(document.getElementById("descriptor-schema").textContent);
  var formView = document.getElementById("form-fields");
  var schemaForm = window.ucfSchemaForm(formView, schema, FORM_OPTIONS);
  var lastProblems = [];

  function fillForm() {
    var parsed = current();
    if (parsed.data === null || typeof parsed.data !== "object" || Array.isArray(parsed.data)) {
      formView.innerHTML = "";
      formView.appendChild(el("p", { "class": "field__error", text: "The JSON does not parse, so the form cannot show it: fix it in the JSON view." }));
      return;
    }
    schemaForm.render(parsed.data);
    showProblems(lastProblems);
  }

  // ---------------------------------------------------------------- views
  var tabs = Array.prototype.slice.call(form.querySelectorAll(".editor__tab"));
  function show(view) {
    tabs.forEach(function (tab) {
      var on = tab.getAttribute("data-view") === view;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      document.getElementById("view-" + tab.getAttribute("data-view")).hidden = !on;
    });
    form.setAttribute("data-view", view);
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

  // A refused save's problems the validator cannot see (an id already taken, a store that
  // refused): the page's own list, wiped by the first check, said "No problems found." and
  // the refusal went unseen. Kept until the text changes; the next save says again.
  var refused = JSON.parse(document.getElementById("refused-problems").textContent);
  var refusedText = canonical(json.value);
  function withRefused(problems) {
    if (refused.length === 0 || canonical(json.value) !== refusedText) return problems;
    var seen = problems.map(function (p) { return p.path + "\n" + p.message; });
    return problems.concat(refused.filter(function (p) { return seen.indexOf(p.path + "\n" + p.message) < 0; }));
  }

  // Every problem is listed at the top; in the form view those shown at their field are hidden there.
  function showProblems(problems) {
    problems = withRefused(problems);
    lastProblems = problems;
    var unplaced = schemaForm.show(problems);
    problemList.innerHTML = "";
    problems.forEach(function (problem) {
      problemList.appendChild(el("li", { "data-path": problem.path, "class": unplaced.indexOf(problem) < 0 ? "is-placed" : null }, [
        el("code", { text: problem.path || "(root)" }),
        document.createTextNode(" " + problem.message),
        problem.hint ? el("span", { "class": "muted", text: " — " + problem.hint }) : null
      ]));
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

  // ---------------------------------------------------------------- unsaved work
  // Leaving the page (a link, Back, closing the tab) while the descriptor differs from
  // what the page came with asks first: nothing else keeps an hour of editing. Compared
  // as parsed JSON, so the form view's reformatting alone changes nothing; a refused
  // save's page (data-unsaved) holds text nothing has stored yet.
  function canonical(text) {
    try { return JSON.stringify(JSON.parse(text)); } catch (error) { return text; }
  }
  var pristine = form.hasAttribute("data-unsaved") ? null : canonical(json.value);
  var leavingBySave = false;
  form.addEventListener("submit", function () { leavingBySave = true; });
  window.addEventListener("beforeunload", function (event) {
    if (leavingBySave || canonical(json.value) === pristine) return;
    event.preventDefault();
    event.returnValue = "";  // older browsers ask only when this is set
  });

  var file = document.getElementById("descriptor-file");
  if (file !== null) {
    file.addEventListener("change", function () {
      if (!file.files || !file.files[0]) return;
      file.files[0].text().then(function (text) { json.value = text; validate(); });
    });
  }

  // ---------------------------------------------------------------- completion in the JSON view
  // Where the cursor is: the key path of the enclosing object, whether a key or a value is
  // being typed, and the word typed so far. A tolerant scan, so half-typed JSON works.
  function cursorAt(text, end) {
    var stack = [];
    var key = null;
    var lastString = null;
    var expectKey = false;
    var i = 0;
    var word = "";
    while (i < end) {
      var c = text[i];
      if (c === '"') {
        var j = i + 1;
        while (j < end && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
        if (j >= end) { word = text.slice(i + 1, end); return place(stack, key, expectKey, word, i); }
        lastString = text.slice(i + 1, j);
        i = j + 1;
        continue;
      }
      if (c === "{") { stack.push({ key: key, index: null }); key = null; expectKey = true; }
      else if (c === "[") { stack.push({ key: key, index: 0 }); key = null; expectKey = false; }
      else if (c === "}" || c === "]") { stack.pop(); key = null; expectKey = false; }
      else if (c === ":") { key = lastString; expectKey = false; }
      else if (c === ",") {
        var top = stack[stack.length - 1];
        if (top && top.index !== null) top.index++; else { key = null; expectKey = true; }
      }
      i++;
    }
    var bare = /[A-Za-z0-9_$.-]*$/.exec(text.slice(0, end))[0];
    return place(stack, key, expectKey, bare, end - bare.length);
  }
  function place(stack, key, expectKey, word, start) {
    var path = [];
    for (var n = 1; n < stack.length; n++) path.push(stack[n - 1].index !== null ? stack[n - 1].index : stack[n].key);
    var top = stack[stack.length - 1];
    var inObject = top !== undefined && top.index === null;
    return { path: path, key: inObject && !expectKey ? key : null, isKey: inObject && expectKey, word: word, start: start };
  }

  var lastGood = current().data;
  var sample = null; // the last preview/try-out body, for JSONPath suggestions
  function samplePaths() {
    var found = [];
    function walk(node, path, depth) {
      if (depth > 3 || found.length > 60) return;
      if (Array.isArray(node)) {
        found.push(path + "[*]");
        if (isObject(node[0])) walk(node[0], "$", depth + 1); // an item: paths relative to it
        return;
      }
      if (!isObject(node)) return;
      Object.keys(node).forEach(function (k) {
        var next = (path || "$") + (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? "." + k : "['" + k + "']");
        found.push(next);
        walk(node[k], next, depth + 1);
      });
    }
    walk(sample, "", 0);
    return found.filter(function (p, n) { return found.indexOf(p) === n; });
  }
  function isObject(value) { return value !== null && typeof value === "object" && !Array.isArray(value); }

  var completion = document.getElementById("json-completion");
  function suggest() {
    var text = json.value;
    var at = cursorAt(text, json.selectionStart);
    if (current().data !== null) lastGood = current().data;
    var object = schemaForm.objectAt(at.path, lastGood);
    var options = [];
    if (object && at.isKey) {
      var here = at.path.reduce(function (node, k) { return node && typeof node === "object" ? node[k] : undefined; }, lastGood) || {};
      Object.keys(object.properties || {}).forEach(function (k) {
        if (k.indexOf(at.word) === 0 && !(k in here && k !== at.word)) options.push({ text: k, insert: '"' + k + '": ', help: (schemaForm.shape(object.properties[k]).description || "").split("\n")[0] });
      });
    } else if (object && at.key && object.properties && object.properties[at.key]) {
      schemaForm.valuesFor(object.properties[at.key]).forEach(function (v) {
        options.push({ text: v, insert: v === "true" || v === "false" ? v : '"' + v + '"', help: "" });
      });
      if (/Path$|^when$/.test(at.key) && sample !== null) {
        samplePaths().forEach(function (p) { options.push({ text: p, insert: '"' + p + '"', help: "in the last sample" }); });
      }
      options = options.filter(function (o) { return o.text.indexOf(at.word) === 0; });
    }
    completion.innerHTML = "";
    completion.hidden = options.length === 0;
    var end = json.selectionStart;
    options.slice(0, 12).forEach(function (option) {
      var pick = el("button", { type: "button", "class": "editor__suggestion" }, [el("code", { text: option.text }), option.help ? el("span", { "class": "muted small", text: " " + option.help }) : null]);
      pick.addEventListener("click", function () {
        json.value = text.slice(0, at.start) + option.insert + text.slice(end);
        json.focus();
        json.selectionStart = json.selectionEnd = at.start + option.insert.length;
        completion.hidden = true;
        scheduleValidate();
      });
      completion.appendChild(el("li", {}, [pick]));
    });
  }
  json.addEventListener("input", suggest);
  json.addEventListener("click", suggest);
  // Keyboard: Ctrl+Space asks, ArrowDown enters the list (arrows move in it), Escape closes.
  json.addEventListener("keydown", function (event) {
    if (event.key === " " && event.ctrlKey) { event.preventDefault(); suggest(); }
    else if (event.key === "Escape") completion.hidden = true;
    else if (event.key === "ArrowDown" && !completion.hidden) { event.preventDefault(); completion.querySelector("button").focus(); }
  });
  completion.addEventListener("keydown", function (event) {
    var buttons = Array.prototype.slice.call(completion.querySelectorAll("button"));
    var at = buttons.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      var next = at + (event.key === "ArrowDown" ? 1 : -1);
      if (next < 0) json.focus(); else buttons[Math.min(next, buttons.length - 1)].focus();
    } else if (event.key === "Escape") { completion.hidden = true; json.focus(); }
  });
  [json, completion].forEach(function (node) {
    node.addEventListener("focusout", function (event) {
      if (event.relatedTarget !== json && !completion.contains(event.relatedTarget)) completion.hidden = true;
    });
  });

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

  // What the Try tab offers follows the descriptor: a live request for a connector that
  // polls, a pasted delivery for one that receives webhooks (a webhook-only one had only
  // a refusal). A native connector's code decides, so both are offered for it.
  function buildTryFields() {
    var data = current().data;
    if (data === null) return;
    var mode = (data.ingestion || {}).mode;
    var native = data.kind === "native";
    document.getElementById("try-poll").hidden = !native && mode === "webhook";
    document.getElementById("try-delivery").hidden = !native && mode !== "webhook" && mode !== "polling_and_webhook";
    var hook = (data.ingestion || {}).webhook || data.ingestion || {};
    document.getElementById("try-delivery-event-help").textContent = hook.eventTypeHeader
      ? "Sent as the " + hook.eventTypeHeader + " header unless the headers have it."
      : hook.eventTypePath ? "Read from the body at " + hook.eventTypePath + ": leave this empty." : "";
    var kept = {};
    tryFields.querySelectorAll("input").forEach(function (input) { kept[input.id] = input.value; });
    tryFields.innerHTML = "";
    var config = (data.configFields || []).slice();
    var ingestion = data.ingestion || {};
    var polling = (ingestion.polling || ingestion).endpoint || "";
    var health = (data.healthCheck || {}).endpoint || "";
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

  function headerLines(text) {
    var headers = {};
    text.split("\n").forEach(function (line) {
      var at = line.indexOf(":");
      if (at > 0) headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    });
    return headers;
  }

  var tryResult = document.getElementById("try-result");
  var tryButton = document.getElementById("try-run");
  // Only the latest try paints: a slow upstream's answer to an earlier click (other
  // credentials, another endpoint) arrived last and replaced the newer one's.
  var latestTry = 0;
  function runTry(button, request, busy) {
    var data = current().data;
    if (data === null) { tryResult.textContent = "Fix the JSON first."; return; }
    request.descriptor = data;
    var mine = ++latestTry;
    button.setAttribute("aria-busy", "true");
    tryResult.textContent = busy;
    post("/api/connectors/try", request).then(function (answer) {
      if (mine !== latestTry) return;
      tryResult.innerHTML = "";
      var body = answer.data;
      if (answer.status !== 200) {
        var error = body.error || {};
        tryResult.appendChild(el("p", { "class": "field__error", role: "alert", text: error.message || "The try-out was refused." }));
        return;
      }
      if (body.error) tryResult.appendChild(el("p", { "class": "field__error", role: "alert", text: body.error.message }));
      if (body.delivery) tryResult.appendChild(el("p", { text: "Event type: " + (body.delivery.eventType || "(none)") }));
      if (body.handshake) {
        tryResult.appendChild(el("p", { text: "Handshake '" + body.handshake.kind + "': the gateway answers HTTP " + body.handshake.status }));
        tryResult.appendChild(pre(body.handshake.body));
      }
      if (body.request) tryResult.appendChild(el("section", { "class": "editor__exchange" }, [
        el("h3", { text: "Request" }),
        pre(body.request.method + " " + body.request.url + "\n" + Object.keys(body.request.headers).map(function (k) { return k + ": " + body.request.headers[k]; }).join("\n"))
      ]));
      if (body.response) {
        try { sample = JSON.parse(body.response.body); } catch (error) { /* cut or not JSON: keep the last */ }
      }
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
    }).catch(function () { if (mine === latestTry) tryResult.textContent = "Could not reach the server."; })
      .then(function () { if (mine === latestTry) button.removeAttribute("aria-busy"); });
  }
  tryButton.addEventListener("click", function () {
    runTry(tryButton, { credentials: collect("credentials"), config: collect("config"), maxPages: 1 }, "Sending…");
  });
  var deliveryButton = document.getElementById("try-delivery-run");
  deliveryButton.addEventListener("click", function () {
    var raw = document.getElementById("try-delivery-body").value;
    try { sample = JSON.parse(raw); } catch (error) { tryResult.textContent = "The delivery is not JSON: " + error.message; return; }
    var eventType = document.getElementById("try-delivery-event").value.trim();
    runTry(deliveryButton, { delivery: {
      body: raw, headers: headerLines(document.getElementById("try-delivery-headers").value),
      eventType: eventType === "" ? null : eventType
    } }, "Mapping…");
  });

  // ---------------------------------------------------------------- webhook preview
  var previewResult = document.getElementById("preview-result");
  var headerBox = document.getElementById("preview-headers");
  function runPreview(sign) {
    var data = current().data;
    var raw = document.getElementById("preview-sample").value;
    try { sample = JSON.parse(raw); }
    catch (error) { previewResult.textContent = "The payload is not JSON: " + error.message; return; }
    var secret = document.getElementById("preview-secret").value;
    if (sign && secret === "") { previewResult.textContent = "Type the webhook secret to sign with first."; return; }
    var headers = headerLines(headerBox.value);
    post("/api/connectors/preview", {
      descriptor: data, body: raw, headers: headers, mode: document.getElementById("preview-mode").value,
      secret: secret === "" ? null : secret, sign: sign
    }).then(function (answer) {
      previewResult.innerHTML = "";
      var body = answer.data;
      if (answer.status !== 200) { previewResult.textContent = (body.error || {}).message || "Refused."; return; }
      (body.problems || []).forEach(function (p) {
        previewResult.appendChild(el("p", { "class": "field__error", role: "alert", text: (p.path ? p.path + ": " : "") + p.message + (p.hint ? " (" + p.hint + ")" : "") }));
      });
      var signed = body.signedHeaders || {};
      if (Object.keys(signed).length) {  // shown in the headers box, so the author sees what was sent
        var kept = headerBox.value.split("\n").filter(function (line) {
          var name = line.slice(0, line.indexOf(":")).trim().toLowerCase();
          return line.trim() && !Object.keys(signed).some(function (k) { return k.toLowerCase() === name; });
        });
        headerBox.value = kept.concat(Object.keys(signed).map(function (k) { return k + ": " + signed[k]; })).join("\n");
        previewResult.appendChild(el("p", { text: "Signed with the typed secret: " + Object.keys(signed).join(", ") + " added to the headers." }));
      }
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
  }
  document.getElementById("preview-run").addEventListener("click", function () { runPreview(false); });
  document.getElementById("preview-sign").addEventListener("click", function () { runPreview(true); });

  show("form");
  validate();
})();
