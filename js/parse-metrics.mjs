#!/usr/bin/env node
// Validate a Prometheus text exposition (format 0.0.4) read from stdin and
// print it as JSON: {"families": <parse-prometheus-text-format's output>,
// "samples": [{name, labels, value}]}. Exit 1, with the reasons on stderr,
// when the exposition breaks the format.
//
// parse-prometheus-text-format is the parser under test, but it is lenient
// (it accepts garbage lines as untyped samples), so every line is also
// checked against the format's grammar here: metric and label names,
// label value escapes, values, HELP/TYPE placement, duplicate series,
// histogram bucket order and _count == +Inf bucket.
//
// --serve: read one JSON string (an exposition) a line from stdin, answer
// each with a line {"rc": exit status, "out": what would be printed}.

import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { createInterface } from 'node:readline';

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const VALUE = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on('data', (c) => chunks.push(c));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

// name{a="x",b="y\"z"} value [timestamp]
function parseSample(line, errors, n) {
  let i = 0;
  while (i < line.length && line[i] !== '{' && line[i] !== ' ') i++;
  const name = line.slice(0, i);
  if (!NAME.test(name)) {
    errors.push(`line ${n}: bad metric name '${name}'`);
    return null;
  }
  const labels = {};
  if (line[i] === '{') {
    i++;
    for (;;) {
      if (line[i] === '}') { i++; break; }
      let j = i;
      while (j < line.length && line[j] !== '=') j++;
      const lname = line.slice(i, j);
      if (!LABEL.test(lname)) {
        errors.push(`line ${n}: bad label name '${lname}'`);
        return null;
      }
      if (line[j + 1] !== '"') {
        errors.push(`line ${n}: label ${lname} value not quoted`);
        return null;
      }
      let v = '';
      j += 2;
      for (;;) {
        if (j >= line.length) {
          errors.push(`line ${n}: unterminated label value`);
          return null;
        }
        const c = line[j];
        if (c === '"') break;
        if (c === '\\') {
          const e = line[j + 1];
          if (e === '\\') v += '\\';
          else if (e === '"') v += '"';
          else if (e === 'n') v += '\n';
          else {
            errors.push(`line ${n}: bad escape '\\${e}' in label ${lname}`);
            return null;
          }
          j += 2;
          continue;
        }
        v += c;
        j++;
      }
      if (Object.hasOwn(labels, lname)) {
        errors.push(`line ${n}: label ${lname} repeated`);
        return null;
      }
      labels[lname] = v;
      i = j + 1;
      if (line[i] === ',') i++;
      else if (line[i] !== '}') {
        errors.push(`line ${n}: expected , or } after label ${lname}`);
        return null;
      }
    }
  }
  if (line[i] !== ' ') {
    errors.push(`line ${n}: no space before the value`);
    return null;
  }
  const rest = line.slice(i + 1).split(' ');
  if (rest.length > 2 || !VALUE.test(rest[0])
      || (rest.length === 2 && !/^-?\d+$/.test(rest[1]))) {
    errors.push(`line ${n}: bad value/timestamp '${line.slice(i + 1)}'`);
    return null;
  }
  return { name, labels, value: rest[0] };
}

