"""The JavaScript of the form helpers: how a field is found by its label, checked, filled and read.

:mod:`shared.browser.forms` runs these with ``page.evaluate``, each in one browser round trip; both
fill modes share :data:`_FORM_HELPERS_JS` and :data:`_RESOLVE_JS`, so a field is found the same way
per field and ``fast``.
"""

#: The one way Kansli finds a form's fields, shared by both fill modes (inserted into each script).
#: A field is named by its ``<label>`` (``for`` or wrapping, without the text of controls inside it),
#: ``aria-label`` or ``aria-labelledby``; failing any such match, by its placeholder or title. Names
#: match after collapsing whitespace and dropping a trailing required marker (``*``) and colon; an
#: exact match wins, a case-insensitive one counts only when it is unique. Radio groups are named by
#: a ``<fieldset>``'s legend or a ``role=radiogroup``/``group`` element's ARIA name.
_FORM_HELPERS_JS = """
  const norm = (s) => (s || '').replace(/\\s+/g, ' ').trim();
  const key = (s) => norm(s).replace(/[\\s*:]+$/, '');
  const folded = (s) => s.toLowerCase();
  const INNER = 'input, select, textarea, button';
  const text = (el) => {
    if (!el.querySelector(INNER)) return el.textContent;
    const copy = el.cloneNode(true);
    copy.querySelectorAll(INNER).forEach((inner) => inner.remove());
    return copy.textContent;
  };
  const labelledBy = (el) => (el.getAttribute('aria-labelledby') || '').split(/\\s+/)
    .map((id) => id && document.getElementById(id)).filter(Boolean).map(text).join(' ');
  const visible = (el) => {  // from the computed style alone where the browser can: no forced layout
    if (el.checkVisibility) return el.checkVisibility({visibilityProperty: true});
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== 'hidden';
  };
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  const until = async (probe, ms) => {
    const end = Date.now() + ms;
    for (;;) {
      const found = probe();
      if (found || Date.now() >= end) return found;
      await sleep(25);
    }
  };
  const names = (el) => [
    [...(el.labels || [])].map(text).concat([el.getAttribute('aria-label'), labelledBy(el)]),
    [el.getAttribute('placeholder'), el.getAttribute('title')]];
  const NOT_FIELDS = new Set(['hidden', 'submit', 'button', 'reset', 'image']);
  const fieldsOnPage = () => {
    const found = [];
    for (const el of document.querySelectorAll('input, select, textarea')) {
      if (el.tagName !== 'INPUT' || !NOT_FIELDS.has(el.type)) found.push({el, names: names(el)});
    }
    for (const group of document.querySelectorAll('fieldset, [role=radiogroup], [role=group]')) {
      if (!group.querySelector('input[type=radio]')) continue;
      const legend = group.tagName === 'FIELDSET' ? group.querySelector(':scope > legend') : null;
      found.push({el: group, names: [[legend && text(legend), group.getAttribute('aria-label'),
                                       labelledBy(group)], [group.getAttribute('title')]]});
    }
    return found;
  };
  const buttonsOnPage = () => [...document.querySelectorAll(
    'button, input[type=submit], input[type=button], input[type=image], [role=button]')].map((el) => ({
      el, names: [[el.getAttribute('aria-label'), labelledBy(el),
                   el.tagName === 'INPUT' ? el.value || el.alt : text(el)], [el.getAttribute('title')]]}));
  const keyed = (found) => {
    for (const c of found) c.keys = c.names.map((tier) => tier.map(key).filter(Boolean));
    return found;
  };
  const match = (found, wanted) => {
    const exact = key(wanted), loose = folded(exact);
    for (const tier of [0, 1]) {
      const same = new Set(), similar = new Set();
      for (const c of found) {
        for (const k of c.keys[tier]) {
          if (k === exact) same.add(c.el); else if (folded(k) === loose) similar.add(c.el);
        }
      }
      for (const hits of [same, similar]) {
        if (!hits.size) continue;
        const all = [...hits], shown = all.length > 1 ? all.filter(visible) : all;
        return shown.length === 1 ? shown : all;
      }
    }
    return [];
  };
  const kindOf = (el) => {
    if (el.tagName === 'SELECT') return 'select';
    if (el.tagName === 'TEXTAREA') return 'text';
    if (el.tagName !== 'INPUT') return 'radio group';
    return {checkbox: 'checkbox', radio: 'radio', file: 'file'}[el.type] || 'text';
  };
  const option = (el, wanted) => {
    const offered = [...el.options].filter((o) => !o.disabled), exact = norm(wanted);
    for (const test of [(o) => norm(o.label) === exact, (o) => o.value === wanted,
                        (o) => folded(norm(o.label)) === folded(exact)]) {
      const hits = offered.filter(test);
      if (hits.length) return hits.length === 1 ? hits[0] : 'ambiguous';
    }
    return null;
  };
  const offeredOptions = (el) => [...el.options].filter((o) => !o.disabled).map((o) => norm(o.label));
"""

