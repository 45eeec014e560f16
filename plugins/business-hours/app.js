// `business-hours`: a `policy-filter` plugin in JavaScript (componentize-js). It decides whether a
// failing Pod is investigated now from its namespace's tier and that tier's time window, so that,
// say, development namespaces are looked at during office hours only while production always is.
//
// Settings:
//
//   {
//     "timezoneOffsetMinutes": 60,                 // local time = UTC + this (default 0)
//     "tiers": {
//       "production": {"namespaces": ["production", "billing"],
//                      "window": {"days": ["Mon","Tue","Wed","Thu","Fri"], "from": "08:00", "to": "18:00"},
//                      "outside": "investigate"},
//       "dev":        {"label": "tier=dev",
//                      "window": {"days": ["Mon","Tue","Wed","Thu","Fri"], "from": "08:00", "to": "18:00"},
//                      "outside": "skip"}
//     },
//     "defaultTier": "dev"                         // tier of namespaces no tier names (optional)
//   }
//
// A namespace belongs to the tier that lists it in `namespaces` (a namespace may be listed by one
// tier only), else to the first tier, in name order, whose `label` (`key=value`, or `key` for any
// value) its Namespace object carries, else to `defaultTier`; with none of these it is
// investigated. (Name order, not the order written: the host hands settings over as JSON with
// sorted keys.) Inside its tier's window a Pod is
// investigated; outside, `outside` decides ("skip" by default). `to` is exclusive and may be
// "24:00"; a window whose `to` is before its `from` runs overnight into the next day.
//
// The time is the host's `context.now` (fixed for the call), never the plugin's own clock, so a
// decision can be replayed. Built with plugins/build-polyglot.sh; see docs/plugins.md.

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const WEEK_ORDER = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
const TIER_FIELDS = ['namespaces', 'label', 'window', 'outside'];
const WINDOW_FIELDS = ['days', 'from', 'to'];
const SETTINGS_FIELDS = ['timezoneOffsetMinutes', 'tiers', 'defaultTier'];

// Set by `configure`, which the host calls on every fresh instance before `decide`.
let settings = null;

class SettingsError extends Error {}

function fail(message) {
  throw new SettingsError(message);
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function checkFields(object, allowed, where) {
  const unknown = Object.keys(object).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    fail(`${where}: unknown field(s) ${unknown.join(', ')}; expected ${allowed.join(', ')}`);
  }
}

// "08:00" -> 480; "24:00" only where `allowEnd`.
function parseClock(value, where, allowEnd) {
  const m = typeof value === 'string' ? /^([01]\d|2[0-4]):([0-5]\d)$/.exec(value) : null;
  const minutes = m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
  if (!m || minutes > 24 * 60 || (minutes === 24 * 60 && !allowEnd)) {
    fail(`${where}: ${JSON.stringify(value)} is not a time like 08:00${allowEnd ? ' (24:00 allowed)' : ''}`);
  }
  return minutes;
}

function parseWindow(value, where) {
  if (!isObject(value)) fail(`${where} must be an object {days, from, to}`);
  checkFields(value, WINDOW_FIELDS, where);
  if (!Array.isArray(value.days) || value.days.length === 0) {
    fail(`${where}.days must be a non-empty list of Mon, Tue, Wed, Thu, Fri, Sat, Sun`);
  }
  const days = new Set();
  for (const day of value.days) {
    const name = typeof day === 'string' ? DAYS.find((d) => d.toLowerCase() === day.toLowerCase()) : undefined;
    if (!name) fail(`${where}.days: ${JSON.stringify(day)} is not one of Mon, Tue, Wed, Thu, Fri, Sat, Sun`);
    days.add(name);
  }
  const from = parseClock(value.from, `${where}.from`, false);
  const to = parseClock(value.to, `${where}.to`, true);
  if (from === to) fail(`${where}: from and to are both ${value.from}; the window would be empty`);
  return { days, from, to, text: `${formatDays(days)} ${value.from}-${value.to}` };
}