function check(text) {
  const errors = [];
  const samples = [];
  const types = new Map();     // family -> type
  const helps = new Set();
  const seen = new Set();
  const closed = new Set();    // families whose samples have ended
  const sampled = new Set();   // families with samples seen
  let current = null;

  if (text.length && !text.endsWith('\n')) errors.push('no final newline');

  const familyOf = (name) => {
    if (types.has(name)) return name;
    for (const suf of ['_bucket', '_sum', '_count']) {
      if (name.endsWith(suf)) {
        const base = name.slice(0, -suf.length);
        const t = types.get(base);
        if (t === 'histogram' || (t === 'summary' && suf !== '_bucket')) return base;
      }
    }
    return null;
  };

  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();

  lines.forEach((line, k) => {
    const n = k + 1;
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) return;                              // a plain comment
      const [, kind, name, arg] = m;
      if (!NAME.test(name)) errors.push(`line ${n}: bad name in ${kind}`);
      if (closed.has(name) || sampled.has(name)) {
        errors.push(`line ${n}: ${kind} for ${name} after its samples`);
      }
      if (kind === 'TYPE') {
        if (types.has(name)) errors.push(`line ${n}: second TYPE for ${name}`);
        if (!TYPES.has(arg)) errors.push(`line ${n}: unknown type '${arg}'`);
        types.set(name, arg);
      } else {
        if (helps.has(name)) errors.push(`line ${n}: second HELP for ${name}`);
        if (/\\(?![\\n])/.test(arg ?? '')) errors.push(`line ${n}: bad escape in HELP`);
        helps.add(name);
      }
      if (current !== null && current !== name) closed.add(current);
      current = name;
      return;
    }
    const s = parseSample(line, errors, n);
    if (!s) return;
    const fam = familyOf(s.name);
    if (fam === null) {
      errors.push(`line ${n}: sample ${s.name} without a TYPE`);
      return;
    }
    if (closed.has(fam)) errors.push(`line ${n}: ${fam} samples not contiguous`);
    if (current !== fam) {
      if (current !== null) closed.add(current);
      current = fam;
    }
    const key = s.name + JSON.stringify(Object.entries(s.labels).sort());
    if (seen.has(key)) errors.push(`line ${n}: duplicate series ${key}`);
    seen.add(key);
    if (types.get(fam) === 'counter' && (s.value.startsWith('-') || s.value === 'NaN')) {
      errors.push(`line ${n}: negative counter ${s.name}`);
    }
    sampled.add(fam);
    samples.push(s);
  });

  // histograms: buckets cumulative, +Inf present and equal to _count
  for (const [fam, t] of types) {
    if (t !== 'histogram') continue;
    const groups = new Map();
    for (const s of samples) {
      if (familyOf(s.name) !== fam) continue;
      const { le, ...rest } = s.labels;
      const g = JSON.stringify(Object.entries(rest).sort());
      if (!groups.has(g)) groups.set(g, { buckets: [], count: null, sum: null });
      const e = groups.get(g);
      if (s.name === `${fam}_bucket`) {
        if (le === undefined) errors.push(`${fam}: bucket without le`);
        else e.buckets.push([le === '+Inf' ? Infinity : Number(le), Number(s.value)]);
      } else if (s.name === `${fam}_count`) e.count = Number(s.value);
      else if (s.name === `${fam}_sum`) e.sum = Number(s.value);
    }
    for (const [g, e] of groups) {
      const last = e.buckets[e.buckets.length - 1];
      if (!last || last[0] !== Infinity) errors.push(`${fam}${g}: no +Inf bucket last`);
      for (let i = 1; i < e.buckets.length; i++) {
        if (!(e.buckets[i][0] > e.buckets[i - 1][0])) errors.push(`${fam}${g}: le not increasing`);
        if (e.buckets[i][1] < e.buckets[i - 1][1]) errors.push(`${fam}${g}: buckets not cumulative`);
      }
      if (e.count === null || e.sum === null) errors.push(`${fam}${g}: _count or _sum missing`);
      else if (last && last[1] !== e.count) errors.push(`${fam}${g}: _count != +Inf bucket`);
    }
  }

  return { errors, samples };
}

// { rc, out }: what the command exits with and prints for an exposition
function analyze(text) {
  const { errors, samples } = check(text);

  let families;
  try {
    families = parsePrometheusTextFormat(text);
  } catch (e) {
    errors.push(`parse-prometheus-text-format: ${e.message}`);
  }

  if (families) {
    // the library and the grammar check must agree on what is there
    const names = new Set(families.map((f) => f.name));
    for (const f of new Set(samples.map((s) => s.name))) {
      const base = f.replace(/_(bucket|sum|count)$/, '');
      if (!names.has(f) && !names.has(base)) errors.push(`parser lost family of ${f}`);
    }
    for (const f of families) {
      if (f.type === 'UNTYPED') errors.push(`parser saw untyped family ${f.name}`);
    }
  }

  if (errors.length) {
    return { rc: 1, out: errors.map((e) => `parse-metrics: ${e}\n`).join('') };
  }
  return { rc: 0, out: JSON.stringify({ families, samples }) + '\n' };
}

if (process.argv[2] === '--serve') {
  // one node start for a test's many scrapes: each stdin line is a JSON
  // string (an exposition), answered by one line {rc, out}
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let r;
    try {
      r = analyze(JSON.parse(line));
    } catch (e) {
      r = { rc: 1, out: `parse-metrics: ${e.stack || e}\n` };
    }
    process.stdout.write(JSON.stringify(r) + '\n');
  }
} else {
  const { rc, out } = analyze(await readStdin());
  (rc ? process.stderr : process.stdout).write(out);
  if (rc) process.exit(rc);
}
