/*! revstream tracker 1.0.0 | Segment-format events to a revstream collector | Apache-2.0 | no dependencies
 *
 * Load it from the collector; with data-write-key it starts at once:
 *   <script async src="https://collector.example/tracker.js" data-write-key="KEY"></script>
 * or call revstream.init({writeKey: "KEY", host: "https://collector.example"}) yourself.
 * Calls made before it loads are replayed if window.revstream is an array of [method, ...args].
 *
 * API: revstream.page(name?, properties?), track(event, properties?), identify(userId?, traits?),
 * consent({analytics: true, marketing: false}) (emits "Segment Consent Preference Updated"; every later
 * event carries context.consent.categoryPreferences), reset(), flush(), user().
 *
 * Automatic events (init option autocapture: false turns them off), named as the simulator names them:
 *   page                  on load and on history.pushState / popstate
 *   Element Clicked       {selector, text, href} a click on a link, button, input or other control
 *   Scroll Depth Reached  {depth: 25|50|75|100} once per page each
 *   Page Engagement       {engagement_time_ms} visible time, when the page is hidden or left
 *   Rage Click            {selector, clicks} 3+ clicks within 1 s and 30 px (not text selection, not
 *                         number steppers), reported when the burst ends
 *   Dead Click            {selector} a click on a non-interactive element after which neither the DOM nor
 *                         the URL changes within 1 s
 *   JS Error              {message, source, line, column} uncaught errors and rejections, 20 a page at most
 *   Form Abandoned        {form, fields_touched, last_field, time_spent_ms} a form typed in but not
 *                         submitted when the page is left (field names only, never values)
 *
 * Events are batched to POST {host}/v1/batch as {"batch": [...], "sentAt", "writeKey"} with Content-Type
 * text/plain (no CORS preflight): every flushInterval ms or flushAt events, and with navigator.sendBeacon
 * when the page is hidden (fetch with keepalive otherwise). 5xx, 429 and network errors are retried with
 * backoff (Retry-After honoured); events still unsent when the page goes are kept in localStorage and sent by
 * the next page. anonymousId lives in localStorage and a first-party cookie.
 */