function parseLabel(value, where) {
  const m = typeof value === 'string' ? /^([A-Za-z0-9][-A-Za-z0-9_./]{0,252})(?:=([-A-Za-z0-9_.]{0,63}))?$/.exec(value) : null;
  if (!m) fail(`${where}: ${JSON.stringify(value)} is not a label like tier=dev (or a label key alone)`);
  return { key: m[1], value: m[2], text: value };
}

function parseSettings(text) {
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    fail(`settings are not JSON: ${e.message}`);
  }
  if (!isObject(raw)) fail('settings must be a JSON object');
  checkFields(raw, SETTINGS_FIELDS, 'settings');
  const offset = raw.timezoneOffsetMinutes ?? 0;
  if (!Number.isInteger(offset) || offset < -840 || offset > 840) {
    fail(`timezoneOffsetMinutes: ${JSON.stringify(raw.timezoneOffsetMinutes)} must be a whole number of minutes from -840 to 840`);
  }
  if (!isObject(raw.tiers) || Object.keys(raw.tiers).length === 0) {
    fail('tiers must be an object with at least one tier, like {"dev": {"namespaces": [...], "window": {...}}}');
  }
  const tiers = [];
  const owner = new Map();
  for (const name of Object.keys(raw.tiers).sort()) {
    const spec = raw.tiers[name];
    const where = `tiers.${name}`;
    if (!isObject(spec)) fail(`${where} must be an object {namespaces or label, window, outside}`);
    checkFields(spec, TIER_FIELDS, where);
    const namespaces = spec.namespaces ?? [];
    if (!Array.isArray(namespaces) || namespaces.some((n) => typeof n !== 'string' || n === '')) {
      fail(`${where}.namespaces must be a list of namespace names`);
    }
    for (const ns of namespaces) {
      if (owner.has(ns)) fail(`${where}.namespaces: ${ns} is already in tier ${owner.get(ns)}`);
      owner.set(ns, name);
    }
    const label = spec.label === undefined ? null : parseLabel(spec.label, `${where}.label`);
    if (namespaces.length === 0 && !label && raw.defaultTier !== name) {
      fail(`${where} selects no namespace: give namespaces or label (or make it the defaultTier)`);
    }
    if (spec.window === undefined) fail(`${where}.window is required, like {"days": ["Mon", "Fri"], "from": "08:00", "to": "18:00"}`);
    const window = parseWindow(spec.window, `${where}.window`);
    const outside = spec.outside ?? 'skip';
    if (outside !== 'skip' && outside !== 'investigate') {
      fail(`${where}.outside: ${JSON.stringify(spec.outside)} must be "skip" or "investigate"`);
    }
    tiers.push({ name, namespaces: new Set(namespaces), label, window, outside });
  }
  let defaultTier = null;
  if (raw.defaultTier !== undefined) {
    defaultTier = tiers.find((t) => t.name === raw.defaultTier);
    if (!defaultTier) {
      fail(`defaultTier: ${JSON.stringify(raw.defaultTier)} is not one of the tiers (${tiers.map((t) => t.name).join(', ')})`);
    }
  }
  return { offset, tiers, defaultTier };
}

// "Mon-Fri", "Sat,Sun", "Mon,Wed-Fri".
function formatDays(days) {
  const flags = WEEK_ORDER.map((d) => days.has(d));
  const parts = [];
  for (let i = 0; i < 7; i++) {
    if (!flags[i]) continue;
    let j = i;
    while (j + 1 < 7 && flags[j + 1]) j++;
    parts.push(j - i >= 2 ? `${WEEK_ORDER[i]}-${WEEK_ORDER[j]}` : WEEK_ORDER.slice(i, j + 1).join(','));
    i = j;
  }
  return parts.join(',');
}

