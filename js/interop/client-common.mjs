/*
 * What both paying clients share: a fetch that records every exchange (so
 * the 402, the payment sent and the answer can be shown), decoding of the
 * x402 headers, and the report printed on stdout.
 */
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs, readChainState } from "./lib.mjs";

const MAX_BODY_SHOWN = 64 * 1024;

export function decodeB64Json(v) {
  if (!v) return null;
  try {
    return JSON.parse(Buffer.from(v, "base64").toString("utf8"));
  } catch (e) {
    return { undecodable: v.slice(0, 200), error: e.message };
  }
}

const SHOWN = ["content-type", "content-length", "payment-required",
  "payment-response", "x-payment-response", "payment-signature", "x-payment",
  "cache-control", "www-authenticate"];

function pick(headers) {
  const out = {};
  for (const h of SHOWN) {
    const v = headers.get(h);
    if (v !== null) out[h] = v;
  }
  return out;
}

/* fetch wrapper recording requests and responses (bodies not consumed). */
export function recordingFetch(log) {
  return async (input, init) => {
    const req = new Request(input, init);
    const entry = { request: { method: req.method, url: req.url,
      headers: pick(req.headers) } };
    log.push(entry);
    const t0 = Date.now();
    const res = await fetch(req);
    entry.response = { status: res.status, headers: pick(res.headers),
      ms: Date.now() - t0 };
    if (res.status === 402) {
      entry.response.body = await res.clone().text();
    }
    return res;
  };
}

export function clientArgs(argv) {
  const args = parseArgs(argv, ["pretty"]);
  if (!args.url && args._[0]) args.url = args._[0];
  if (!args.url) throw new Error("--url URL is required");
  let key = args.key;
  if (!key) {
    const runDir = args["run-dir"] || process.env.X402_RUN_DIR;
    if (!runDir) throw new Error("--key 0x.. or --run-dir DIR is required");
    const chain = readChainState(runDir);
    const acct = chain.accounts[args.account || "payer"];
    if (!acct) throw new Error(`unknown account ${args.account}`);
    key = acct.key;
  }
  return { ...args, key };
}

/* Build the report from the exchanges and the final response. */
export async function report(client, url, log, res, t0, extra = {}) {
  const text = res ? await res.text() : null;
  const first402 = log.find((e) => e.response?.status === 402);
  const paid = log.find((e) => e.request.headers["payment-signature"]
    || e.request.headers["x-payment"]);
  let paymentRequired = null;
  if (first402) {
    paymentRequired = decodeB64Json(first402.response.headers["payment-required"]);
    if (!paymentRequired && first402.response.body) {
      try {
        paymentRequired = JSON.parse(first402.response.body);
      } catch {
        paymentRequired = null;
      }
    }
  }
  const settlementHeader = res ? (res.headers.get("payment-response")
    || res.headers.get("x-payment-response")) : null;
  const out = {
    client,
    url,
    status: res ? res.status : null,
    contentType: res ? res.headers.get("content-type") : null,
    body: text && text.length > MAX_BODY_SHOWN ? text.slice(0, MAX_BODY_SHOWN) : text,
    bodyLength: text ? Buffer.byteLength(text) : 0,
    paymentRequired,
    paymentPayload: paid ? decodeB64Json(paid.request.headers["payment-signature"]
      || paid.request.headers["x-payment"]) : null,
    paymentHeaderName: paid ? (paid.request.headers["payment-signature"]
      ? "PAYMENT-SIGNATURE" : "X-PAYMENT") : null,
    paymentHeaderLength: paid ? (paid.request.headers["payment-signature"]
      || paid.request.headers["x-payment"]).length : 0,
    settlementHeaderName: res ? (res.headers.get("payment-response")
      ? "PAYMENT-RESPONSE" : res.headers.get("x-payment-response")
        ? "X-PAYMENT-RESPONSE" : null) : null,
    settlement: decodeB64Json(settlementHeader),
    exchanges: log,
    ms: Date.now() - t0,
    ...extra,
  };
  return out;
}

export function printReport(out, pretty) {
  if (!pretty) {
    process.stdout.write(JSON.stringify(out) + "\n");
    return;
  }
  const p = (s = "") => process.stdout.write(s + "\n");
  for (const [i, e] of out.exchanges.entries()) {
    p(`--- request ${i + 1}: ${e.request.method} ${e.request.url}`);
    for (const [k, v] of Object.entries(e.request.headers)) {
      p(`    ${k}: ${v.length > 96 ? `${v.slice(0, 96)}... (${v.length} chars)` : v}`);
    }
    if (!e.response) {
      p("    (no response)");
      continue;
    }
    p(`<-- ${e.response.status} (${e.response.ms} ms)`);
    for (const [k, v] of Object.entries(e.response.headers)) {
      p(`    ${k}: ${v.length > 96 ? `${v.slice(0, 96)}... (${v.length} chars)` : v}`);
    }
  }
  if (out.paymentRequired) {
    p("\n402 requirements (decoded):");
    p(JSON.stringify(out.paymentRequired, null, 2));
  }
  if (out.paymentPayload) {
    p(`\npayment sent in ${out.paymentHeaderName} (decoded):`);
    p(JSON.stringify(out.paymentPayload, null, 2));
  }
  p(`\nfinal status: ${out.status}`);
  if (out.body !== null) p(`body: ${out.body.length > 400 ? out.body.slice(0, 400) + "..." : out.body}`);
  if (out.settlement) {
    p(`\nsettlement (${out.settlementHeaderName}, decoded):`);
    p(JSON.stringify(out.settlement, null, 2));
  }
  if (out.error) p(`\nclient error: ${out.error}`);
}

export function pkgVersion(name) {
  try {
    const url = new URL(`../node_modules/${name}/package.json`, import.meta.url);
    return JSON.parse(readFileSync(url, "utf8")).version;
  } catch {
    return "?";
  }
}

export { join };