(function (window, document) {
  'use strict';

  var VERSION = '1.0.0';
  var previous = window.revstream;
  if (previous && previous.loaded) {
    return;
  }
  var script = document.currentScript;

  var config = {
    host: '',
    writeKey: '',
    flushAt: 20,
    flushInterval: 2000,
    maxBatchBytes: 60000, // sendBeacon and keepalive fetches share a 64 KB budget
    autocapture: true,
    rageClicks: 3,
    rageWindowMs: 1000,
    rageRadiusPx: 30,
    deadClickMs: 1000,
    maxErrorsPerPage: 20,
    maxRetries: 10,
    storagePrefix: 'rs_'
  };
  var INTERACTIVE = 'a[href],button,input,select,textarea,label,summary,option,[role=button],[role=link],' +
    '[role=checkbox],[role=menuitem],[role=tab],[role=switch],[onclick],[contenteditable=""],' +
    '[contenteditable=true]';
  var STEPPERS = 'input[type=number],input[type=range],input[type=date],input[type=time],select';
  var DEPTHS = [25, 50, 75, 100];

  var started = false;
  var queue = [];
  var timer = null;
  var sending = 0;
  var anonymousId = null;
  var userId = null;
  var traits = {};
  var consent = null;
  var leaving = false;
  var lastUrl = location.href;
  var pageState = newPage();

  // ---------------------------------------------------------------- storage and ids

  function key(name) {
    return config.storagePrefix + name;
  }

  function load(name) {
    try {
      var value = window.localStorage.getItem(key(name));
      return value === null ? null : JSON.parse(value);
    } catch (e) {
      return null;
    }
  }

  function save(name, value) {
    try {
      if (value === null || value === undefined) {
        window.localStorage.removeItem(key(name));
      } else {
        window.localStorage.setItem(key(name), JSON.stringify(value));
      }
    } catch (e) { /* storage full or blocked: the cookie still holds the anonymousId */ }
  }

  function readCookie(name) {
    var match = document.cookie.match(new RegExp('(?:^|; )' + key(name) + '=([^;]*)'));
    return match ? decodeURIComponent(match[1]) : null;
  }

  function writeCookie(name, value) {
    var secure = location.protocol === 'https:' ? '; Secure' : '';
    document.cookie = key(name) + '=' + encodeURIComponent(value) + '; path=/; max-age=31536000; SameSite=Lax' +
      secure;
  }

  function uuid() {
    var c = window.crypto;
    if (c && c.randomUUID) {
      try {
        return c.randomUUID();
      } catch (e) { /* not a secure context */ }
    }
    var bytes = new Uint8Array(16);
    if (c && c.getRandomValues) {
      c.getRandomValues(bytes);
    } else {
      for (var i = 0; i < 16; i++) {
        bytes[i] = Math.floor(Math.random() * 256);
      }
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) { return (b + 0x100).toString(16).slice(1); }).join('');
    return hex.slice(0, 8) + '-' + hex.slice(8, 12) + '-' + hex.slice(12, 16) + '-' + hex.slice(16, 20) + '-' +
      hex.slice(20);
  }

  function ensureAnonymousId() {
    anonymousId = anonymousId || load('anonymous_id') || readCookie('anonymous_id') || uuid();
    save('anonymous_id', anonymousId);
    writeCookie('anonymous_id', anonymousId);
  }

  // ---------------------------------------------------------------- event building

  function pageProperties() {
    return {
      path: location.pathname,
      referrer: pageState.referrer,
      search: location.search,
      title: document.title,
      url: location.href
    };
  }

  function campaign() {
    var params = new URLSearchParams(location.search);
    var fields = {source: 'utm_source', medium: 'utm_medium', name: 'utm_campaign', term: 'utm_term',
      content: 'utm_content'};
    var out = null;
    Object.keys(fields).forEach(function (field) {
      var value = params.get(fields[field]);
      if (value) {
        out = out || {};
        out[field] = value;
      }
    });
    return out;
  }

  function context() {
    var ctx = {
      library: {name: 'revstream-tracker', version: VERSION},
      page: pageProperties(),
      userAgent: navigator.userAgent,
      locale: navigator.language,
      screen: {width: window.screen.width, height: window.screen.height}
    };
    try {
      ctx.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (e) { /* no Intl */ }
    var utm = campaign();
    if (utm) {
      ctx.campaign = utm;
    }
    if (consent) {
      ctx.consent = {categoryPreferences: assign({}, consent)};
    }
    if (userId && Object.keys(traits).length) {
      ctx.traits = assign({}, traits);
    }
    return ctx;
  }

  function assign(target, source) {
    Object.keys(source || {}).forEach(function (k) { target[k] = source[k]; });
    return target;
  }

  function enqueue(type, fields) {
    ensureAnonymousId();
    var event = assign({
      type: type,
      messageId: uuid(),
      anonymousId: anonymousId,
      timestamp: new Date().toISOString(),
      context: context()
    }, fields);
    if (userId) {
      event.userId = userId;
    }
    queue.push({event: event, attempts: 0});
    if (queue.length >= config.flushAt) {
      flush();
    } else {
      schedule(config.flushInterval);
    }
    return event.messageId;
  }

  // ---------------------------------------------------------------- transport

  function schedule(delay) {
    if (timer === null && started) {
      timer = setTimeout(function () {
        timer = null;
        flush();
      }, delay);
    }
  }

  function takeBatch() {
    var batch = [];
    var size = 0;
    while (queue.length && batch.length < 500) {
      var length = JSON.stringify(queue[0].event).length;
      if (batch.length && size + length > config.maxBatchBytes) {
        break;
      }
      batch.push(queue.shift());
      size += length;
    }
    return batch;
  }

  function flush(beacon) {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    if (!started) {
      return Promise.resolve(false);
    }
    var sent = [];
    var now = Date.now();
    var ready = queue.filter(function (item) { return !item.notBefore || item.notBefore <= now || beacon; });
    var waiting = queue.filter(function (item) { return ready.indexOf(item) < 0; });
    queue = ready;
    while (queue.length) {
      sent.push(send(takeBatch(), beacon));
    }
    queue = waiting;
    if (waiting.length) {
      schedule(Math.max(0, Math.min.apply(null, waiting.map(function (i) { return i.notBefore; })) - now));
    }
    return Promise.all(sent).then(function (results) { return results.every(Boolean); });
  }

  function send(items, beacon) {
    var body = JSON.stringify({
      batch: items.map(function (item) { return item.event; }),
      sentAt: new Date().toISOString(),
      writeKey: config.writeKey
    });
    var url = config.host + '/v1/batch';
    if (beacon && navigator.sendBeacon) {
      try {
        if (navigator.sendBeacon(url, body)) {
          return Promise.resolve(true);
        }
      } catch (e) { /* fall back to fetch */ }
    }
    sending += 1;
    return fetch(url, {
      method: 'POST',
      body: body,
      headers: {'Content-Type': 'text/plain'},
      keepalive: body.length < 65000,
      credentials: 'omit'
    }).then(function (response) {
      if (response.ok) {
        return true;
      }
      if (response.status >= 500 || response.status === 429 || response.status === 408) {
        retry(items, Number(response.headers.get('Retry-After')));
      } else {
        warn('events refused by the collector (' + response.status + ')');
      }
      return false;
    }, function () {
      retry(items, 0);
      return false;
    }).then(function (ok) {
      sending -= 1;
      return ok;
    });
  }

  function retry(items, retryAfter) {
    var kept = items.filter(function (item) { return ++item.attempts <= config.maxRetries; });
    if (kept.length < items.length) {
      warn((items.length - kept.length) + ' events dropped after ' + config.maxRetries + ' attempts');
    }
    kept.forEach(function (item) {
      var backoff = retryAfter > 0 ? retryAfter * 1000 : Math.min(30000, 500 * Math.pow(2, item.attempts));
      item.notBefore = Date.now() + backoff;
    });
    queue = kept.concat(queue);
    if (leaving) {
      save('queue', queue);
    } else if (kept.length) {
      schedule(kept[0].notBefore - Date.now());
    }
  }

  function warn(message) {
    if (window.console && console.warn) {
      console.warn('revstream: ' + message);
    }
  }

  // ---------------------------------------------------------------- autocapture helpers

  function cssEscape(text) {
    return window.CSS && CSS.escape ? CSS.escape(text) : text.replace(/[^\w-]/g, '\\$&');
  }

  function selectorOf(element) {
    var parts = [];
    for (var node = element; node && node.nodeType === 1 && parts.length < 4; node = node.parentElement) {
      var part = node.tagName.toLowerCase();
      if (node.id) {
        parts.unshift(part + '#' + cssEscape(node.id));
        break;
      }
      var classes = Array.prototype.slice.call(node.classList, 0, 2);
      if (classes.length) {
        parts.unshift(part + '.' + classes.map(cssEscape).join('.'));
        break;
      }
      var name = node.getAttribute('name');
      if (name) {
        parts.unshift(part + '[name="' + name.replace(/["\\]/g, '\\$&') + '"]');
        break;
      }
      parts.unshift(part);
      if (part === 'body') {
        break;
      }
    }
    return parts.join(' > ');
  }

  function elementOf(target) {
    if (target && target.nodeType === 1) {
      return target;
    }
    return target && target.parentElement ? target.parentElement : null;
  }

  function interactiveOf(element) {
    var control = element.closest(INTERACTIVE);
    if (control) {
      return control;
    }
    try {
      return window.getComputedStyle(element).cursor === 'pointer' ? element : null;
    } catch (e) {
      return null;
    }
  }

  function selectedText() {
    var selection = window.getSelection ? window.getSelection() : null;
    return selection && !selection.isCollapsed && String(selection).trim() !== '';
  }

  function newPage() {
    return {
      depths: {},
      engagedMs: 0,
      visibleSince: document.visibilityState === 'visible' ? performance.now() : null,
      errors: {},
      errorCount: 0,
      forms: [],
      referrer: document.referrer,
      burst: null,
      deadWatch: null
    };
  }

  // ---------------------------------------------------------------- autocapture

  function onClick(event) {
    var element = elementOf(event.target);
    if (!element) {
      return;
    }
    var control = interactiveOf(element);
    if (control) {
      var properties = {selector: selectorOf(control)};
      var text = (control.getAttribute('aria-label') || control.innerText || control.title || '').trim();
      if (text && control.tagName !== 'INPUT' && control.tagName !== 'TEXTAREA') {
        properties.text = text.slice(0, 80);
      }
      if (control.href) {
        properties.href = String(control.href);
      }
      enqueue('track', {event: 'Element Clicked', properties: properties});
    }
    if (selectedText()) {
      // the second click of a double or triple click that selects text: the first was reading too
      if (pageState.deadWatch) {
        pageState.deadWatch.cancelled = true;
      }
      return;
    }
    if (element.closest(STEPPERS)) {
      return;
    }
    rage(event, element);
    if (!control) {
      watchDeadClick(element);
    }
  }

  function rage(event, element) {
    var now = event.timeStamp || performance.now();
    var burst = pageState.burst;
    var near = burst && Math.hypot(event.clientX - burst.x, event.clientY - burst.y) <= config.rageRadiusPx;
    if (burst && near && now - burst.times[burst.times.length - 1] <= config.rageWindowMs) {
      burst.times.push(now);
      var n = config.rageClicks;
      if (burst.times.length >= n && now - burst.times[burst.times.length - n] <= config.rageWindowMs) {
        burst.rage = true;
      }
    } else {
      endBurst();
      burst = pageState.burst = {x: event.clientX, y: event.clientY, times: [now], rage: config.rageClicks <= 1,
        selector: selectorOf(element), timer: null};
    }
    clearTimeout(burst.timer);
    burst.timer = setTimeout(endBurst, config.rageWindowMs);
  }

  function endBurst() {
    var burst = pageState.burst;
    pageState.burst = null;
    if (burst) {
      clearTimeout(burst.timer);
      if (burst.rage) {
        enqueue('track', {event: 'Rage Click', properties: {selector: burst.selector, clicks: burst.times.length}});
      }
    }
  }

  function watchDeadClick(element) {
    if (!window.MutationObserver || element.__revstreamWatched) {
      return;
    }
    element.__revstreamWatched = true;
    var url = location.href;
    var changed = false;
    var page = pageState;
    var watch = page.deadWatch = {cancelled: false};
    var observer = new MutationObserver(function () {
      changed = true;
      observer.disconnect();
    });
    observer.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
    setTimeout(function () {
      observer.disconnect();
      element.__revstreamWatched = false;
      // a click that began a text selection is reading, not a dead click
      if (!changed && !watch.cancelled && !leaving && page === pageState && location.href === url &&
          !selectedText()) {
        enqueue('track', {event: 'Dead Click', properties: {selector: selectorOf(element)}});
      }
    }, config.deadClickMs);
  }

  function onScroll() {
    if (pageState.scrollTimer) {
      return;
    }
    pageState.scrollTimer = setTimeout(function () {
      pageState.scrollTimer = null;
      var root = document.documentElement;
      var height = Math.max(root.scrollHeight, document.body ? document.body.scrollHeight : 0);
      if (height <= window.innerHeight) {
        return;
      }
      var reached = ((window.scrollY || root.scrollTop) + window.innerHeight) / height * 100;
      DEPTHS.forEach(function (depth) {
        if (reached >= (depth === 100 ? 99 : depth) && !pageState.depths[depth]) {
          pageState.depths[depth] = true;
          enqueue('track', {event: 'Scroll Depth Reached', properties: {depth: depth}});
        }
      });
    }, 100);
  }

  function pauseEngagement() {
    if (pageState.visibleSince !== null) {
      pageState.engagedMs += performance.now() - pageState.visibleSince;
      pageState.visibleSince = null;
    }
  }

  function sendEngagement() {
    pauseEngagement();
    var ms = Math.round(pageState.engagedMs);
    if (ms > 0) {
      pageState.engagedMs = 0;
      enqueue('track', {event: 'Page Engagement', properties: {engagement_time_ms: ms}});
    }
  }

  function onError(event) {
    if (!event || !event.message) {
      return; // resource load errors carry no message
    }
    var source = String(event.filename || '').replace(location.origin, '');
    reportError(String(event.message).replace(/^Uncaught /, ''), source, event.lineno, event.colno);
  }

  function onRejection(event) {
    var reason = event && event.reason;
    var message = reason && reason.message ? (reason.name || 'Error') + ': ' + reason.message : String(reason);
    reportError('Unhandled rejection: ' + message, '', 0, 0);
  }

  function reportError(message, source, line, column) {
    var id = message + '@' + source + ':' + line;
    if (pageState.errors[id] || pageState.errorCount >= config.maxErrorsPerPage) {
      return;
    }
    pageState.errors[id] = true;
    pageState.errorCount += 1;
    enqueue('track', {event: 'JS Error', properties: {message: message.slice(0, 500), source: source,
      line: line || 0, column: column || 0}});
  }

  function formState(form) {
    for (var i = 0; i < pageState.forms.length; i++) {
      if (pageState.forms[i].form === form) {
        return pageState.forms[i];
      }
    }
    var state = {form: form, fields: {}, last: '', started: performance.now(), submitted: false, reported: false};
    pageState.forms.push(state);
    return state;
  }

  function fieldName(field) {
    return field.name || field.id || field.type || field.tagName.toLowerCase();
  }

  function onInput(event) {
    var field = elementOf(event.target);
    var form = field && (field.form || field.closest('form'));
    if (form) {
      var state = formState(form);
      state.fields[fieldName(field)] = true;
      state.last = fieldName(field);
    }
  }

  function onSubmit(event) {
    if (event.target && event.target.tagName === 'FORM') {
      formState(event.target).submitted = true;
    }
  }

  function reportAbandonedForms() {
    pageState.forms.forEach(function (state) {
      var touched = Object.keys(state.fields).length;
      if (!state.submitted && !state.reported && touched) {
        state.reported = true;
        enqueue('track', {event: 'Form Abandoned', properties: {
          form: state.form.getAttribute('name') || state.form.id || selectorOf(state.form),
          fields_touched: touched,
          last_field: state.last,
          time_spent_ms: Math.round(performance.now() - state.started)
        }});
      }
    });
  }

  function leavePage() {
    endBurst();
    sendEngagement();
    reportAbandonedForms();
  }

  function onNavigate() {
    if (location.href === lastUrl) {
      return;
    }
    leavePage();
    var referrer = lastUrl;
    lastUrl = location.href;
    pageState = newPage();
    pageState.referrer = referrer;
    api.page();
  }

  function onVisibility() {
    if (document.visibilityState === 'hidden') {
      endBurst();
      sendEngagement();
      flush(true);
    } else if (pageState.visibleSince === null) {
      pageState.visibleSince = performance.now();
    }
  }

  function onPageHide() {
    leaving = true;
    leavePage();
    flush(true);
    save('queue', queue.length ? queue : null);
  }

  function onPageShow(event) {
    if (event.persisted) { // back from the bfcache: a new page view
      leaving = false;
      pageState = newPage();
      api.page();
    }
  }

  function guard(handler) {
    return function (event) {
      try {
        handler(event);
      } catch (e) { /* never break the host page */ }
    };
  }

  function autocapture() {
    document.addEventListener('click', guard(onClick), true);
    document.addEventListener('input', guard(onInput), true);
    document.addEventListener('change', guard(onInput), true);
    document.addEventListener('submit', guard(onSubmit), true);
    document.addEventListener('visibilitychange', guard(onVisibility));
    window.addEventListener('scroll', guard(onScroll), {passive: true});
    window.addEventListener('error', guard(onError));
    window.addEventListener('unhandledrejection', guard(onRejection));
    window.addEventListener('popstate', guard(onNavigate));
    ['pushState', 'replaceState'].forEach(function (name) {
      var original = history[name];
      history[name] = function () {
        var result = original.apply(this, arguments);
        guard(onNavigate)();
        return result;
      };
    });
  }

  // ---------------------------------------------------------------- public API

  var api = {
    loaded: true,
    VERSION: VERSION,

    init: function (options) {
      if (started) {
        return api;
      }
      assign(config, options);
      var origin = script && script.src ? new URL(script.src, location.href).origin : location.origin;
      config.host = String(config.host || origin).replace(/\/+$/, '');
      ensureAnonymousId();
      userId = load('user_id');
      traits = load('traits') || {};
      consent = load('consent');
      var saved = load('queue');
      if (saved && saved.length) {
        queue = saved.concat(queue);
        save('queue', null);
      }
      started = true;
      window.addEventListener('pagehide', guard(onPageHide));
      window.addEventListener('pageshow', guard(onPageShow));
      if (config.autocapture) {
        autocapture();
        api.page();
      }
      if (queue.length) {
        schedule(0);
      }
      return api;
    },

    page: function (name, properties) {
      if (name && typeof name === 'object') {
        properties = name;
        name = undefined;
      }
      var fields = {properties: assign(pageProperties(), properties)};
      if (name) {
        fields.name = String(name);
      }
      return enqueue('page', fields);
    },

    track: function (event, properties) {
      return enqueue('track', {event: String(event), properties: assign({}, properties)});
    },

    identify: function (id, newTraits) {
      if (id && typeof id === 'object') {
        newTraits = id;
        id = null;
      }
      if (id !== null && id !== undefined && id !== '') {
        if (userId && String(id) !== userId) {
          traits = {};
        }
        userId = String(id);
        save('user_id', userId);
      }
      traits = assign(traits, newTraits);
      save('traits', traits);
      return enqueue('identify', {traits: assign({}, traits)});
    },

    consent: function (preferences) {
      if (preferences === undefined) {
        return consent ? assign({}, consent) : null;
      }
      var next = assign({}, consent);
      Object.keys(preferences || {}).forEach(function (category) {
        next[category] = Boolean(preferences[category]);
      });
      consent = next;
      save('consent', consent);
      return enqueue('track', {event: 'Segment Consent Preference Updated', properties: {}});
    },

    reset: function () {
      userId = null;
      traits = {};
      anonymousId = uuid();
      save('user_id', null);
      save('traits', null);
      save('anonymous_id', anonymousId);
      writeCookie('anonymous_id', anonymousId);
    },

    flush: function () {
      return flush(false);
    },

    user: function () {
      ensureAnonymousId();
      return {anonymousId: anonymousId, userId: userId, traits: assign({}, traits)};
    },

    pending: function () {
      return queue.length + sending;
    }
  };

  window.revstream = api;
  if (Array.isArray(previous)) {
    previous.forEach(function (call) {
      if (call && typeof api[call[0]] === 'function') {
        api[call[0]].apply(api, call.slice(1));
      }
    });
  }
  if (script && script.dataset && script.dataset.writeKey !== undefined && !started) {
    api.init({
      writeKey: script.dataset.writeKey,
      host: script.dataset.host || '',
      autocapture: script.dataset.autocapture !== 'false'
    });
  }
})(window, document);
