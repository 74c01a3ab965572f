#!/usr/bin/env node
// A stand-in for Coinbase's hosted facilitator's authentication: an HTTP
// gate that checks `Authorization: Bearer <JWT>` as CDP does (verifyCdpJwt
// in cdp-jwt.mjs: signature by the configured key, iss "cdp", sub = key id,
// nbf/exp, header kid and nonce, uris = ["<METHOD> <host><path>"]), answers
// 401 {"error":...} otherwise, and forwards what passes to a real
// facilitator (js/interop/facilitator.mjs) with the base path stripped.
// For the glue's test of `x402_facilitator_auth cdp` (issue 12 item 4).
//
//   node cdp-gate.mjs serve --port N --upstream http://127.0.0.1:F
//        --key-id ID --key-file FILE [--host api.cdp.coinbase.com]
//        [--base /platform/v2/x402]
//   node cdp-gate.mjs selfcheck [--core-tokens FILE]
//        official SDK tokens pass, others do not; FILE: [{method, path,
//        authorization}] made by the core (x402_cdp_authorization with
//        src/core/tests/data/cdp/ed25519.b64, key id
//        organizations/test/apiKeys/gate), which must pass too
//
// serve logs one JSON line per request: {method, path, status, reason}.
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { readFileSync } from "node:fs";
import { createServer } from "node:http";

import { cdpPublicKey, verifyCdpJwt } from "./cdp-jwt.mjs";

const MAX_BODY = 1 << 20;

export function gate({ upstream, keyId, secret, host = "api.cdp.coinbase.com",
  base = "/platform/v2/x402", log = () => {} }) {
  const publicKey = cdpPublicKey(secret);
  return createServer(async (req, res) => {
    const chunks = [];
    let size = 0;
    for await (const c of req) {
      size += c.length;
      if (size > MAX_BODY) {
        res.writeHead(413).end();
        return;
      }
      chunks.push(c);
    }
    const path = req.url.split("?")[0];
    const deny = (reason) => {
      log({ method: req.method, path, status: 401, reason });
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "unauthorized", message: reason }));
    };
    const m = /^Bearer ([A-Za-z0-9_.-]+)$/.exec(req.headers.authorization ?? "");
    if (!m) return deny("no bearer token");
    if (!path.startsWith(`${base}/`)) return deny(`path ${path} is outside ${base}/`);
    try {
      await verifyCdpJwt(m[1], { publicKey, keyId, method: req.method, host, path });
    } catch (e) {
      return deny(e.message);
    }
    const r = await fetch(`${upstream}${path.slice(base.length)}`, {
      method: req.method,
      headers: { "content-type": req.headers["content-type"] ?? "application/json" },
      body: req.method === "GET" ? undefined : Buffer.concat(chunks),
    });
    const body = Buffer.from(await r.arrayBuffer());
    log({ method: req.method, path, status: r.status });
    res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "application/json" });
    res.end(body);
  });
}

function listen(server, port = 0) {
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, "127.0.0.1", () => ok(server.address().port));
  });
}

async function selfcheck(coreTokens) {
  const { generateJwt } = await import("@coinbase/cdp-sdk/auth");
  const secret = readFileSync(new URL("../../src/core/tests/data/cdp/ed25519.b64",
    import.meta.url), "utf8").trim();
  const other = readFileSync(new URL("../../src/core/tests/data/cdp/es256-pkcs8.pem",
    import.meta.url), "utf8");
  const keyId = "organizations/test/apiKeys/gate";
  const stub = createServer((req, res) => res.writeHead(200, { "content-type": "application/json" })
    .end(JSON.stringify({ upstream: req.url })));
  const upstreamPort = await listen(stub);
  const g = gate({ upstream: `http://127.0.0.1:${upstreamPort}`, keyId, secret });
  const port = await listen(g);
  const url = `http://127.0.0.1:${port}/platform/v2/x402`;
  const token = (opts) => generateJwt({ apiKeyId: keyId, apiKeySecret: secret,
    requestMethod: "POST", requestHost: "api.cdp.coinbase.com",
    requestPath: "/platform/v2/x402/verify", ...opts });
  const call = async (path, auth, method = "POST") => {
    const r = await fetch(`${url}${path}`, { method, headers: auth ? { authorization: `Bearer ${auth}` } : {},
      body: method === "POST" ? "{}" : undefined });
    return [r.status, await r.json()];
  };
  let n = 0;
  let failed = 0;
  const check = (ok, what, detail) => {
    n++;
    if (!ok) failed++;
    console.log(`${ok ? "ok" : "not ok"} ${n} - ${what}${ok ? "" : `  # ${JSON.stringify(detail)}`}`);
  };
  try {
    let r = await call("/verify", await token());
    check(r[0] === 200 && r[1].upstream === "/verify", "an official SDK token passes and is forwarded", r);
    r = await call("/supported", await token({ requestMethod: "GET",
      requestPath: "/platform/v2/x402/supported" }), "GET");
    check(r[0] === 200 && r[1].upstream === "/supported", "GET /supported with its own token", r);
    r = await call("/verify");
    check(r[0] === 401, "no token: 401", r);
    r = await call("/settle", await token());
    check(r[0] === 401 && /uris/.test(r[1].message), "a /verify token on /settle: 401", r);
    r = await call("/verify", await token({ apiKeyId: "another" }));
    check(r[0] === 401, "another key id: 401", r);
    r = await call("/verify", await token({ apiKeySecret: other }));
    check(r[0] === 401 && /signature|alg/.test(r[1].message), "signed by another key: 401", r);
    const short = await token({ expiresIn: 1 });
    await new Promise((ok) => setTimeout(ok, 2100));
    r = await call("/verify", short);
    check(r[0] === 401 && /exp/.test(r[1].message), "an expired token: 401", r);
    for (const t of coreTokens ? JSON.parse(readFileSync(coreTokens, "utf8")) : []) {
      const m = /^Bearer (.+)$/.exec(t.authorization);
      r = await call(t.path.replace("/platform/v2/x402", ""), m && m[1], t.method);
      check(r[0] === 200, `the core's token for ${t.method} ${t.path} passes`, r);
    }
  } finally {
    g.close();
    stub.close();
  }
  console.log(`1..${n}`);
  process.exit(failed ? 1 : 0);
}

async function main() {
  const argv = process.argv.slice(2);
  const arg = (name) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  if (argv[0] === "selfcheck") return selfcheck(arg("core-tokens"));
  if (argv[0] !== "serve") {
    console.error("usage: cdp-gate.mjs serve --port N --upstream URL --key-id ID --key-file FILE "
      + "[--host H] [--base /platform/v2/x402] | selfcheck");
    process.exit(2);
  }
  const g = gate({ upstream: arg("upstream"), keyId: arg("key-id"),
    secret: readFileSync(arg("key-file"), "utf8"), host: arg("host"), base: arg("base"),
    log: (rec) => console.log(JSON.stringify(rec)) });
  const port = await listen(g, Number(arg("port")));
  console.error(`cdp-gate listening on 127.0.0.1:${port}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await main();
}