_RESOLVE_JS = """
  const ACCEPTS = {text: ['text'], check: ['checkbox', 'radio'], select: ['select'],
                   radio: ['radio group'], file: ['file']};
  const SANITIZED = new Set(['date', 'datetime-local', 'month', 'week', 'time', 'number', 'range',
                             'color']);
  const radioOf = (group, wanted) => {
    const radios = [...group.querySelectorAll('input[type=radio]')];
    const keyed = radios.map((r) => ({el: r, names: [names(r)[0], []]}));
    for (const c of keyed) c.keys = c.names.map((tier) => tier.map(key).filter(Boolean));
    const hits = match(keyed, wanted);
    if (hits.length === 1) return {el: hits[0]};
    if (hits.length) return {problem: 'ambiguous choice', detail: hits.length};
    const byValue = keyed.find((c) => c.el.value === wanted);
    if (byValue) return {problem: 'choice by value', detail: byValue.keys[0][0] || ''};
    return {problem: 'no choice', offered: keyed.map((c) => c.keys[0][0] || c.el.value)};
  };
  const refused = (el) => {
    if (el.matches(':disabled') || el.getAttribute('aria-disabled') === 'true') return 'disabled';
    if (el.readOnly || el.getAttribute('aria-readonly') === 'true') return 'read-only';
    return null;
  };
  const valueProblem = (el, value) => {
    if (el.maxLength >= 0 && value.length > el.maxLength) {
      return `is ${value.length} characters long; the field takes at most ${el.maxLength}`;
    }
    if (el.tagName === 'INPUT' && SANITIZED.has(el.type)) {
      const probe = document.createElement('input');
      probe.type = el.type;
      probe.value = value;
      if (probe.value !== value) return `is not a valid ${el.type} for the field`;
    }
    return null;
  };
  const checkField = (f, el) => {
    const kind = kindOf(el);
    if (!ACCEPTS[f.kind].includes(kind) || (kind === 'radio' && f.value !== true)) {
      return {problem: 'kind', detail: kind};
    }
    const target = kind === 'radio group' ? radioOf(el, f.value) : {el};
    if (target.problem) return target;
    const why = refused(el) || (target.el !== el && refused(target.el));
    if (why) return {problem: why};
    if (kind !== 'file' && !visible(target.el)) return {problem: 'hidden'};
    if (f.kind === 'text') {
      const detail = valueProblem(el, f.value);
      if (detail) return {problem: 'value', detail};
    }
    if (f.kind === 'select') {
      const chosen = option(el, f.value);
      if (chosen === 'ambiguous') return {problem: 'ambiguous choice'};
      return {el, option: chosen ? chosen.value : null};
    }
    return target;
  };
  const resolveAll = () => {
    const found = keyed(fieldsOnPage());
    const named = new Map();
    const resolved = fields.map((f) => {
      const hits = match(found, f.label);
      if (!hits.length) return {problem: 'missing'};
      if (hits.length > 1) return {problem: 'ambiguous', detail: hits.length};
      if (named.has(hits[0])) return {problem: 'same field', detail: named.get(hits[0])};
      named.set(hits[0], f.label);
      return checkField(f, hits[0]);
    });
    let pressed = null;
    if (button !== null) {
      const hits = match(keyed(buttonsOnPage()), button);
      pressed = hits.length === 1 ? {el: hits[0]}
        : {problem: hits.length ? 'ambiguous' : 'missing', detail: hits.length};
    }
    return {resolved, pressed, found};
  };
  const WAIT_FOR = new Set(['missing', 'ambiguous', 'disabled', 'read-only', 'hidden']);
  const waitable = (state) => [...state.resolved, state.pressed].some((r) => r && WAIT_FOR.has(r.problem));
  const stuck = (state) => [...state.resolved, state.pressed].some((r) => r && r.problem);
  let state = resolveAll();
  const end = Date.now() + options.graceMs;
  while (waitable(state) && Date.now() < end) {
    await sleep(50);
    state = resolveAll();
  }
  const report = (r, f, isButton) => ({label: isButton ? button : f.label, button: isButton,
    problem: r.problem, detail: r.detail, offered: r.offered,
    value: !isButton && r.problem.includes('choice') ? f.value : undefined});
  if (stuck(state)) {
    const problems = state.resolved.map((r, i) => r.problem ? report(r, fields[i], false) : null)
      .filter(Boolean);
    if (state.pressed && state.pressed.problem) problems.push(report(state.pressed, null, true));
    const missing = problems.filter((p) => p.problem === 'missing');
    const labels = missing.some((p) => !p.button) ? state.found.flatMap((c) => c.names.flat()) : [];
    const buttons = missing.some((p) => p.button) ? buttonsOnPage().flatMap((c) => c.names.flat()) : [];
    return {problems, labels: [...new Set(labels.map(norm).filter(Boolean))],
            buttons: [...new Set(buttons.map(norm).filter(Boolean))]};
  }
  document.querySelectorAll('[data-kansli-field]').forEach((el) => el.removeAttribute('data-kansli-field'));
  const mark = (el, name) => el.setAttribute('data-kansli-field', `${options.nonce}-${name}`);
  state.resolved.forEach((r, i) => {  // fast fill marks only the fields Playwright fills: files
    if (!options.fast || fields[i].kind === 'file') mark(r.el, i);
  });
  if (state.pressed && !options.press) mark(state.pressed.el, 'button');
"""

