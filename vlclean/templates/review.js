(function () {
  'use strict';
  var DATA = JSON.parse(document.getElementById('data').textContent);
  var ITEMS = DATA.items, TAGS = DATA.tags, ACTIONS = DATA.actions, COLUMNS = DATA.columns;
  var ACTION_KEYS = {g: 'keep', d: 'drop', r: 'relabel', v: 'review'};
  var $ = function (id) { return document.getElementById(id); };
  var cards = Array.prototype.slice.call(document.querySelectorAll('.card'));
  var groups = Array.prototype.slice.call(document.querySelectorAll('.group'));
  var reviewer = $('reviewer'), exportLink = $('export'), exportStatus = $('export-status');
  var counter = $('counter'), csvBox = $('reviews-csv');
  var fIssue = $('f-issue'), fTag = $('f-tag'), fSplit = $('f-split'), fConf = $('f-conf'),
      fConfValue = $('f-conf-value'), fStatus = $('f-status');
  var pFile = $('p-file'), pTag = $('p-tag'), newLabel = $('new-label'), note = $('note');
  var actionButtons = Array.prototype.slice.call(document.querySelectorAll('#panel button[data-action]'));
  var decisions = new Map();  // item index -> {tag, action, newLabel, note}
  var current = cards.length ? 0 : -1;
  var restored = '';

  function decision(i) {
    var d = decisions.get(i);
    if (!d) {
      var it = ITEMS[i];
      d = {tag: '', action: '', newLabel: it.action === 'relabel' ? it.newLabel : '', note: ''};
      decisions.set(i, d);
    }
    return d;
  }
  function touched(d) { return !!(d && (d.tag || d.action || d.note)); }
  // The row this image contributes to the reviews CSV, or null when the reviewer has not touched it.
  function rowFor(i) {
    var d = decisions.get(i);
    if (!touched(d)) return null;
    var action = d.action || ITEMS[i].action;
    return {file_name: ITEMS[i].file, tag: d.tag, action: action,
            new_label: action === 'relabel' ? d.newLabel : '', reviewer: reviewer.value.trim(), note: d.note};
  }
  // A cell a spreadsheet would run as a formula (=, +, -, @, tab or CR first) gets a leading apostrophe
  // (OWASP "CSV injection"); so does one that already starts with apostrophes before such a character,
  // so that vlclean.csvio reads every cell back exactly by taking one apostrophe off.
  function csvField(value) {
    var s = String(value);
    if (/^'*[=+\-@\t\r]/.test(s)) s = "'" + s;
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  // Bidirectional control characters shown as marks, so a right-to-left override cannot reverse a name.
  function markBidi(value) {
    return String(value).replace(/[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, function (c) {
      return '\u27e8U+' + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0') + '\u27e9';
    });
  }
  function buildCsv() {
    var lines = [COLUMNS.map(csvField).join(',')];
    for (var i = 0; i < ITEMS.length; i++) {
      var row = rowFor(i);
      if (row) lines.push(COLUMNS.map(function (c) { return csvField(row[c]); }).join(','));
    }
    return lines.join('\r\n') + '\r\n';
  }
  window.vlReviewsCsv = buildCsv;

  // ---------------------------------------------------------------- rendering state
  function renderCard(i) {
    var card = cards[i], row = rowFor(i), box = card.querySelector('.decision');
    if (!row) { card.removeAttribute('data-decision'); box.textContent = ''; card.classList.remove('needs'); return; }
    card.setAttribute('data-decision', row.action);
    var text = 'you: ' + row.action;
    if (row.action === 'relabel') text += ' → ' + (row.new_label || '(choose a label)');
    if (row.tag) text += ' · #' + row.tag;
    if (row.note) text += ' · note: ' + row.note;
    box.textContent = markBidi(text);
    card.classList.toggle('needs', row.action === 'relabel' && !row.new_label);
  }
  function renderPanel() {
    if (current < 0) return;
    var it = ITEMS[current], d = decisions.get(current), row = rowFor(current);
    pFile.textContent = markBidi(it.file);
    pFile.setAttribute('title', markBidi(it.file));
    pTag.value = d ? d.tag : '';
    newLabel.value = row && row.action === 'relabel' ? row.new_label : '';
    if (document.activeElement !== note) note.value = d ? d.note : '';
    actionButtons.forEach(function (b) {
      b.setAttribute('aria-pressed', String(!!(d && d.action === b.getAttribute('data-action'))));
    });
  }
  function refreshExport() {
    var csv = buildCsv(), rows = 0, missing = 0, counts = {keep: 0, drop: 0, relabel: 0, review: 0};
    csvBox.textContent = csv;  // .value would turn CRLF into LF; textContent keeps the exact bytes
    for (var i = 0; i < ITEMS.length; i++) {
      var row = rowFor(i);
      if (!row) continue;
      rows += 1; counts[row.action] += 1;
      if (row.action === 'relabel' && !row.new_label) missing += 1;
    }
    var problems = [];
    if (!reviewer.value.trim()) problems.push('type your name to enable export');
    if (missing) problems.push(missing + ' relabel' + (missing > 1 ? 's need' : ' needs') + ' a new label');
    if (problems.length) {
      exportLink.removeAttribute('href');
      exportLink.setAttribute('aria-disabled', 'true');
      exportStatus.textContent = problems.join('; ');
    } else {
      exportLink.setAttribute('href', 'data:text/csv;charset=utf-8,' + encodeURIComponent(csv));
      exportLink.setAttribute('aria-disabled', 'false');
      exportStatus.textContent = rows + ' row' + (rows === 1 ? '' : 's') + ' ready' + restored;
    }
    return {rows: rows, counts: counts};
  }
  function refreshCounter(stats) {
    var shown = 0;
    cards.forEach(function (c) { if (!c.hidden && !c.classList.contains('dim')) shown += 1; });
    counter.textContent = shown + ' of ' + ITEMS.length + ' shown · ' + stats.rows + ' reviewed (' +
      ACTIONS.map(function (a) { return stats.counts[a] + ' ' + a; }).join(', ') + ')';
  }
  function save() {
    try {
      var out = {reviewer: reviewer.value, decisions: {}};
      decisions.forEach(function (d, i) { if (touched(d)) out.decisions[ITEMS[i].file] = d; });
      window.localStorage.setItem(DATA.storageKey, JSON.stringify(out));
    } catch (e) { /* storage unavailable (private mode, quota): decisions live in the page only */ }
  }
  function changed(i) {
    if (i >= 0) renderCard(i);
    renderPanel();
    if (decisionFilters()) applyFilters(true); else refreshCounter(refreshExport());
    save();
  }

  // ---------------------------------------------------------------- filters
  function passes(i) {
    var it = ITEMS[i], d = decisions.get(i);
    if (fSplit.value && it.split !== fSplit.value) return false;
    if (fTag.value && it.tags.indexOf(fTag.value) < 0 && !(d && d.tag === fTag.value)) return false;
    if (fStatus.value === 'open' && touched(d)) return false;
    if (fStatus.value === 'done' && !touched(d)) return false;
    var issues = it.issues;
    if (fIssue.value) {
      issues = issues.filter(function (x) { return x[0] === fIssue.value; });
      if (!issues.length) return false;
    }
    var min = parseFloat(fConf.value) || 0;
    if (min > 0) {  // an issue without a confidence is never hidden by the slider
      return issues.some(function (x) { return x[1] === null || x[1] >= min - 1e-9; });
    }
    return true;
  }
  // Filters that depend on the reviewer's decisions ("not reviewed", a tag).
  function decisionFilters() { return !!(fStatus.value || fTag.value); }
  // keepCurrent: the current card stays visible even if a decision just made it fail the filters,
  // so it does not vanish under the reviewer's hands; it goes when they move on.
  function applyFilters(keepCurrent) {
    fConfValue.textContent = (parseFloat(fConf.value) || 0).toFixed(2);
    cards.forEach(function (card, i) {
      var ok = passes(i) || (keepCurrent === true && i === current && !card.hidden);
      card.hidden = !ok;
      card.classList.remove('dim');
    });
    // A duplicate group is shown whole when any member passes (the others dimmed), else hidden.
    groups.forEach(function (g) {
      var members = Array.prototype.slice.call(g.querySelectorAll('.card'));
      var any = members.some(function (c) { return !c.hidden; });
      g.hidden = !any;
      members.forEach(function (c) {
        if (any && c.hidden) { c.hidden = false; c.classList.add('dim'); }
      });
    });
    refreshCounter(refreshExport());
    if (current >= 0 && cards[current].hidden) {
      var wasFocused = document.activeElement === cards[current];
      var next = nearestVisible(current);
      if (next >= 0) setCurrent(next, wasFocused);
    }
  }
  [fIssue, fTag, fSplit, fStatus].forEach(function (el) { el.addEventListener('change', applyFilters); });
  fConf.addEventListener('input', applyFilters);

  // ---------------------------------------------------------------- focus and navigation
  function visible() {
    var out = [];
    cards.forEach(function (c, i) { if (!c.hidden) out.push(i); });
    return out;
  }
  function nearestVisible(i) {
    var vis = visible();
    if (!vis.length) return -1;
    for (var k = 0; k < vis.length; k++) if (vis[k] >= i) return vis[k];
    return vis[vis.length - 1];
  }
  function setCurrent(i, focus) {
    if (i < 0 || i >= cards.length) return;
    var moved = i !== current;
    if (current >= 0) { cards[current].classList.remove('current'); cards[current].tabIndex = -1; }
    current = i;
    if (moved && decisionFilters()) applyFilters(true);
    cards[i].classList.add('current');
    cards[i].tabIndex = 0;  // roving tabindex: Tab enters the grid at the current card
    if (focus) { cards[i].focus(); cards[i].scrollIntoView({block: 'nearest', inline: 'nearest'}); }
    renderPanel();
  }
  function focusCurrent() {
    if (current < 0) return;
    if (cards[current].hidden) { var n = nearestVisible(current); if (n < 0) return; current = n; }
    setCurrent(current, true);
  }
  function step(delta) {
    var vis = visible();
    if (!vis.length) return;
    var pos = vis.indexOf(current);
    if (pos < 0 || document.activeElement !== cards[current]) { setCurrent(pos < 0 ? vis[0] : current, true); return; }
    setCurrent(vis[Math.max(0, Math.min(vis.length - 1, pos + delta))], true);
  }
  function stepRow(dir) {
    var vis = visible();
    if (!vis.length) return;
    if (vis.indexOf(current) < 0) { setCurrent(vis[0], true); return; }
    var cur = cards[current].getBoundingClientRect(), cx = cur.left + cur.width / 2;
    var best = -1, bestRow = Infinity, bestDx = Infinity;
    vis.forEach(function (i) {
      if (i === current) return;
      var r = cards[i].getBoundingClientRect();
      var rowDist = dir > 0 ? r.top - cur.top : cur.top - r.top;
      if (rowDist < 4) return;  // same row or the wrong direction
      var dx = Math.abs(r.left + r.width / 2 - cx);
      if (rowDist < bestRow - 4 || (Math.abs(rowDist - bestRow) <= 4 && dx < bestDx)) {
        best = i; bestRow = rowDist; bestDx = dx;
      }
    });
    setCurrent(best >= 0 ? best : current, true);
  }
  cards.forEach(function (card, i) {
    card.addEventListener('focus', function () { if (current !== i) setCurrent(i, false); });
    card.addEventListener('click', function () { setCurrent(i, true); });
  });
  document.querySelectorAll('.thumb img').forEach(function (img) {
    img.addEventListener('error', function () {  // undecodable bytes: show the placeholder instead
      var box = img.parentNode, span = document.createElement('span');
      box.classList.add('placeholder');
      span.textContent = 'unreadable thumbnail';
      box.replaceChild(span, img);
    });
  });

  // ---------------------------------------------------------------- decisions
  function setTag(i, tag) {
    var d = decision(i);
    d.tag = d.tag === tag ? '' : tag;  // pressing the same tag again removes it
    changed(i);
  }
  function setAction(i, action) {
    var d = decision(i), it = ITEMS[i];
    d.action = action;
    if (action === 'relabel') {
      if (!d.newLabel) d.newLabel = it.newLabel;
    } else {
      d.newLabel = '';
    }
    changed(i);
  }
  function acceptRule(i) {
    var d = decision(i), it = ITEMS[i];
    d.action = it.action;
    d.newLabel = it.action === 'relabel' ? it.newLabel : '';
    changed(i);
  }
  function clearDecision(i) {
    decisions.delete(i);
    changed(i);
  }
  function isField(el) {
    return !!el && (el.tagName === 'INPUT' || el.tagName === 'SELECT' || el.tagName === 'TEXTAREA' ||
                    el.isContentEditable);
  }
  document.addEventListener('keydown', function (ev) {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
    var t = ev.target, key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    if (isField(t)) {
      if (key === 'Escape' || (key === 'Enter' && (t === newLabel || t === note || t === pTag))) {
        ev.preventDefault();
        focusCurrent();
      }
      return;
    }
    if (key === '?') { ev.preventDefault(); $('legend').open = !$('legend').open; return; }
    if (current < 0) return;
    var handled = true;
    if (key === 'ArrowRight' || key === 'j') step(1);
    else if (key === 'ArrowLeft' || key === 'k') step(-1);
    else if (key === 'ArrowDown') stepRow(1);
    else if (key === 'ArrowUp') stepRow(-1);
    else if (key === 'Home') { var v = visible(); if (v.length) setCurrent(v[0], true); }
    else if (key === 'End') { var w = visible(); if (w.length) setCurrent(w[w.length - 1], true); }
    else if (key === 'Escape') focusCurrent();
    else if (cards[current].hidden) handled = false;  // never decide for an image the filters hide
    else if (Object.prototype.hasOwnProperty.call(ACTION_KEYS, key)) {
      setAction(current, ACTION_KEYS[key]);
      if (key === 'r') newLabel.focus();
    }
    else if (key === 'a') acceptRule(current);
    else if (key === '0') { var d0 = decisions.get(current); if (d0 && d0.tag) setTag(current, d0.tag); }
    else if (/^[1-9]$/.test(key)) { var n = Number(key) - 1; if (n < TAGS.length) setTag(current, TAGS[n]); }
    else if (key === 'n') note.focus();
    else if (key === 't') pTag.focus();
    else if (key === 'Backspace' || key === 'Delete') clearDecision(current);
    else handled = false;
    if (handled) ev.preventDefault();
  });

  // ---------------------------------------------------------------- panel controls
  actionButtons.forEach(function (b) {
    b.addEventListener('click', function () {
      if (current < 0) return;
      setAction(current, b.getAttribute('data-action'));
      if (b.getAttribute('data-action') === 'relabel') newLabel.focus();
    });
  });
  $('clear').addEventListener('click', function () { if (current >= 0) clearDecision(current); });
  pTag.addEventListener('change', function () {
    if (current < 0) return;
    decision(current).tag = pTag.value;
    changed(current);
  });
  newLabel.addEventListener('change', function () {
    if (current < 0) return;
    var d = decision(current);
    d.newLabel = newLabel.value;
    if (newLabel.value) d.action = 'relabel';  // choosing a class means relabelling
    changed(current);
  });
  note.addEventListener('input', function () {
    if (current < 0) return;
    decision(current).note = note.value;
    changed(current);
  });
  reviewer.addEventListener('input', function () { restored = ''; refreshCounter(refreshExport()); save(); });

  // ---------------------------------------------------------------- restore and start
  (function restore() {
    var saved;
    try { saved = JSON.parse(window.localStorage.getItem(DATA.storageKey) || 'null'); } catch (e) { saved = null; }
    if (!saved || typeof saved !== 'object') return;
    if (typeof saved.reviewer === 'string') reviewer.value = saved.reviewer;
    var byFile = {}, n = 0;
    ITEMS.forEach(function (it, i) { byFile[it.file] = i; });
    var src = saved.decisions && typeof saved.decisions === 'object' ? saved.decisions : {};
    Object.keys(src).forEach(function (file) {
      var d = src[file], i = byFile[file];
      if (i === undefined || !d || typeof d !== 'object') return;
      var str = function (v) { return typeof v === 'string' ? v : ''; };
      var clean = {tag: TAGS.indexOf(d.tag) >= 0 ? d.tag : '', action: ACTIONS.indexOf(d.action) >= 0 ? d.action : '',
                   newLabel: str(d.newLabel), note: str(d.note)};
      if (touched(clean)) { decisions.set(i, clean); n += 1; }
    });
    if (n) restored = ' (' + n + ' restored from this browser)';
  })();
  cards.forEach(function (c, i) { renderCard(i); });
  if (current >= 0) setCurrent(0, false);
  applyFilters();
})();
