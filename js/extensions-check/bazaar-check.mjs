#!/usr/bin/env node
// Feeds the bazaar discovery extension of a 402 rendered by the core
// (src/core/bazaar.cpp) to the official @x402/extensions 2.27.0 (installed
// here, apart from js/node_modules):
//   - validateDiscoveryExtensionSpec and validateDiscoveryExtension (ajv,
//     draft 2020-12: info against its own schema), what a facilitator runs
//     before cataloging;
//   - extractDiscoveryInfo on a v2 PaymentPayload that echoes the 402's
//     extensions, as the official client does;
//   - byte equality (JSON.stringify) with what the official server emits
//     for the same declaration: declareDiscoveryExtension(config), then
//     bazaarResourceServerExtension.enrichDeclaration for the method.
//
// stdin: [{"name": "...", "header": <PAYMENT-REQUIRED value>,
//          "config": <declareDiscoveryExtension input, method included>,
//          "expect": "ok" | "invalid"}]
// "invalid": the extension must FAIL validation (proves the check bites).
// Prints one line per case; exit 0 when every case went as expected.
import "../webcrypto.mjs"; // first: global crypto on Node 18
import { readFileSync } from "node:fs";

import { decodePaymentRequiredHeader } from "@x402/core/http";
import {
  bazaarResourceServerExtension,
  declareDiscoveryExtension,
  extractDiscoveryInfo,
  validateDiscoveryExtension,
  validateDiscoveryExtensionSpec,
} from "@x402/extensions/bazaar";

function check(c) {
  const pr = decodePaymentRequiredHeader(c.header);
  const ext = pr.extensions?.bazaar;
  if (!ext) throw new Error("no extensions.bazaar in the 402");
  const spec = validateDiscoveryExtensionSpec(ext);
  if (!spec.valid) throw new Error(`spec: ${spec.errors.join("; ")}`);
  const schema = validateDiscoveryExtension(ext);
  if (!schema.valid) throw new Error(`schema: ${schema.errors.join("; ")}`);

  const payload = {
    x402Version: 2,
    resource: pr.resource,
    accepted: pr.accepts[0],
    payload: {},
    extensions: pr.extensions,
  };
  const found = extractDiscoveryInfo(payload, pr.accepts[0]);
  if (!found) throw new Error("extractDiscoveryInfo found nothing in the echo");
  if (found.method !== c.config.method) {
    throw new Error(`extractDiscoveryInfo method ${found.method}, want ${c.config.method}`);
  }
  // The catalog key is the URL without its query.
  const url = new URL(pr.resource.url);
  const key = `${url.origin}${url.pathname}`;
  if (found.resourceUrl !== key) {
    throw new Error(`extractDiscoveryInfo url ${found.resourceUrl}, want ${key}`);
  }

  const declared = declareDiscoveryExtension(c.config).bazaar;
  const context = { method: c.config.method, adapter: { getPath: () => new URL(pr.resource.url).pathname } };
  const official = bazaarResourceServerExtension.enrichDeclaration(declared, context);
  const ours = JSON.stringify(ext);
  const theirs = JSON.stringify(official);
  if (ours !== theirs) throw new Error(`differs from the official server's\n ours:   ${ours}\n theirs: ${theirs}`);
}

const cases = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const c of cases) {
  let outcome = "ok";
  try {
    check(c);
  } catch (e) {
    outcome = `invalid: ${e.message}`;
  }
  const good = c.expect === "ok" ? outcome === "ok" : outcome.startsWith("invalid");
  if (!good) failed++;
  console.log(`${good ? "ok" : "NOT OK"} ${c.name}: expected ${c.expect}, got ${outcome}`);
}
process.exit(failed ? 1 : 0);
