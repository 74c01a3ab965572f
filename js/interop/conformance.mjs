#!/usr/bin/env node
/*
 * Conformance run (issue 5 item 5): every vector of vectors.mjs goes first
 * to the official facilitator's /verify (with the requirement the target
 * itself advertised), then to the target URL. The target is nginx with
 * `x402_verify local`, or the reference server for a self-check.
 *
 *   node js/interop/conformance.mjs --run-dir DIR --url URL [--only id,id]
 *        [--no-local-check] [--out FILE] [--pretty]
 *
 * Checks, per vector:
 *   - the facilitator says invalid for a locally visible reason, or the
 *     vector is invalid by construction (kind "refuse"): the target refuses
 *     (no 2xx), no tokens move, and (unless --no-local-check) the target
 *     never asked the facilitator to settle it: the refusal was local;
 *   - kind "accept": the facilitator says valid and the target serves it,
 *     the payer pays exactly the price, the settlement tx exists;
 *   - kind "remote" or "defer": the target refuses, no tokens move (it may
 *     ask the facilitator);
 *   - kind "strict": reported only;
 *   - finally the first valid v2 and v1 payments are replayed: refused, no
 *     tokens move.
 * Prints a table (--pretty) or JSON; exit 1 if any check failed.
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { readFileSync, existsSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { readBalances } from "./balances.mjs";
import { checkTx } from "./tx.mjs";
import { fetchRequirements, unb64json } from "./payments.mjs";
import { LOCALLY_VISIBLE_REASONS, makeOfficialVectors, makeVectors } from "./vectors.mjs";
import { parseArgs, readChainState, readJson } from "./lib.mjs";

function facLogLines(path) {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8").split("\n").filter(Boolean);
}

function mentions(lines, nonce) {
  const n = nonce.toLowerCase();
  return lines.filter((l) => l.toLowerCase().includes(n)).map((l) => {
    const j = JSON.parse(l);
    return j.path.replace(/^.*\//, "");
  });
}

async function facilitatorVerify(facUrl, v) {
  const body = { x402Version: v.payload.x402Version ?? v.version,
    paymentPayload: v.payload, paymentRequirements: v.requirement };
  const res = await fetch(`${facUrl}/verify`, { method: "POST",
    headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await res.text();
  let j;
  try {
    j = JSON.parse(text);
  } catch {
    j = { error: text };
  }
  if (res.status === 200 && typeof j.isValid === "boolean") {
    return { http: 200, isValid: j.isValid, reason: j.invalidReason ?? null };
  }
  return { http: res.status, isValid: false, reason: `http_${res.status}`,
    error: j.error ?? text.slice(0, 200) };
}

async function sendToTarget(url, v) {
  const t0 = Date.now();
  const res = await fetch(url, { headers: { [v.headerName]: v.header } });
  const text = await res.text();
  let error = null;
  const pr = res.headers.get("payment-required");
  if (pr) {
    try {
      error = unb64json(pr).error ?? null;
    } catch {
      /* leave null */
    }
  }
  if (!error) {
    try {
      error = JSON.parse(text).error ?? null;
    } catch {
      /* not JSON */
    }
  }
  const sh = res.headers.get("payment-response") || res.headers.get("x-payment-response");
  let settlement = null;
  if (sh) {
    try {
      settlement = unb64json(sh);
    } catch {
      settlement = { undecodable: true };
    }
  }
  return { status: res.status, error, settlement, ms: Date.now() - t0,
    body: text.slice(0, 300) };
}

export { sendToTarget, facilitatorVerify };

