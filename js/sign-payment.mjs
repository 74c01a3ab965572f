#!/usr/bin/env node
// Sign a fresh x402 "exact" EVM payment (EIP-3009 TransferWithAuthorization)
// with viem and print the header value (base64 JSON), shaped exactly like
// the official clients' payloads (coinbase/x402 specs/x402-specification-v2.md
// 5.2, specs/schemes/exact/scheme_exact_evm.md section 1).
//
//   node js/sign-payment.mjs [--version 2] [--payment-required <b64>] ...
//   node js/sign-payment.mjs --json '{"version":1,"amount":"1000"}'
//
// Where the requirement comes from (first that is given):
//   --payment-required B64     a PAYMENT-REQUIRED header (v2): accepts[--index]
//   --payment-required-body J  a v1 402 JSON body: accepts[--index]
//   --requirement JSON         one requirement object (v1 or v2 field names)
//   otherwise built from --network (base-sepolia) --asset (network's USDC)
//   --asset-name --asset-version --amount (1000) --pay-to --max-timeout (300)
//   --resource URL --description --mime-type
// Authorization: --valid-after (now-600) --valid-before (now+maxTimeout)
//   --valid-for S (validBefore = now + S, now taken when signing, after
//   node has started: a short window does not shrink on a loaded machine)
//   --nonce (random 32 bytes) --key (Anvil #0; "random": a fresh key for
//   each payment) --now (clock override)
//   --version 1|2 (default: the requirement's; 2 otherwise)
// Negative cases, signed validly over other values:
//   --value-override V --to-override A --domain-name N --domain-version V
//   --chain-id N --verifying-contract A
// ...or broken after signing:
//   --high-s (s -> n-s, v flipped: same signer, malleable twin) --v01
//   (v 27/28 -> 0/1) --sig HEX --sig-len N (pad to N bytes: smart wallet)
//   --flip-sig-byte I --set path=JSON (repeatable) --delete path
//   --accepted-override JSON (merged into accepted) --extensions JSON
// Output: --out header (default) | json (the payload JSON) | jsonl (one
//   line {"header","payload","from","digest"} per payment); --count N.
// --pay-to-each A,B,...: one payment per address, the i-th paying the i-th
//   (the requirement's payTo replaced; --count is their number).
// --serve (alone): read one --json object a line from stdin, answer each
//   with its jsonl lines and {"end":0} ({"end":2,"error":...} on a usage
//   error), until stdin closes: one node start for many signatures.

import "./webcrypto.mjs"; // first: global crypto on Node 18
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { getAddress, hashTypedData, toHex } from "viem";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";

const ANVIL0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const DEFAULT_PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

// v1 names -> chain ids (coinbase/x402 mechanisms/evm/src/v1/index.ts)
const V1_CHAINS = {
  ethereum: 1, sepolia: 11155111, abstract: 2741, "abstract-testnet": 11124,
  "base-sepolia": 84532, base: 8453, "avalanche-fuji": 43113, avalanche: 43114,
  iotex: 4689, monad: 143, sei: 1329, "sei-testnet": 1328, polygon: 137,
  "polygon-amoy": 80002, peaq: 3338, story: 1514, educhain: 41923,
  "skale-base-sepolia": 324705682, megaeth: 4326, stable: 988,
  "stable-testnet": 2201,
};

// default USDC per chain id (coinbase/x402
// mechanisms/evm/src/shared/defaultAssets.ts)
const USDC = {
  84532: ["0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", "2"],
  8453: ["0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USD Coin", "2"],
  137: ["0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359", "USD Coin", "2"],
  80002: ["0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582", "USDC", "2"],
  43113: ["0x5425890298aed601595a70AB815c96711a31Bc65", "USD Coin", "2"],
  43114: ["0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E", "USD Coin", "2"],
  42161: ["0xaf88d065e77c8cC2239327C5EDb3A432268e5831", "USD Coin", "2"],
  421614: ["0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d", "USD Coin", "2"],
  143: ["0x754704Bc059F8C67012fEd69BC8A327a5aafb603", "USDC", "2"],
};

const AUTH_TYPES = {
  TransferWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
};