function formatOffset(offset) {
  if (offset === 0) return 'UTC';
  const sign = offset < 0 ? '-' : '+';
  const abs = Math.abs(offset);
  return `UTC${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

function pad(n) {
  return String(n).padStart(2, '0');
}

// RFC 3339 -> milliseconds since the epoch, or NaN.
function parseInstant(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/.exec(text ?? '');
  if (!m) return NaN;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return NaN;
  const zone = m[7] ? 0 : (m[8] === '-' ? -1 : 1) * (Number(m[9]) * 60 + Number(m[10]));
  return Date.UTC(y, mo - 1, d, h, mi, Math.min(s, 59)) - zone * 60000;
}

function labelsOf(object) {
  const labels = object && object.metadata && object.metadata.labels;
  return isObject(labels) ? labels : {};
}

function tierOf(namespace, namespaceObject) {
  for (const tier of settings.tiers) {
    if (tier.namespaces.has(namespace)) return { tier, why: `namespace ${namespace} is listed in tier ${tier.name}` };
  }
  if (namespaceObject) {
    const labels = labelsOf(namespaceObject);
    for (const tier of settings.tiers) {
      const l = tier.label;
      if (l && Object.prototype.hasOwnProperty.call(labels, l.key) && (l.value === undefined || labels[l.key] === l.value)) {
        return { tier, why: `namespace ${namespace} has the label ${l.text} of tier ${tier.name}` };
      }
    }
  }
  if (settings.defaultTier) {
    return { tier: settings.defaultTier, why: `namespace ${namespace} is in no tier, so in the default tier ${settings.defaultTier.name}` };
  }
  return null;
}

function inside(window, day, minutes) {
  if (window.from < window.to) return window.days.has(DAYS[day]) && minutes >= window.from && minutes < window.to;
  // Overnight: from `from` on a listed day until `to` the next morning.
  return (window.days.has(DAYS[day]) && minutes >= window.from) || (window.days.has(DAYS[(day + 6) % 7]) && minutes < window.to);
}

export function configure(text) {
  try {
    settings = parseSettings(text);
  } catch (e) {
    // A thrown string becomes the `err` of configure's result; the host refuses the plugin with it.
    throw e instanceof SettingsError ? e.message : `invalid settings: ${e}`;
  }
}

export function decide(podJson, failureJson, context) {
  let pod;
  try {
    pod = JSON.parse(podJson);
  } catch (e) {
    console.error(`business-hours: the Pod is not JSON (${e.message}); investigating`);
    return { tag: 'investigate' };
  }
  let namespaceObject = null;
  if (context.namespace) {
    try {
      namespaceObject = JSON.parse(context.namespace);
    } catch (e) {
      console.error(`business-hours: the Namespace is not JSON (${e.message}); ignoring its labels`);
    }
  }
  const namespace = (pod.metadata && pod.metadata.namespace) || (namespaceObject && namespaceObject.metadata && namespaceObject.metadata.name) || '';
  const found = tierOf(namespace, namespaceObject);
  if (!found) return { tag: 'investigate' };
  const { tier, why } = found;
  const now = parseInstant(context.now);
  if (Number.isNaN(now)) {
    console.error(`business-hours: context.now ${JSON.stringify(context.now)} is not an RFC 3339 time; investigating`);
    return { tag: 'investigate' };
  }
  const local = new Date(now + settings.offset * 60000);
  const day = local.getUTCDay();
  const minutes = local.getUTCHours() * 60 + local.getUTCMinutes();
  if (inside(tier.window, day, minutes) || tier.outside === 'investigate') return { tag: 'investigate' };
  const zone = formatOffset(settings.offset);
  const at = `${DAYS[day]} ${pad(local.getUTCHours())}:${pad(local.getUTCMinutes())} ${zone}`;
  return {
    tag: 'skip',
    val: `business-hours: ${why}; tier ${tier.name} is investigated ${tier.window.text} ${zone} and it is ${at}`,
  };
}
