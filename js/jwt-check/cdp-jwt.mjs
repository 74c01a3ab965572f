#!/usr/bin/env node
// Checks CDP facilitator JWTs signed by the core (src/core/cdp_jwt.cpp) with
// an independent JWT library, jose (installed here, apart from
// js/node_modules), and compares their shape with what the official
// @coinbase/cdp-sdk generateJwt builds for the same request.
//
// verifyCdpJwt() is what a fake CDP facilitator needs: it refuses a token
// with a bad signature, another key id, another alg, a missing nonce, a
// wrong issuer, an audience other than ["cdp_service"] (the TS SDK sends
// none), wrong uris, or outside nbf..exp (jose's own checks, no
// clock tolerance).
//
// CLI: node cdp-jwt.mjs < cases.json
//   cases.json: [{"token": "...", "secret": <the CDP key secret>,
//                 "keyId": "...", "method": "POST", "host": "...",
//                 "path": "...", "now": <unix seconds>,
//                 "expect": "ok" | "<substring of the refusal>"}]
// Prints one line per case; exit 0 when every case went as expected.

import "../webcrypto.mjs"; // first: global crypto on Node 18
import { createPrivateKey, createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";

import { decodeProtectedHeader, jwtVerify } from "jose";

// The public key of a CDP key secret, derived by node's crypto (not by the
// code under test): PEM EC, or base64 of Ed25519 seed || public key.
export function cdpPublicKey(secret) {
  secret = secret.trim();
  if (secret.startsWith("-----")) {
    return createPublicKey(createPrivateKey(secret));
  }
  const raw = Buffer.from(secret, "base64");
  if (raw.length !== 64) throw new Error("not a 64-byte Ed25519 secret");
  return createPublicKey(
    createPrivateKey({
      format: "jwk",
      key: {
        kty: "OKP",
        crv: "Ed25519",
        d: raw.subarray(0, 32).toString("base64url"),
        x: raw.subarray(32).toString("base64url"),
      },
    }),
  );
}

// Resolves to {header, payload} or throws with the reason.
export async function verifyCdpJwt(token, { publicKey, keyId, method, host, path, now }) {
  const header = decodeProtectedHeader(token);
  const alg = publicKey.asymmetricKeyType === "ec" ? "ES256" : "EdDSA";
  const { payload, protectedHeader } = await jwtVerify(token, publicKey, {
    algorithms: [alg],
    issuer: "cdp",
    subject: keyId,
    typ: "JWT",
    currentDate: now === undefined ? undefined : new Date(now * 1000),
    requiredClaims: ["nbf", "exp", "iat", "uris"],
    maxTokenAge: 120,
  });
  // The Go SDK sends aud ["cdp_service"], the TypeScript SDK no aud at all:
  // both are what the hosted facilitator accepts, anything else is not.
  if (payload.aud !== undefined
      && !(Array.isArray(payload.aud) && payload.aud.length === 1 && payload.aud[0] === "cdp_service")) {
    throw new Error(`aud ${JSON.stringify(payload.aud)} is not ["cdp_service"]`);
  }
  if (protectedHeader.kid !== keyId) throw new Error(`kid ${protectedHeader.kid} is not ${keyId}`);
  if (!/^[0-9a-f]{32}$/.test(protectedHeader.nonce ?? "")) {
    throw new Error(`header nonce ${protectedHeader.nonce} is not 16 bytes of hex`);
  }
  const uri = `${method} ${host}${path}`;
  if (!Array.isArray(payload.uris) || payload.uris.length !== 1 || payload.uris[0] !== uri) {
    throw new Error(`uris ${JSON.stringify(payload.uris)} is not ["${uri}"]`);
  }
  if (payload.exp - payload.nbf !== 120 || payload.iat !== payload.nbf) {
    throw new Error("nbf/iat/exp are not now, now, now + 120");
  }
  return { header, payload };
}

// What the official SDK builds for the same request (PKCS#8 EC and Ed25519
// only: its jose import refuses SEC1 "EC PRIVATE KEY").
async function officialShape(c) {
  const { generateJwt } = await import("@coinbase/cdp-sdk/auth");
  const t = await generateJwt({
    apiKeyId: c.keyId,
    apiKeySecret: c.secret.trim(),
    requestMethod: c.method,
    requestHost: c.host,
    requestPath: c.path,
  });
  const [h, p] = t.split(".").slice(0, 2).map((x) => JSON.parse(Buffer.from(x, "base64url")));
  return { h, p, token: t };
}

async function main() {
  const cases = JSON.parse(readFileSync(0, "utf8"));
  let failed = 0;
  for (const [i, c] of cases.entries()) {
    let outcome;
    try {
      const { header, payload } = await verifyCdpJwt(c.token, {
        publicKey: cdpPublicKey(c.secret),
        keyId: c.keyId,
        method: c.method,
        host: c.host,
        path: c.path,
        now: c.now,
      });
      if (c.compareOfficial) {
        // Same header members and claims as the SDK, plus `aud` (the Go
        // SDK's default); equal values where they do not vary per token.
        const { h, p, token } = await officialShape(c);
        // The verifier a fake CDP facilitator would use takes the SDK's own
        // token too (no aud), so it checks the real contract, not ours.
        await verifyCdpJwt(token, { publicKey: cdpPublicKey(c.secret), keyId: c.keyId,
          method: c.method, host: c.host, path: c.path });
        const keys = (o) => Object.keys(o).sort().join(",");
        if (keys(header) !== keys(h)) throw new Error(`header ${keys(header)} vs SDK ${keys(h)}`);
        const ours = Object.keys(payload).filter((k) => k !== "aud").sort().join(",");
        if (ours !== keys(p)) throw new Error(`claims ${ours} vs SDK ${keys(p)}`);
        for (const k of ["alg", "kid", "typ"]) {
          if (header[k] !== h[k]) throw new Error(`header ${k} ${header[k]} vs SDK ${h[k]}`);
        }
        for (const k of ["sub", "iss"]) {
          if (payload[k] !== p[k]) throw new Error(`claim ${k} ${payload[k]} vs SDK ${p[k]}`);
        }
        if (JSON.stringify(payload.uris) !== JSON.stringify(p.uris)) {
          throw new Error(`uris ${JSON.stringify(payload.uris)} vs SDK ${JSON.stringify(p.uris)}`);
        }
        if (p.exp - p.nbf !== payload.exp - payload.nbf) throw new Error("lifetime differs from the SDK's");
      }
      outcome = "ok";
    } catch (e) {
      outcome = `${e.code ?? "error"}: ${e.message}`;
    }
    const good = c.expect === "ok" ? outcome === "ok" : outcome !== "ok" && outcome.includes(c.expect);
    if (!good) failed++;
    console.log(`${good ? "ok" : "NOT OK"} ${i}: expected ${c.expect}, got ${outcome}`);
  }
  process.exit(failed ? 1 : 0);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await main();
}