// a usage error: the command exits 2 with it, --serve answers it
class UsageError extends Error {}

function die(msg) {
  throw new UsageError(`sign-payment: ${msg}`);
}

function parseArgs(argv) {
  const o = { set: [], delete: [] };
  const flags = new Set(["high-s", "v01"]);
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (!a.startsWith("--")) die(`unexpected argument '${a}'`);
    a = a.slice(2);
    let v;
    const eq = a.indexOf("=");
    if (eq > 0 && !["set", "delete"].includes(a.slice(0, eq))) {
      v = a.slice(eq + 1);
      a = a.slice(0, eq);
    } else if (flags.has(a)) {
      v = true;
    } else {
      if (i + 1 >= argv.length) die(`--${a} needs a value`);
      v = argv[++i];
    }
    if (a === "json") {
      let j;
      try { j = JSON.parse(v); } catch (e) { die(`--json: ${e.message}`); }
      for (const [k, val] of Object.entries(j)) {
        const key = k.replace(/_/g, "-");
        if (key === "set" || key === "delete") o[key].push(...[].concat(val));
        else o[key] = val;
      }
    } else if (a === "set" || a === "delete") {
      o[a].push(v);
    } else {
      o[a] = v;
    }
  }
  return o;
}

function chainIdOf(network) {
  if (typeof network !== "string") die("network missing");
  const m = /^eip155:(\d+)$/.exec(network);
  if (m) return Number(m[1]);
  if (network in V1_CHAINS) return V1_CHAINS[network];
  die(`unknown network '${network}'`);
}

function v1Name(network) {
  const id = chainIdOf(network);
  if (!network.startsWith("eip155:")) return network;
  for (const [n, c] of Object.entries(V1_CHAINS)) if (c === id) return n;
  die(`no v1 name for ${network}`);
}

const v2Name = (network) => `eip155:${chainIdOf(network)}`;

function decodeB64Json(s, what) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s)) die(`${what}: not standard base64`);
  try {
    return JSON.parse(Buffer.from(s, "base64").toString("utf8"));
  } catch (e) {
    die(`${what}: ${e.message}`);
  }
}

function asObject(v, what) {
  if (v === undefined) return undefined;
  if (typeof v === "object") return v;
  try { return JSON.parse(v); } catch (e) { die(`${what}: ${e.message}`); }
}

// the requirement to pay, normalised to {version, req (as offered), resource}
function pickRequirement(o) {
  const index = Number(o.index ?? 0);
  if (o["payment-required"]) {
    const pr = decodeB64Json(o["payment-required"], "--payment-required");
    if (!Array.isArray(pr.accepts) || !pr.accepts[index]) die("no such accepts[] entry");
    return { version: pr.x402Version, req: pr.accepts[index], resource: pr.resource };
  }
  if (o["payment-required-body"]) {
    const pr = asObject(o["payment-required-body"], "--payment-required-body");
    if (!Array.isArray(pr.accepts) || !pr.accepts[index]) die("no such accepts[] entry");
    return { version: pr.x402Version ?? 1, req: pr.accepts[index] };
  }
  if (o.requirement) {
    const r = asObject(o.requirement, "--requirement");
    return { version: "maxAmountRequired" in r ? 1 : 2, req: r };
  }
  const version = Number(o.version ?? 2);
  const network = o.network ?? "base-sepolia";
  const chainId = chainIdOf(network);
  const usdc = USDC[chainId];
  const asset = o.asset ?? (usdc ? usdc[0] : die(`no default asset for ${network}`));
  const extra = {
    name: o["asset-name"] ?? (usdc ? usdc[1] : die("--asset-name needed")),
    version: String(o["asset-version"] ?? (usdc ? usdc[2] : "2")),
  };
  const common = {
    scheme: "exact",
    payTo: o["pay-to"] ?? DEFAULT_PAY_TO,
    maxTimeoutSeconds: Number(o["max-timeout"] ?? 300),
    asset,
    extra,
  };
  const url = o.resource ?? "http://localhost/";
  if (version === 1) {
    return {
      version,
      req: {
        scheme: "exact", network: v1Name(network),
        maxAmountRequired: String(o.amount ?? "1000"), resource: url,
        description: o.description ?? "", mimeType: o["mime-type"] ?? "",
        payTo: common.payTo, maxTimeoutSeconds: common.maxTimeoutSeconds,
        asset, extra,
      },
    };
  }
  return {
    version,
    req: {
      scheme: "exact", network: v2Name(network), amount: String(o.amount ?? "1000"),
      asset, payTo: common.payTo, maxTimeoutSeconds: common.maxTimeoutSeconds, extra,
    },
    resource: { url, description: o.description ?? "", mimeType: o["mime-type"] ?? "" },
  };
}