export async function runConformance({ runDir, url, only, localCheck = true }) {
  const chain = readChainState(runDir);
  const fac = readJson(join(runDir, "facilitator.json"));
  const required = await fetchRequirements(url);
  if (required.status !== 402 || (!required.v2 && !required.v1)) {
    throw new Error(`${url}: expected a 402 with requirements, got ${required.status}`);
  }
  const keys = { payer: chain.accounts.payer.key, payer2: chain.accounts.payer2.key,
    poor: chain.accounts.poor.key };
  const vectors = [...await makeVectors(required, keys, { only }),
    ...(only ? [] : await makeOfficialVectors(required, keys))];
  const price = {
    2: required.v2 ? BigInt(required.v2.accepts[0].amount) : null,
    1: required.v1 ? BigInt(required.v1.accepts[0].maxAmountRequired) : null,
  };
  const results = [];
  const replays = [];
  for (const v of vectors) {
    const nonce = v.payload.payload.authorization.nonce;
    const f = await facilitatorVerify(fac.url, v);
    const before = await readBalances(chain, ["payer", "poor", "payTo"]);
    const linesBefore = facLogLines(fac.requestLog).length;
    const t = await sendToTarget(url, v);
    const after = await readBalances(chain, ["payer", "poor", "payTo"]);
    const newLines = facLogLines(fac.requestLog).slice(linesBefore);
    const calls = typeof nonce === "string" ? mentions(newLines, nonce) : [];
    const moved = BigInt(after.balances.payTo) - BigInt(before.balances.payTo);
    const paid = BigInt(before.balances.payer) - BigInt(after.balances.payer);
    const served = t.status >= 200 && t.status < 300;
    const failures = [];
    const visible = v.kind === "refuse"
      || (!f.isValid && LOCALLY_VISIBLE_REASONS.has(f.reason));
    if (v.kind === "accept") {
      if (!f.isValid) failures.push(`facilitator refused a valid payment: ${f.reason}`);
      if (!served) failures.push(`target refused a valid payment: ${t.status} ${t.error}`);
      if (moved !== price[v.version]) failures.push(`payTo moved ${moved}, price ${price[v.version]}`);
      if (paid !== price[v.version]) failures.push(`payer paid ${paid}, price ${price[v.version]}`);
      if (!t.settlement?.success || !t.settlement?.transaction) {
        failures.push("no successful settlement header");
      } else {
        const tx = await checkTx(chain, t.settlement.transaction);
        if (!tx.found || tx.status !== "success") failures.push(`tx ${t.settlement.transaction} not on chain`);
      }
      if (served) replays.push(v);
    } else if (v.kind === "strict") {
      if (served) replays.push(v);
    } else if (v.kind === "defer") {
      if (f.isValid) failures.push("facilitator accepted it");
      if (served) failures.push(`target served it (${t.status})`);
      if (moved !== 0n) failures.push(`tokens moved: ${moved}`);
    } else if (visible) {
      if (f.isValid && v.kind === "refuse") {
        failures.push("facilitator accepted a payment invalid by construction");
      }
      if (served) failures.push(`target served it (${t.status})`);
      if (moved !== 0n) failures.push(`tokens moved: ${moved}`);
      if (localCheck && calls.length) {
        failures.push(`refusal was not local: target called facilitator ${calls.join(",")}`);
      }
    } else if (v.kind === "remote") {
      if (f.isValid) failures.push("facilitator accepted a payment it should refuse");
      if (served) failures.push(`target served it (${t.status})`);
      if (moved !== 0n) failures.push(`tokens moved: ${moved}`);
    }
    results.push({ id: v.id, kind: v.kind, note: v.note,
      facilitator: f.isValid ? "valid" : f.reason, facilitatorHttp: f.http,
      target: t.status, targetError: t.error, facilitatorCalls: calls,
      moved: moved.toString(), ok: failures.length === 0, failures });
  }
  /* Replay every payment that was served: refused, nothing moves. */
  for (const v of replays) {
    const before = await readBalances(chain, ["payTo"]);
    const t = await sendToTarget(url, v);
    const f = await facilitatorVerify(fac.url, v);
    const after = await readBalances(chain, ["payTo"]);
    const moved = BigInt(after.balances.payTo) - BigInt(before.balances.payTo);
    const failures = [];
    if (t.status >= 200 && t.status < 300) failures.push(`replay served (${t.status})`);
    if (moved !== 0n) failures.push(`tokens moved: ${moved}`);
    if (f.isValid) failures.push("facilitator accepted a replay");
    results.push({ id: `${v.id}#replay`, kind: "replay", note: "the same payment again after settlement",
      facilitator: f.isValid ? "valid" : f.reason, facilitatorHttp: f.http,
      target: t.status, targetError: t.error, facilitatorCalls: [],
      moved: moved.toString(), ok: failures.length === 0, failures });
  }
  return results;
}

async function main() {
  const args = parseArgs(process.argv.slice(2), ["pretty", "no-local-check"]);
  const runDir = resolve(args["run-dir"] || "run");
  const t0 = Date.now();
  const results = await runConformance({ runDir, url: args.url,
    only: args.only ? args.only.split(",") : undefined,
    localCheck: !args["no-local-check"] });
  const bad = results.filter((r) => !r.ok);
  const summary = { url: args.url, vectors: results.length, failed: bad.length,
    ms: Date.now() - t0, results };
  if (args.out) writeFileSync(args.out, JSON.stringify(summary, null, 2) + "\n");
  if (args.pretty) {
    for (const r of results) {
      console.log(`${r.ok ? "ok  " : "FAIL"} ${r.id.padEnd(34)} ${r.kind.padEnd(7)} ` +
        `facilitator=${String(r.facilitator).padEnd(52)} target=${r.target} ` +
        `${r.targetError ?? ""}${r.failures.length ? `\n       ${r.failures.join("; ")}` : ""}`);
    }
    console.log(`${results.length} vectors, ${bad.length} failed, ${summary.ms} ms`);
  } else {
    console.log(JSON.stringify(summary));
  }
  process.exitCode = bad.length ? 1 : 0;
}

if (process.argv[1] && process.argv[1].endsWith("conformance.mjs")) {
  main().catch((e) => {
    console.error(`conformance: ${e.stack || e.message}`);
    process.exit(2);
  });
}