#: Per-field fill: find and mark every field (and the button) in one round trip; the caller fills.
_MARK_FIELDS_JS = ("async ([fields, button, options]) => {" + _FORM_HELPERS_JS + _RESOLVE_JS + """
  return {problems: [],
          fields: state.resolved.map((r) => ({option: r.option === undefined ? null : r.option})),
          buttonDisabled: state.pressed ? state.pressed.el.disabled === true : false};
}""")

#: Fast fill: find every field as above, then set them all (and press the button) in the same trip.
_FAST_FILL_JS = ("async ([fields, button, options]) => {" + _FORM_HELPERS_JS + _RESOLVE_JS + """
  const setValue = (el, value) => {
    const own = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(el), 'value');
    if (own && own.set) own.set.call(el, value); else el.value = value;
  };
  const fire = (el) => {
    el.dispatchEvent(new Event('input', {bubbles: true}));
    el.dispatchEvent(new Event('change', {bubbles: true}));
  };
  for (const [i, f] of fields.entries()) {
    const el = state.resolved[i].el;
    if (f.kind === 'file') continue;
    el.focus && el.focus();
    if (f.kind === 'check') {
      if (el.checked !== f.value) { el.checked = f.value; fire(el); }
    } else if (f.kind === 'select') {
      const chosen = await until(() => option(el, f.value), options.waitMs);
      if (!chosen || chosen === 'ambiguous') {
        return {problems: [{label: f.label, problem: chosen ? 'ambiguous choice' : 'no choice',
                            value: f.value, offered: offeredOptions(el)}]};
      }
      setValue(el, chosen.value); fire(el);
    } else if (f.kind === 'radio') {
      if (!el.checked) { el.checked = true; fire(el); }
    } else { setValue(el, f.value); fire(el); }
    el.blur && el.blur();
  }
  if (state.pressed && options.press) {
    const target = state.pressed.el;
    if (!await until(() => !target.disabled, options.waitMs)) {
      return {problems: [{label: button, button: true, problem: 'disabled'}]};
    }
    target.click();
  }
  return {problems: []};
}""")

#: Per-field fill of a late choice: wait for the option, then say its value (or why not).
_WAIT_OPTION_JS = ("async (el, [wanted, ms]) => {" + _FORM_HELPERS_JS + """
  const chosen = await until(() => option(el, wanted), ms);
  if (chosen && chosen !== 'ambiguous') return {value: chosen.value};
  return {problem: chosen ? 'ambiguous choice' : 'no choice', offered: offeredOptions(el)};
}""")

_WAIT_ENABLED_JS = ("async (el, ms) => {" + _FORM_HELPERS_JS + """
  return !!(await until(() => !el.disabled, ms));
}""")


_FIELD_ERRORS_JS = """() => {
  const norm = (s) => (s || '').replace(/\\s+/g, ' ').trim();
  const errors = {};
  for (const el of document.querySelectorAll('[aria-invalid="true"]')) {
    const label = norm(el.labels && el.labels[0] ? el.labels[0].textContent
                                                 : el.getAttribute('aria-label') || el.name || el.id);
    const described = (el.getAttribute('aria-describedby') || '').split(/\\s+/)
      .map((id) => id && document.getElementById(id)).filter(Boolean);
    const errorish = described.filter((d) => /error|fel|invalid/i.test(d.id + ' ' + d.className));
    errors[label] = (errorish.length ? errorish : described).map((d) => norm(d.textContent)).join(' ');
  }
  if (!Object.keys(errors).length) {
    const alert = document.querySelector('[role=alert]');
    if (alert) errors[''] = norm(alert.textContent);
  }
  return errors;
}"""