function setPath(obj, path, value, del) {
  const keys = path.split(".");
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    if (typeof cur[k] !== "object" || cur[k] === null) cur[k] = {};
    cur = cur[k];
  }
  const last = keys[keys.length - 1];
  if (del) delete cur[last];
  else cur[last] = value;
}

function tamperSignature(sig, o) {
  let hex = sig.slice(2);
  if (o["high-s"]) {
    const r = hex.slice(0, 64);
    const s = BigInt("0x" + hex.slice(64, 128));
    const v = parseInt(hex.slice(128, 130), 16);
    const s2 = (SECP256K1_N - s).toString(16).padStart(64, "0");
    const v2 = v === 27 ? 28 : v === 28 ? 27 : v ^ 1;
    hex = r + s2 + v2.toString(16).padStart(2, "0");
  }
  if (o.v01) {
    const v = parseInt(hex.slice(128, 130), 16);
    hex = hex.slice(0, 128) + (v >= 27 ? v - 27 : v).toString(16).padStart(2, "0");
  }
  if (o["flip-sig-byte"] !== undefined) {
    const i = Number(o["flip-sig-byte"]);
    const b = parseInt(hex.slice(2 * i, 2 * i + 2), 16) ^ 0x01;
    hex = hex.slice(0, 2 * i) + b.toString(16).padStart(2, "0") + hex.slice(2 * i + 2);
  }
  if (o["sig-len"] !== undefined) {
    const n = Number(o["sig-len"]);
    hex = n * 2 <= hex.length ? hex.slice(0, n * 2) : hex + "ab".repeat(n - hex.length / 2);
  }
  if (o.sig !== undefined) hex = String(o.sig).replace(/^0x/, "");
  return "0x" + hex;
}

async function signOne(o, picked) {
  const { version, req, resource } = picked;
  // --key random: a fresh key for each payment (a stranger's keys)
  const account = privateKeyToAccount(o.key === "random" ? generatePrivateKey() : (o.key ?? ANVIL0));
  const now = Number(o.now ?? Math.floor(Date.now() / 1000));
  const maxTimeout = Number(req.maxTimeoutSeconds ?? 300);
  const amount = version === 1 ? req.maxAmountRequired : req.amount;
  const auth = {
    from: account.address,
    to: getAddress(o["to-override"] ?? req.payTo),
    value: String(o["value-override"] ?? amount),
    validAfter: String(o["valid-after"] ?? now - 600),
    validBefore: String(o["valid-before"]
      ?? now + (o["valid-for"] !== undefined ? Number(o["valid-for"]) : maxTimeout)),
    nonce: o.nonce ?? toHex(randomBytes(32)),
  };
  const extra = req.extra ?? {};
  const domain = {
    name: o["domain-name"] ?? extra.name,
    version: String(o["domain-version"] ?? extra.version),
    chainId: Number(o["chain-id"] ?? chainIdOf(req.network)),
    verifyingContract: getAddress(o["verifying-contract"] ?? req.asset),
  };
  if (domain.name === undefined) die("requirement has no extra.name");
  const message = {
    ...auth,
    value: BigInt(auth.value),
    validAfter: BigInt(auth.validAfter),
    validBefore: BigInt(auth.validBefore),
  };
  const typed = { domain, types: AUTH_TYPES, primaryType: "TransferWithAuthorization", message };
  const signature = tamperSignature(await account.signTypedData(typed), o);
  const digest = hashTypedData(typed);

  let payload;
  if (Number(version) === 1) {
    // legacy client key order: {signature, authorization}
    payload = {
      x402Version: 1,
      scheme: req.scheme,
      network: req.network,
      payload: { signature, authorization: auth },
    };
  } else {
    const accepted = { ...req, ...(asObject(o["accepted-override"], "--accepted-override") ?? {}) };
    payload = { x402Version: 2, payload: { authorization: auth, signature } };
    if (resource) payload.resource = resource;
    payload.accepted = accepted;
    if (o.extensions) payload.extensions = asObject(o.extensions, "--extensions");
  }
  for (const s of o.set) {
    const eq = s.indexOf("=");
    if (eq < 0) die(`--set ${s}: expected path=JSON`);
    let val;
    try { val = JSON.parse(s.slice(eq + 1)); } catch { val = s.slice(eq + 1); }
    setPath(payload, s.slice(0, eq), val, false);
  }
  for (const p of o.delete) setPath(payload, p, undefined, true);
  const json = JSON.stringify(payload);
  return { header: Buffer.from(json, "utf8").toString("base64"), payload, from: account.address, digest };
}

