// ucf schema form: a form for one JSON value, rendered from its JSON Schema (the subset
// pydantic emits: $ref, oneOf + discriminator, anyOf with null, enum/const, objects, arrays,
// string maps). The value is edited in place, so keys the schema does not know stay as
// they are; every edit calls onChange(value). Problems ({path, message, hint}) are shown
// next to the field at their path ("a.b[2].c"); show() returns those that have no field.
// Options: order (def title → key order), primary (def title → keys shown outside "More
// options"), switches ({enumKey: {value: siblingObjectKey}}: an enum that chooses which
// sibling object applies, like webhook verification), relevant (def title → {key, fields:
// {value: keys}}: the keys that mean something for the chosen value, like pagination types;
// others are hidden unless set), listWhen(parent, key) (a string-or-list value is typed as a
// comma-separated list), labels (key → label).
(function () {
  "use strict";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (attrs[key] !== null && attrs[key] !== undefined) node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function isObject(value) { return value !== null && typeof value === "object" && !Array.isArray(value); }
  function pathText(path) {
    return path.reduce(function (text, key) {
      return typeof key === "number" ? text + "[" + key + "]" : (text ? text + "." : "") + key;
    }, "");
  }
  // "itemsPath" → "Items path"; "rateLimitRpm" → "Rate limit rpm".
  function words(key) {
    var spaced = String(key).replace(/^_+/, "").replace(/([a-z0-9])([A-Z])/g, "$1 $2").replace(/_/g, " ");
    return spaced.charAt(0).toUpperCase() + spaced.slice(1).toLowerCase();
  }

  window.ucfSchemaForm = function (container, schema, options) {
    options = options || {};
    var defs = schema.$defs || {};
    var root = null;
    var stash = {}; // path + branch → the values a union branch had, for switching back

    function deref(s) {
      while (s && s.$ref) s = defs[s.$ref.replace("#/$defs/", "")];
      return s || {};
    }

    // One shape per schema: what kind of input it needs.
    function shape(s) {
      s = deref(s);
      if (s.anyOf) {
        var real = s.anyOf.filter(function (b) { return deref(b).type !== "null"; });
        var nullable = real.length < s.anyOf.length;
        if (real.length === 1) {
          var one = shape(real[0]);
          return Object.assign({}, one, { nullable: nullable, description: s.description || one.description });
        }
        var stringy = real.every(function (b) {
          b = deref(b);
          return b.type === "string" || (b.type === "array" && deref(b.items).type === "string");
        });
        return { kind: stringy ? "stringOrList" : "json", schema: s, nullable: nullable, description: s.description };
      }
      var base = { schema: s, description: s.description, title: s.title };
      if (s.oneOf) {
        var branches = s.oneOf.map(deref);
        var tag = s.discriminator ? s.discriminator.propertyName : Object.keys(branches[0].properties).filter(function (k) {
          return branches[0].properties[k].const !== undefined;
        })[0];
        return Object.assign(base, { kind: "union", tag: tag, branches: branches });
      }
      if (s.const !== undefined) return Object.assign(base, { kind: "const" });
      if (s.enum) return Object.assign(base, { kind: "enum" });
      if (s.type === "object" && s.properties) return Object.assign(base, { kind: "object" });
      if (s.type === "object" && isObject(s.additionalProperties) && s.additionalProperties.type === "string") {
        return Object.assign(base, { kind: "map" });
      }
      if (s.type === "array") {
        var items = shape(s.items);
        if (items.kind === "object" || items.kind === "union") return Object.assign(base, { kind: "list", items: items });
        if (items.kind === "string") return Object.assign(base, { kind: "strings" });
        return Object.assign(base, { kind: "json" });
      }
      if (s.type === "integer" || s.type === "number") return Object.assign(base, { kind: "number" });
      if (s.type === "boolean" || s.type === "string") return Object.assign(base, { kind: s.type });
      return Object.assign(base, { kind: "json" });
    }

    // A new value that satisfies the schema's required parts, keeping what `old` shares.
    function skeleton(s, old) {
      var found = shape(s);
      if (found.kind === "union") return skeleton(found.branches[0], old);
      if (found.kind === "object") return fit(found.schema, isObject(old) ? old : {});
      if (found.kind === "list" || found.kind === "strings") return [];
      if (found.schema.default !== undefined && found.schema.default !== null) return found.schema.default;
      if (found.kind === "const") return found.schema.const;
      if (found.kind === "enum") return found.schema.enum[0];
      if (found.kind === "number") return found.schema.minimum || 0;
      if (found.kind === "boolean") return false;
      if (found.kind === "map") return {};
      return "";
    }

    // `old`'s values rearranged for object schema `s`: same keys kept, keys of nested
    // objects lifted when `s` has them at its top, keys `s` nests moved down.
    function fit(s, old) {
      var props = s.properties || {};
      var pool = Object.assign({}, old);
      Object.keys(old).forEach(function (key) {
        if (!(key in props) && isObject(old[key])) {
          Object.keys(old[key]).forEach(function (inner) { if (!(inner in pool)) pool[inner] = old[key][inner]; });
        }
      });
      var out = {};
      Object.keys(props).forEach(function (key) {
        var prop = shape(props[key]);
        if (prop.kind === "const") out[key] = prop.schema.const;
        else if (prop.kind === "object" && isObject(pool[key])) out[key] = fit(prop.schema, pool[key]);
        else if (key in pool && prop.kind !== "object" && !(prop.kind === "enum" && prop.schema.enum.indexOf(pool[key]) < 0)) out[key] = pool[key];
        else if (prop.kind === "object" && (s.required || []).indexOf(key) >= 0) out[key] = fit(prop.schema, pool);
        else if ((s.required || []).indexOf(key) >= 0) out[key] = skeleton(props[key]);
      });
      Object.keys(options.switches || {}).forEach(function (enumKey) {  // the chosen sibling too
        var target = options.switches[enumKey][out[enumKey]];
        if (target && props[target] && !isObject(out[target])) out[target] = fit(shape(props[target]).schema, {});
      });
      return out;
    }

    // `over` laid on `base`, objects merged key by key: what a switch back remembers, under
    // what the form holds now.
    function merge(base, over) {
      if (!isObject(base) || !isObject(over)) return over === undefined ? base : over;
      var out = Object.assign({}, base);
      Object.keys(over).forEach(function (k) { out[k] = merge(base[k], over[k]); });
      return out;
    }

    function read(path) {
      return path.reduce(function (node, key) {
        return node !== null && typeof node === "object" && key in node ? node[key] : undefined;
      }, root);
    }
    function write(path, value) {
      var node = root;
      for (var i = 0; i < path.length - 1; i++) {
        if (node[path[i]] === null || typeof node[path[i]] !== "object") {
          node[path[i]] = typeof path[i + 1] === "number" ? [] : {};
        }
        node = node[path[i]];
      }
      var last = path[path.length - 1];
      if (value === undefined) delete node[last]; else node[last] = value;
    }
    function changed(rerender) {
      if (rerender) render(root);
      if (options.onChange) options.onChange(root);
    }

    // ------------------------------------------------------------ fields
    function idOf(path, suffix) { return "sf-" + pathText(path).replace(/[^A-Za-z0-9]+/g, "-") + (suffix || ""); }
    function focus(id) { var node = document.getElementById(id); if (node) node.focus(); }

    function field(path, label, found, required) {
      var id = idOf(path);
      var value = read(path);
      var input;
      var help = found.description || "";
      if (found.kind === "enum" || found.kind === "boolean") {
        var choices = found.kind === "boolean" ? ["true", "false"] : found.schema.enum;
        input = el("select", { id: id });
        if (!required || value === undefined) {
          var fallback = found.schema.default;
          input.appendChild(el("option", { value: "", text: fallback !== undefined && fallback !== null ? "(default: " + fallback + ")" : "—" }));
        }
        choices.forEach(function (choice) { input.appendChild(el("option", { value: String(choice), text: String(choice) })); });
        input.value = value === undefined || value === null ? "" : String(value);
      } else if (found.kind === "map" || found.kind === "json") {
        input = el("textarea", { id: id, rows: "3", spellcheck: "false" });
        if (found.kind === "map") {
          help = (help ? help + " " : "") + "One 'Name: value' per line.";
          input.value = isObject(value) ? Object.keys(value).map(function (k) { return k + ": " + value[k]; }).join("\n") : "";
        } else {
          help = (help ? help + " " : "") + "JSON.";
          input.value = value === undefined || value === null ? "" : typeof value === "string" ? value : JSON.stringify(value, null, 2);
        }
      } else {
        input = el("input", { id: id, type: found.kind === "number" ? "number" : "text", autocomplete: "off", spellcheck: "false" });
        if (Array.isArray(value)) input.value = value.join(", ");
        else input.value = value === undefined || value === null ? "" : String(value);
        if (found.kind === "strings" || found.kind === "stringOrList") {
          help = (help ? help + " " : "") + (found.kind === "strings" ? "Comma-separated." : "A list, comma-separated, for 'in'.");
        }
        if (found.schema.default !== undefined && found.schema.default !== null && found.schema.default !== "") {
          input.setAttribute("placeholder", String(found.schema.default));
        }
      }
      input.addEventListener(input.tagName === "SELECT" ? "change" : "input", function () {
        var typed = parse(input.value, found, required, read(path.slice(0, -1)), path[path.length - 1]);
        var problem = typed === INVALID;
        input.setAttribute("aria-invalid", problem ? "true" : "false");
        if (problem) return;
        write(path, typed);
        var key = path[path.length - 1];
        if (options.switches && options.switches[key]) swap(path, typed);
        else changed(Object.keys(options.relevant || {}).some(function (t) { return options.relevant[t].key === key; }));
      });
      var box = el("div", { "class": "field" + (found.kind === "json" || found.kind === "map" ? " editor__wide" : ""), "data-field": pathText(path) }, [
        el("label", { "for": id, text: label + (required ? "" : " (optional)") }), input,
        help ? el("p", { "class": "field__help", text: help }) : null
      ]);
      return box;
    }

    var INVALID = {};
    function parse(raw, found, required, parent, key) {
      var trimmed = raw.trim();
      if (trimmed === "") return found.kind === "strings" && required ? [] : undefined;
      if (found.kind === "number") { var n = Number(trimmed); return isFinite(n) ? n : INVALID; }
      if (found.kind === "boolean") return raw === "true";
      if (found.kind === "strings") return raw.split(",").map(function (v) { return v.trim(); }).filter(Boolean);
      if (found.kind === "stringOrList" && options.listWhen && options.listWhen(parent, key)) {
        return raw.split(",").map(function (v) { return v.trim(); }).filter(Boolean);
      }
      if (found.kind === "map") {
        var map = {};
        raw.split("\n").forEach(function (line) {
          var at = line.indexOf(":");
          if (at > 0) map[line.slice(0, at).trim()] = line.slice(at + 1).trim();
        });
        return map;
      }
      if (found.kind === "json") {
        try { return JSON.parse(raw); } catch (error) {
          var strings = (found.schema.anyOf || []).some(function (b) { return deref(b).type === "string"; });
          return strings ? raw : INVALID;
        }
      }
      return raw;
    }

    // An enum that chooses a sibling object (webhook verification → signature | token).
    function swap(path, chosen) {
      var parentPath = path.slice(0, -1);
      var parent = read(parentPath);
      var table = options.switches[path[path.length - 1]];
      var props = parentSchemaProps(parentPath);
      var leaving = {};
      Object.keys(table).forEach(function (value) {
        var key = table[value];
        if (value !== chosen && isObject(parent[key])) { leaving = parent[key]; stash[pathText(parentPath.concat(key))] = parent[key]; delete parent[key]; }
      });
      var target = table[chosen];
      if (target && props[target] && !isObject(parent[target])) {
        parent[target] = fit(shape(props[target]).schema, merge(stash[pathText(parentPath.concat(target))] || {}, leaving));
      }
      changed(true);
    }

    var schemaAt = {}; // path text → object schema properties, filled while rendering
    function parentSchemaProps(path) { return schemaAt[pathText(path)] || {}; }

    function ordered(s) {
      var keys = Object.keys(s.properties || {});
      var order = (options.order || {})[s.title] || [];
      var required = s.required || [];
      function rank(key) {
        var at = order.indexOf(key);
        return at >= 0 ? at : order.length + (required.indexOf(key) >= 0 ? 0 : 100);
      }
      return keys.slice().sort(function (a, b) { return rank(a) - rank(b) || (a < b ? -1 : 1); });
    }

    function label(key) { return (options.labels || {})[key] || words(key); }
    // "SignalTypeRule" → "Signal type rule"; an untitled item is named after its list.
    function itemName(found, listLabel) { return found.title ? words(found.title).replace(/ descriptor$/, "") : listLabel.replace(/s$/, ""); }

    // The properties of an object as fields, nested fieldsets and lists.
    function members(s, path, value, into) {
      schemaAt[pathText(path)] = s.properties || {};
      var required = s.required || [];
      var primary = (options.primary || {})[s.title];
      var relevant = (options.relevant || {})[s.title];
      var meaningful = relevant && isObject(value) ? relevant.fields[value[relevant.key]] : null;
      var more = el("div", { "class": "editor__grid" });
      var moreCount = 0;
      var grid = el("div", { "class": "editor__grid" });
      var blocks = [];
      ordered(s).forEach(function (key) {
        var prop = shape(s.properties[key]);
        if (prop.kind === "const") return;
        if (switchedOff(s, key, value)) return;
        var set = isObject(value) && value[key] !== undefined && value[key] !== null;
        if (meaningful && key !== relevant.key && meaningful.indexOf(key) < 0 && !set) return;
        var need = required.indexOf(key) >= 0;
        var node = member(path.concat(key), label(key), prop, need);
        var isBlock = node.tagName === "FIELDSET";
        var main = need || isBlock || (primary ? primary.indexOf(key) >= 0 : true) || set;
        if (isBlock) blocks.push(node);
        else if (main) grid.appendChild(node);
        else { more.appendChild(node); moreCount++; }
      });
      into.appendChild(grid);
      if (moreCount) {
        into.appendChild(el("details", { "class": "editor__more", "data-field": (pathText(path) || s.title) + "#more" }, [el("summary", { text: "More options (" + moreCount + ")" }), more]));
      }
      blocks.forEach(function (block) { into.appendChild(block); });
      var unknown = isObject(value) ? Object.keys(value).filter(function (k) { return !(k in (s.properties || {})); }) : [];
      if (unknown.length) into.appendChild(el("p", { "class": "field__help", text: "Also here, edited in the JSON view: " + unknown.join(", ") }));
    }

    function switchedOff(s, key, value) {
      var off = false;
      Object.keys(options.switches || {}).forEach(function (enumKey) {
        if (!(enumKey in (s.properties || {}))) return;
        var table = options.switches[enumKey];
        var owners = Object.keys(table).filter(function (v) { return table[v] === key; });
        if (owners.length && owners.indexOf(isObject(value) ? value[enumKey] : undefined) < 0) off = true;
      });
      return off;
    }

    function member(path, title, found, required) {
      if (found.kind === "object" || found.kind === "union") return block(path, title, found, required);
      if (found.kind === "list") return list(path, title, found, required);
      return field(path, title, found, required);
    }

    function legend(title, path, found, required, present) {
      var head = el("legend", { text: title });
      if (found.description) head.appendChild(el("span", { "class": "field__help", text: " " + found.description.split("\n")[0] }));
      if (!required && present) {
        var drop = el("button", { type: "button", "class": "btn btn--ghost btn--sm", text: "Remove", "aria-label": "Remove " + title.toLowerCase() });
        drop.addEventListener("click", function () { stash[pathText(path)] = read(path); write(path, undefined); changed(true); });
        head.appendChild(drop);
      }
      return head;
    }

    function block(path, title, found, required) {
      var value = read(path);
      var present = isObject(value);
      var box = el("fieldset", { "class": "editor__group", "data-field": pathText(path) });
      box.appendChild(legend(title, path, found, required, present));
      if (!present && !required) {
        var add = el("button", { type: "button", "class": "btn btn--secondary btn--sm", text: "Add " + title.toLowerCase() });
        add.addEventListener("click", function () { write(path, stash[pathText(path)] || skeleton(found.schema)); changed(true); });
        box.appendChild(add);
        return box;
      }
      if (found.kind === "union") {
        var branch = found.branches.filter(function (b) { return present && b.properties[found.tag].const === value[found.tag]; })[0];
        var id = idOf(path, "-" + found.tag);
        var pick = el("select", { id: id });
        if (!branch) pick.appendChild(el("option", { value: "", text: "— choose —" }));
        found.branches.forEach(function (b) {
          var tag = b.properties[found.tag].const;
          pick.appendChild(el("option", { value: tag, text: tag }));
        });
        pick.value = branch ? value[found.tag] : "";
        pick.addEventListener("change", function () {
          var old = read(path) || {};
          if (old[found.tag]) stash[pathText(path) + "#" + old[found.tag]] = JSON.parse(JSON.stringify(old));
          var next = found.branches.filter(function (b) { return b.properties[found.tag].const === pick.value; })[0];
          var kept = stash[pathText(path) + "#" + pick.value];
          write(path, fit(next, merge(kept || {}, old)));
          changed(true);
        });
        box.appendChild(el("div", { "class": "editor__grid" }, [el("div", { "class": "field", "data-field": pathText(path.concat(found.tag)) }, [
          el("label", { "for": id, text: label(found.tag) }), pick,
          branch && branch.description ? el("p", { "class": "field__help", text: branch.description.split("\n")[0] }) : null
        ])]));
        if (branch) members(branch, path, value, box);
        return box;
      }
      members(found.schema, path, value, box);
      return box;
    }

    function list(path, title, found, required) {
      var value = read(path);
      var name = itemName(found.items, title);
      var box = el("fieldset", { "class": "editor__group editor__list", "data-field": pathText(path) });
      box.appendChild(legend(title, path, found, true, false));
      (Array.isArray(value) ? value : []).forEach(function (entry, index) {
        var itemPath = path.concat(index);
        var item = el("fieldset", { "class": "editor__item", "data-field": pathText(itemPath) });
        var head = el("legend", { text: name + " " + (index + 1) });
        var drop = el("button", { type: "button", "class": "btn btn--ghost btn--sm", text: "Remove", "aria-label": "Remove " + name.toLowerCase() + " " + (index + 1) });
        drop.addEventListener("click", function () { read(path).splice(index, 1); changed(true); focus(idOf(path, "-add")); });
        head.appendChild(drop);
        item.appendChild(head);
        if (found.items.kind === "union") {  // the selector and its sub-form, without a second legend
          Array.prototype.slice.call(block(itemPath, name, found.items, true).children, 1).forEach(function (node) { item.appendChild(node); });
        } else members(found.items.schema, itemPath, entry, item);
        box.appendChild(item);
      });
      var add = el("button", { type: "button", id: idOf(path, "-add"), "class": "btn btn--secondary btn--sm", text: "Add " + name.toLowerCase() });
      add.addEventListener("click", function () {
        var now = read(path);
        if (!Array.isArray(now)) { now = []; write(path, now); }
        now.push(skeleton(found.items.schema));
        changed(true);
        var fresh = container.querySelector('[data-field="' + pathText(path.concat(now.length - 1)) + '"] :is(input, select, textarea)');
        if (fresh) fresh.focus();
      });
      box.appendChild(add);
      return box;
    }

    // ------------------------------------------------------------ the whole form
    var layout = options.groups || null;
    function render(data) {
      root = data;
      var open = {};
      container.querySelectorAll("details[data-field]").forEach(function (d) { open[d.getAttribute("data-field")] = d.open; });
      var scrolled = window.scrollY;
      var focused = container.contains(document.activeElement) ? document.activeElement.id : "";
      container.innerHTML = "";
      schemaAt = {};
      if (!isObject(root)) return;
      schemaAt[""] = schema.properties;
      if (!layout) { members(schema, [], root, container); window.scrollTo(window.scrollX, scrolled); return; }
      var placed = {};
      layout.forEach(function (group) { group.keys.forEach(function (k) { placed[k] = true; }); });
      var rest = Object.keys(schema.properties).filter(function (k) { return !placed[k]; });
      layout.concat(rest.length ? [{ title: "Other", keys: rest }] : []).forEach(function (group) {
        var section = el("details", { "class": "editor__section", "data-field": "#" + group.title, open: "" }, [el("summary", { text: group.title })]);
        var sub = { title: null, properties: {}, required: [] };
        group.keys.forEach(function (k) {
          if (!schema.properties[k]) return;
          sub.properties[k] = schema.properties[k];
          if ((schema.required || []).indexOf(k) >= 0) sub.required.push(k);
        });
        var inner = el("div", {});
        members(Object.assign(sub, { title: "#" + group.title }), [], root, inner);
        // the root's unknown-keys note belongs once, at the end
        inner.querySelectorAll(":scope > p.field__help").forEach(function (p) { p.remove(); });
        section.appendChild(inner);
        container.appendChild(section);
      });
      schemaAt[""] = schema.properties;
      var unknown = Object.keys(root).filter(function (k) { return !(k in schema.properties); });
      if (unknown.length) container.appendChild(el("p", { "class": "field__help", text: "Also in the descriptor, edited in the JSON view: " + unknown.join(", ") }));
      container.querySelectorAll("details[data-field]").forEach(function (d) {  // as the user left them
        if (open[d.getAttribute("data-field")] !== undefined) d.open = open[d.getAttribute("data-field")];
      });
      window.scrollTo(window.scrollX, scrolled);
      if (focused) focus(focused);  // a selector that redrew the form keeps the focus
    }

    // Problems next to their fields; those with no field are returned.
    function show(problems) {
      container.querySelectorAll(".field__error").forEach(function (node) { node.remove(); });
      container.querySelectorAll(".field--invalid").forEach(function (node) { node.classList.remove("field--invalid"); });
      return problems.filter(function (problem) {
        var at = problem.path ? container.querySelector('[data-field="' + problem.path.replace(/"/g, '\\"') + '"]') : null;
        if (at === null) return true;
        at.classList.add("field--invalid");
        var note = el("p", { "class": "field__error", role: "alert", text: problem.message + (problem.hint ? " (" + problem.hint + ")" : "") });
        if (at.tagName === "FIELDSET") at.insertBefore(note, at.children[1] || null); else at.appendChild(note);
        for (var up = at.parentNode; up && up !== container; up = up.parentNode) if (up.tagName === "DETAILS") up.open = true;
        return false;
      });
    }

    // For completion: the object schema at a path (keys and indexes) of `data`, or null.
    function concrete(s, here) {
      var found = shape(s);
      if (found.kind !== "union") return found;
      var tagged = isObject(here) ? found.branches.filter(function (b) { return b.properties[found.tag].const === here[found.tag]; })[0] : null;
      if (tagged) return shape(tagged);
      var merged = found.branches.reduce(function (all, b) { return Object.assign(all, b.properties); }, {});
      return { kind: "object", schema: { properties: merged } };
    }
    function objectAt(path, data) {
      var s = schema;
      var here = data;
      for (var i = 0; i < path.length; i++) {
        var found = concrete(s, here);
        if (typeof path[i] === "number") {
          if (found.kind !== "list") return null;
          s = found.items.schema;
        } else {
          if (found.kind !== "object" || !found.schema.properties[path[i]]) return null;
          s = found.schema.properties[path[i]];
        }
        here = here !== null && typeof here === "object" ? here[path[i]] : undefined;
      }
      var last = concrete(s, here);
      return last.kind === "object" ? last.schema : null;
    }

    function valuesFor(s) {
      var found = shape(s);
      if (found.kind === "enum") return found.schema.enum.map(String);
      if (found.kind === "boolean") return ["true", "false"];
      return [];
    }

    return { render: render, show: show, objectAt: objectAt, valuesFor: valuesFor, shape: shape };
  };
})();