// the output lines for options o
async function run(o) {
  const picked = pickRequirement(o);
  if (o.version !== undefined && Number(o.version) !== Number(picked.version)) {
    // a v1 client answering a v2 402 (or the reverse): convert the requirement
    const r = picked.req;
    if (Number(o.version) === 1) {
      picked.req = {
        scheme: r.scheme, network: v1Name(r.network),
        maxAmountRequired: r.amount ?? r.maxAmountRequired,
        resource: picked.resource?.url ?? r.resource ?? "http://localhost/",
        description: picked.resource?.description ?? "", mimeType: picked.resource?.mimeType ?? "",
        payTo: r.payTo, maxTimeoutSeconds: r.maxTimeoutSeconds, asset: r.asset, extra: r.extra,
      };
    } else {
      picked.req = {
        scheme: r.scheme, network: v2Name(r.network), amount: r.maxAmountRequired ?? r.amount,
        asset: r.asset, payTo: r.payTo, maxTimeoutSeconds: r.maxTimeoutSeconds, extra: r.extra ?? {},
      };
      picked.resource = { url: r.resource ?? "http://localhost/", description: r.description ?? "", mimeType: r.mimeType ?? "" };
    }
    picked.version = Number(o.version);
  }
  const payToEach = o["pay-to-each"] ? String(o["pay-to-each"]).split(",") : null;
  const count = payToEach ? payToEach.length : Number(o.count ?? 1);
  if (!(count >= 1 && count <= 100000)) die("--count out of range");
  if (count > 1 && o.nonce !== undefined) die("--nonce with --count > 1 would repeat the nonce");
  const out = o.out ?? "header";
  const lines = [];
  for (let i = 0; i < count; i++) {
    const r = await signOne(o, payToEach
      ? { ...picked, req: { ...picked.req, payTo: payToEach[i] } } : picked);
    if (out === "header") lines.push(r.header);
    else if (out === "json") lines.push(JSON.stringify(r.payload));
    else if (out === "jsonl") lines.push(JSON.stringify(r));
    else die(`--out ${out}: header, json or jsonl`);
  }
  return lines;
}

// --serve: one signer for many requests (a test file's; starting node and
// loading viem is most of a signature's time): each stdin line is a --json
// object, answered by its --out jsonl lines and then {"end":0}, or
// {"end":2,"error":MESSAGE} for what the command would exit 2 with
async function serve() {
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let res;
    try {
      const o = parseArgs(["--json", line]);
      o.out = "jsonl";
      res = (await run(o)).join("\n") + "\n" + JSON.stringify({ end: 0 }) + "\n";
    } catch (e) {
      const msg = e instanceof UsageError ? e.message : `sign-payment: ${e.stack || e}`;
      res = JSON.stringify({ end: e instanceof UsageError ? 2 : 1, error: msg }) + "\n";
    }
    process.stdout.write(res);
  }
}

try {
  if (process.argv[2] === "--serve") {
    await serve();
  } else {
    const lines = await run(parseArgs(process.argv.slice(2)));
    process.stdout.write(lines.join("\n") + "\n");
  }
} catch (e) {
  if (!(e instanceof UsageError)) throw e;
  process.stderr.write(`${e.message}\n`);
  process.exit(2);
}
